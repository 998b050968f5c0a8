"""Shared plumbing of the analysis studies: one skeleton, one task set-up, one way to train and score a method.

Every study trains on the same tokenised examples with the same trainer and scores with
:func:`jola_lens.experiment.evaluate_task` (likelihood scoring; generation off to save time).
Each finished run is written to ``<out>/runs/<key>.json`` at once and re-used when the study is
run again with the same settings, so an interrupted study loses at most the run in progress.

A study's ``main`` is :func:`run_study`: it parses the common arguments (:func:`add_common_args`)
and the study's own, checks the task names (any task folder under the data root), and hands a
:class:`Study` (arguments, output folder, command line, timing, the model loaded on first use, cached
runs) to the study's body, which keeps only what is its own.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import json
import math
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from jola_lens.config import JoLAConfig
from jola_lens.eval.target import prepends_bos
from jola_lens.experiment import (
    DEMO_DATA,
    TaskSpec,
    is_multiple_choice,
    load_task_data,
    majority_label_accuracy,
)
from jola_lens.experiment import run_method as experiment_run_method
from jola_lens.loading import load_model, set_offline_env
from jola_lens.recipes import DEMO_DEFAULTS, get_recipe
from jola_lens.selection import contrastive_rows
from jola_lens.tasks import DataError, SeenExamples, TaskData, load_examples, resolve_task_dir
from jola_lens.train import TrainConfig

#: per-task overrides: task name -> TaskSpec fields (cloze prompt, option text as the answer, as the demo).
#: Any other task folder under the data root (or the default data locations) works too, as
#: ``dict(task=name)`` (:func:`task_fields`).
TASKS: dict[str, dict[str, Any]] = {
    # the bundled sample: 200 train / 200 valid / 300 test; more training examples than 200 come from
    # the full training split (``extend_bundled_train``), validation and test stay the bundled ones
    "ARC-Easy": dict(task="demo"),
    "ARC-Easy-full": dict(task="ARC-Easy"),  # ../shared/data: 2,251 train
    "boolq": dict(task="boolq"),
    "openbookqa": dict(task="openbookqa"),
    "mmlu_pro/biology": dict(task="mmlu_pro/biology"),
}

#: learning rates: JoLA's demo settings; the baselines' published ones where METHODS.md has them
METHOD_TRAIN: dict[str, dict[str, Any]] = {
    "jola": dict(DEMO_DEFAULTS),
    "lofit": dict(lr=1e-2, warmup_steps=0, lr_schedule="linear"),  # LoFiT stage 2: 1e-2, HF linear decay
    "bitfit": dict(lr=1e-3, warmup_steps=10),
    "red": dict(lr=5e-3, warmup_steps=10),
    "loreft": dict(lr=9e-4, warmup_steps=5, lr_schedule="linear"),  # pyreft commonsense: 9e-4, warm-up 10 %
    "lora": dict(lr=3e-4, warmup_steps=10, lr_schedule="linear"),  # LLM-Adapters commonsense LoRA: 3e-4
    "iti": dict(),
    "edit": dict(lr=5e-3, warmup_steps=10),  # edit after selection: JoLA's lr, no gates
}


#: the two constant-answer controls a table can show: key (in run JSON and CSV) -> the name every table gives it
CONTROLS: dict[str, str] = {
    "commonest_training_label": "commonest training label",
    "test_sample_majority": "test-sample majority",
}
#: the line under a table that shows the controls
CONTROLS_NOTE = (f"Controls: {CONTROLS['commonest_training_label']} = accuracy on the test sample of always answering "
                 f"the training set's most frequent label; {CONTROLS['test_sample_majority']} = share of the test "
                 "sample's most frequent gold label (the best constant answer in hindsight).")


def task_controls(td: Any) -> dict[str, float | None]:
    """The two constant-answer controls of a multiple-choice task (both ``None`` for a generation task).

    * ``commonest_training_label``: accuracy on the test sample of always answering the training
      set's most frequent label (:func:`jola_lens.experiment.majority_label_accuracy`): what a method
      gets that learns the label prior and nothing else;
    * ``test_sample_majority``: share of the test sample's most frequent gold label, the best constant
      answer in hindsight (no constant answer scores more).

    Example:
        >>> from types import SimpleNamespace
        >>> ex = lambda a: {"question": "q", "choices": ["x", "y", "z"], "answer": a}  # noqa: E731
        >>> td = SimpleNamespace(train=[ex("answer1")] * 3 + [ex("answer2")],
        ...                      test=[ex("answer1"), ex("answer2"), ex("answer2"), ex("answer3")])
        >>> task_controls(td)
        {'commonest_training_label': 0.25, 'test_sample_majority': 0.5}
    """
    if not is_multiple_choice(td):
        return {k: None for k in CONTROLS}
    counts = collections.Counter(e["answer"] for e in td.test)
    return {"commonest_training_label": majority_label_accuracy(td),
            "test_sample_majority": counts.most_common(1)[0][1] / len(td.test)}


class TaskSetup:
    """One task of a study: its spec, its data, both controls (:func:`task_controls`) and the tokenised
    training and validation rows (ITI's wrong answers attached to the training rows).

    The rows need the model's tokenizer and are made on first use, so a study that only tabulates
    stored runs (``--cached-only``) never loads the model.
    """

    def __init__(self, name: str, spec: TaskSpec, td: Any, model: Any) -> None:
        self.name, self.spec, self.td = name, spec, td
        self._model = model  # the model, or a function giving it
        self._rows: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
        self.multiple_choice = is_multiple_choice(td)
        self.controls = task_controls(td)

    def _tokenised(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if self._rows is None:
            model = self._model if hasattr(self._model, "tokenizer") else self._model()
            kw = dict(style=self.spec.style, target=self.spec.target, max_length=self.spec.max_length,
                      prepend_bos=prepends_bos(model))
            self._rows = (contrastive_rows(self.td.train, model.tokenizer, **kw),
                          contrastive_rows(self.td.valid, model.tokenizer, **kw))
        return self._rows

    @property
    def train(self) -> list[dict[str, Any]]:
        return self._tokenised()[0]

    @property
    def valid(self) -> list[dict[str, Any]]:
        return self._tokenised()[1]


def task_fields(name: str) -> dict[str, Any]:
    """The TaskSpec fields of a study's task: :data:`TASKS`' overrides for a known name, else the
    task folder of that name.

    Example:
        >>> task_fields("ARC-Easy"), task_fields("my_task")
        ({'task': 'demo'}, {'task': 'my_task'})
    """
    return dict(TASKS.get(name, {"task": name}))


def setup_task(model: Any, name: str, *, train_size: int = 200, valid_size: int = 100, test_size: int = 200,
               data_root: str | None = None, data_seed: int = 42) -> TaskSetup:
    """Load a task (a :data:`TASKS` name or any task folder under ``data_root``); ``model`` is the model
    or a function giving it, called when the rows are first tokenised."""
    check_tasks([name], data_root)
    spec = TaskSpec(**task_fields(name), data_root=data_root, train_size=train_size, valid_size=valid_size,
                    test_size=test_size, seed=data_seed, style="cloze", target="choice_text")
    td = load_task_data(spec)
    if name == "ARC-Easy" and train_size > len(td.train):
        td = extend_bundled_train(td, train_size, data_root=data_root, seed=data_seed)
    return TaskSetup(name, spec, td, model)


def extend_bundled_train(td: TaskData, train_size: int, *, data_root: str | None = None,
                         seed: int = 42) -> TaskData:
    """The bundled ARC-Easy sample with its training set grown to ``train_size`` examples.

    The new training set is the bundled 200 examples followed by the first ``train_size - 200`` of a
    seeded shuffle of the rest of the full ARC-Easy training split (``../shared/data`` or
    ``data_root``), leaving out every bundled validation and test example (by id and by question
    text). Validation and test stay as they are, so a data-size curve is scored on one test sample,
    its points up to 200 are the bundled sample's runs, and the larger sets are nested (the 500 are
    the first 500 of the 1,000).

    Example (needs the shared data)::

        td = load_task_data(TaskSpec(task="demo", train_size=None, valid_size=100, test_size=200))
        extend_bundled_train(td, 500).sizes   # {'train': 500, 'valid': 100, 'test': 200}
    """
    if train_size <= len(td.train):
        raise ValueError(f"train_size {train_size} does not exceed the bundled {len(td.train)} examples")
    folder = resolve_task_dir("ARC-Easy", data_root)
    full = load_examples(folder / "train.jsonl")
    taken = SeenExamples(td.train)
    for split in ("train", "valid", "test"):
        taken.add(load_examples(DEMO_DATA / f"{split}.jsonl"))
    pool = [ex for ex in full if ex not in taken]
    need = train_size - len(td.train)
    if need > len(pool):
        raise ValueError(f"ARC-Easy has {len(td.train) + len(pool)} training examples outside the bundled "
                         f"validation and test sets; {train_size} asked")
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    extra = [pool[i] for i in order[:need]]
    return dataclasses.replace(td, train=list(td.train) + extra,
                               name=f"{td.name} + {need} from the full ARC-Easy training split")


def train_config(method: str, seed: int, epochs: int, **overrides: Any) -> TrainConfig:
    base = METHOD_TRAIN["edit" if method.startswith("edit:") else method]
    kw = {**DEMO_DEFAULTS, "penalty": "none", **base, **overrides, "epochs": epochs, "seed": seed}
    if method == "jola" or method.startswith("jola"):
        kw["penalty"] = overrides.get("penalty", DEMO_DEFAULTS["penalty"])
    return TrainConfig(**kw)


def run_method(model: Any, setup: TaskSetup, method: str, *, seed: int, epochs: int,
               jola_config: JoLAConfig | None = None, mask: torch.Tensor | None = None,
               train_overrides: dict[str, Any] | None = None, baseline_options: dict[str, Any] | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Train ``method`` (``zero_shot``, ``jola``, a baseline name, or ``edit:<selector>`` with ``mask``)
    on ``setup``'s training rows and score it on the test set, through the library's one runner
    (:func:`jola_lens.experiment.run_method`) with the study's per-method training settings."""
    tc = None if method == "zero_shot" else train_config(method, seed, epochs, **(train_overrides or {}))
    opts = dict(baseline_options or {})
    if method == "lofit":  # stage 1 gets the same epoch budget as stage 2 (LoFiT: 5 and 5)
        opts.setdefault("stage1", {"epochs": epochs})
    return experiment_run_method(model, method, setup.td, setup.spec, setup.train, setup.valid, seed=seed,
                                 train_config=tc, jola_config=jola_config, mask=mask, editor_options=opts,
                                 progress=progress, task_name=setup.name)


def commonest_answer_share(run: dict[str, Any]) -> float | None:
    """Share of the test questions given the run's most frequent prediction; ``None`` for a run stored
    without per-example rows. A share near 1 means the edit collapsed onto one answer (BoolQ's "true").

    Example:
        >>> commonest_answer_share({"rows": [{"likelihood_pred": 0}, {"likelihood_pred": 0}, {"likelihood_pred": 1}]})
        0.6666666666666666
        >>> commonest_answer_share({"accuracy": 0.5}) is None
        True
    """
    rows = run.get("rows")
    if not rows:
        return None
    counts = collections.Counter(json.dumps(r.get("likelihood_pred")) for r in rows)
    return counts.most_common(1)[0][1] / len(rows)


def run_key(task: str, method: str, *, seed: int, epochs: int, n_train: int, n_test: int | None,
            k: int | None = None) -> str:
    """The cache key of a trained-and-scored run; studies share runs through equal keys.

    Example:
        >>> run_key("ARC-Easy", "jola", seed=42, epochs=3, n_train=200, n_test=200)
        'ARC-Easy.jola.s42.e3.n200.t200'
    """
    return f"{task}.{method}" + (f".k{k}" if k is not None else "") + f".s{seed}.e{epochs}.n{n_train}.t{n_test}"


def run_file_stem(key: str) -> str:
    """The file name (without ``.json``) a run of ``key`` is stored under in a study's ``runs/``.

    Example:
        >>> run_file_stem("mmlu_pro/biology.jola.s42.e3.n200.t200")
        'mmlu_pro_biology.jola.s42.e3.n200.t200'
    """
    return key.replace("/", "_").replace(":", "-")


def cached_run(out: Path, key: str, fn: Callable[[], dict[str, Any]], log: Callable[[str], None] = print,
               reuse: Sequence[str | Path] = (), only_cached: bool = False,
               rerun_without_rows: bool = False) -> dict[str, Any] | None:
    """``fn()``'s result from ``out/runs/key.json`` if present, else run it and store it there.

    ``reuse``: other study folders; a run stored under the same key in one of their ``runs/`` is
    copied into ``out`` instead of being run again. ``only_cached``: never run ``fn``; a run
    that is not stored yet gives ``None`` (to tabulate what has finished).
    ``rerun_without_rows``: a stored run without per-question predictions (``rows``, which older
    runs did not keep) is replaced: by a copy with rows from a ``reuse`` folder if there is one,
    else by running ``fn`` again; the replaced run's accuracy and seconds are kept under
    ``rerun_of``, so whether a re-run reproduced its number can be read off the file.
    """
    name = f"{run_file_stem(key)}.json"
    path = out / "runs" / name
    stored = json.loads(path.read_text()) if path.is_file() else None
    if stored is None or (rerun_without_rows and not stored.get("rows")):
        for d in reuse:
            other = Path(d) / "runs" / name
            if other.is_file() and (stored is None or json.loads(other.read_text()).get("rows")):
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(other, path)
                stored = json.loads(path.read_text())
                break
    if stored is not None and not (rerun_without_rows and not stored.get("rows") and not only_cached):
        return stored
    if only_cached:
        return None
    log(f"[analysis] {key}" + (" (re-run: the stored run kept no per-question predictions)" if stored else ""))
    r = fn()
    if stored is not None:
        r["rerun_of"] = {k: stored.get(k) for k in ("accuracy", "likelihood_acc_norm", "seconds", "train_seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(r, indent=1, default=_json_default))
    tmp.replace(path)
    acc = r.get("accuracy")
    was = f"; stored run had {stored.get('accuracy')}" if stored is not None else ""
    log(f"[analysis] {key}: accuracy {acc if acc is None else round(acc, 3)} ({r.get('seconds', 0):.0f} s){was}")
    return r


def stored_run_minutes(out: Path) -> float:
    """Summed run time (minutes) of the runs stored in ``out/runs`` (re-used ones included)."""
    total = 0.0
    for f in (Path(out) / "runs").glob("*.json"):
        total += float(json.loads(f.read_text()).get("seconds") or 0)
    return total / 60


def timing_text(out: Path, seconds: float) -> str:
    """What a study's table says about its cost: the stored runs' time, then this invocation's."""
    return f"run time of the stored runs {stored_run_minutes(out):.0f} min; this invocation {seconds / 60:.0f} min"


def _json_default(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if dataclasses.is_dataclass(v):
        return dataclasses.asdict(v)
    return str(v)


def mean_sd(xs: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    vals = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not vals:
        return None, None, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None), len(vals)


def fmt(mean: float | None, sd: float | None = None, digits: int = 3) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def command_line(module: str, argv: list[str] | None) -> str:
    return " ".join([f"python -m analysis.{module}", *(sys.argv[1:] if argv is None else argv)])


def write_table(out: Path, name: str, rows: list[dict[str, Any]], markdown: str) -> None:
    """``name.csv`` (every key of every row) and ``name.md``."""
    out.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    (out / f"{name}.md").write_text(markdown)


def add_common_args(ap: Any, *, tasks: Sequence[str] = ("ARC-Easy",), seeds: Sequence[int] = (42,)) -> None:
    ap.add_argument("--tasks", nargs="+", default=list(tasks), metavar="TASK",
                    help=f"{', '.join(TASKS)} or any other task folder under --data-root (default: the default "
                         "data locations)")
    ap.add_argument("--seeds", nargs="+", type=int, default=list(seeds))
    ap.add_argument("--epochs", type=int, default=get_recipe("demo").train["epochs"],
                    help="training epochs of every method (default: the demo recipe's)")
    ap.add_argument("--train-size", type=int, default=200)
    ap.add_argument("--valid-size", type=int, default=100)
    ap.add_argument("--test-size", type=int, default=200)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--reuse", nargs="*", default=[],
                    help="other study folders whose runs/ may hold a run with the same key (copied, not re-run)")
    ap.add_argument("--rerun-without-rows", action="store_true",
                    help="re-run stored runs that kept no per-question predictions (older runs), so paired "
                         "comparisons (analysis.paired) can use them; the old accuracy is kept under rerun_of")


# ---- task names ----------------------------------------------------------------------------------

_SPLIT_NAMES = ("train", "test", "validation", "valid", "val")


def data_roots(data_root: str | Path | None) -> list[Path]:
    """The folders task names are looked up in: ``data_root`` alone when given, else the default data
    locations in :func:`jola_lens.tasks.resolve_task_dir`'s order (``$JOLA_LENS_DATA``, ``./data``,
    ``../shared/data`` beside the repository)."""
    if data_root is not None:
        return [Path(data_root).expanduser()]
    roots = [Path(p).expanduser() for p in [os.environ.get("JOLA_LENS_DATA")] if p]
    return roots + [Path.cwd() / "data", Path(__file__).resolve().parents[2] / "shared" / "data"]


def task_folders(root: Path) -> list[str]:
    """Names of the task folders under ``root`` (a folder with a ``train``/``test``/``validation``
    ``.jsonl`` or ``.json`` file), one level down too (``mmlu_pro/biology``).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("boolq", "mmlu_pro/biology", "templates"):
        ...     (root / name).mkdir(parents=True)
        >>> (root / "boolq" / "test.jsonl").write_text("")
        0
        >>> (root / "mmlu_pro" / "biology" / "validation.json").write_text("")
        0
        >>> task_folders(root)
        ['boolq', 'mmlu_pro/biology']
    """
    def is_task(folder: Path) -> bool:
        return any((folder / f"{s}.{ext}").is_file() for s in _SPLIT_NAMES for ext in ("jsonl", "json"))

    found: list[str] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if is_task(child):
            found.append(child.name)
        else:
            found += [f"{child.name}/{g.name}" for g in sorted(child.iterdir()) if g.is_dir() and is_task(g)]
    return found


def check_tasks(names: Iterable[str], data_root: str | Path | None = None) -> None:
    """Raise :class:`jola_lens.tasks.DataError` naming every task of ``names`` that is neither a
    :data:`TASKS` name nor a task folder under the data root, and listing what is there."""
    unknown = []
    for name in names:
        if name in TASKS:
            continue
        try:
            resolve_task_dir(name, data_root)
        except DataError:
            unknown.append(name)
    if not unknown:
        return
    roots = data_roots(data_root)
    where = "; ".join(f"{root}: {', '.join(task_folders(root)) or 'no task folder'}" for root in roots
                      if root.is_dir()) or f"none of {', '.join(map(str, roots))} exists"
    raise DataError(f"unknown task{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}: not one of "
                    f"{', '.join(TASKS)} and no such task folder under "
                    f"{'--data-root' if data_root is not None else 'the default data locations'}. "
                    f"Task folders there: {where}")


# ---- the study skeleton --------------------------------------------------------------------------


class Study:
    """One invocation of a study: what :func:`run_study` hands to the study's body.

    ``args`` (parsed), ``out`` (the output folder), ``cmd`` (the command line written at the top
    of each table), ``seconds()`` (since the start), ``model`` (loaded on first use: a study that
    trains nothing never loads it), ``setup(task)`` (the task at the study's sizes), ``key(...)``
    (a run's cache key at the study's settings) and ``run(key, fn)`` (a stored run, or ``fn()``
    run and stored; new runs get the task's ``controls``).
    """

    def __init__(self, name: str, args: argparse.Namespace, argv: list[str] | None) -> None:
        self.name, self.args, self.argv = name, args, argv
        self.out = Path(args.out)
        self.cmd = command_line(name, argv)
        self.start = time.time()
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = load_model()
        return self._model

    @property
    def cached_only(self) -> bool:
        return bool(getattr(self.args, "cached_only", False))

    @property
    def progress(self) -> bool:
        return not getattr(self.args, "no_progress", False)

    def seconds(self) -> float:
        return time.time() - self.start

    def setup(self, task: str, *, train_size: int | None = None) -> TaskSetup:
        a = self.args
        return setup_task(lambda: self.model, task, train_size=a.train_size if train_size is None else train_size,
                          valid_size=a.valid_size, test_size=a.test_size, data_root=a.data_root)

    def key(self, task: str, method: str, *, seed: int, n_train: int | None = None, k: int | None = None) -> str:
        a = self.args
        return run_key(task, method, seed=seed, epochs=a.epochs, n_train=a.train_size if n_train is None else n_train,
                       n_test=a.test_size, k=k)

    def run(self, key: str, fn: Callable[[], dict[str, Any]], *, setup: TaskSetup | None = None,
            reuse: bool = True, rerun: bool = True) -> dict[str, Any] | None:
        """:func:`cached_run` in ``out`` with the study's ``--reuse`` (unless ``reuse=False``),
        ``--cached-only`` and ``--rerun-without-rows`` (unless ``rerun=False``); a new run of
        ``setup``'s task is stored with its ``controls``."""
        def scored() -> dict[str, Any]:
            r = fn()
            return r if setup is None else {**r, "controls": setup.controls}

        return cached_run(self.out, key, scored, reuse=self.args.reuse if reuse else (), only_cached=self.cached_only,
                          rerun_without_rows=rerun and bool(getattr(self.args, "rerun_without_rows", False)))


CACHED_ONLY_HELP = "train nothing: tabulate the runs already stored in --out/runs (missing ones are left out)"


def run_study(name: str, doc: str | None, argv: list[str] | None, body: Callable[[Study], Any], *,
              add_args: Callable[[argparse.ArgumentParser], Any] | None = None, common: bool = True,
              seeds: Sequence[int] = (42,), cached_only_help: str | None = CACHED_ONLY_HELP,
              check: Callable[[argparse.ArgumentParser, argparse.Namespace], Any] | None = None) -> int:
    """A study's ``main``: parse the arguments, check them, run ``body(study)``; returns the exit status.

    The parser has the common arguments (:func:`add_common_args` with ``seeds``; ``common=False``
    leaves them out), the study's own (``add_args``), ``--out`` (default
    ``analysis/results/<name>``) and ``--cached-only`` (help ``cached_only_help``; ``None``: no
    such flag). Unknown task names and ``check(parser, args)``'s complaints are argument errors
    (exit status 2, one message).
    """
    set_offline_env()
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if common:
        add_common_args(ap, seeds=seeds)
    if add_args is not None:
        add_args(ap)
    ap.add_argument("--out", default=f"analysis/results/{name}")
    if cached_only_help is not None:
        ap.add_argument("--cached-only", action="store_true", help=cached_only_help)
    args = ap.parse_args(argv)
    if common:
        try:
            check_tasks(args.tasks, args.data_root)
        except DataError as e:
            ap.error(str(e))
    if check is not None:
        check(ap, args)
    body(Study(name, args, argv))
    return 0
