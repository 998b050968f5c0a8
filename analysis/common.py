"""Shared plumbing of the analysis studies: one task set-up, one way to train and score a method.

Every study trains on the same tokenised examples with the same trainer and scores with
:func:`jola_lens.experiment.evaluate_task` (likelihood scoring; generation off to save time).
Each finished run is written to ``<out>/runs/<key>.json`` at once and re-used when the study is
run again with the same settings, so an interrupted study loses at most the run in progress.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import math
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from jola_lens import data as D
from jola_lens.baselines import list_baselines, make_baseline
from jola_lens.cli import DEMO_DEFAULTS
from jola_lens.config import JoLAConfig
from jola_lens.experiment import (DEMO_DATA, TaskSpec, evaluate_task, is_multiple_choice, load_task_data,
                                  majority_label_accuracy)
from jola_lens.model import JoLAModel
from jola_lens.selection import contrastive_rows, edit_on_mask
from jola_lens.train import JoLATrainer, TrainConfig

#: task name -> TaskSpec fields (cloze prompt, option text as the answer, as the demo)
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


@dataclass
class TaskSetup:
    name: str
    spec: TaskSpec
    td: Any
    train: list[dict[str, Any]]
    valid: list[dict[str, Any]]
    multiple_choice: bool
    majority: float | None


def setup_task(model: Any, name: str, *, train_size: int = 200, valid_size: int = 100, test_size: int = 200,
               data_root: str | None = None, data_seed: int = 42) -> TaskSetup:
    """Load and tokenise a task; ITI's wrong answers are attached to the training rows."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    spec = TaskSpec(**TASKS[name], data_root=data_root, train_size=train_size, valid_size=valid_size,
                    test_size=test_size, seed=data_seed, style="cloze", target="choice_text")
    td = load_task_data(spec)
    if name == "ARC-Easy" and train_size > len(td.train):
        td = extend_bundled_train(td, train_size, data_root=data_root, seed=data_seed)
    prepend_bos = bool(getattr(model.cfg, "default_prepend_bos", False))
    kw = dict(style=spec.style, target=spec.target, max_length=spec.max_length, prepend_bos=prepend_bos)
    train = contrastive_rows(td.train, model.tokenizer, **kw)
    valid = contrastive_rows(td.valid, model.tokenizer, **kw)
    mc = is_multiple_choice(td)
    return TaskSetup(name, spec, td, train, valid, mc, majority_label_accuracy(td) if mc else None)


def extend_bundled_train(td: D.TaskData, train_size: int, *, data_root: str | None = None,
                         seed: int = 42) -> D.TaskData:
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
    folder = D._resolve_task_dir("ARC-Easy", data_root)
    full = D.load_examples(folder / "train.jsonl")
    taken = D._Seen(td.train)
    for split in ("train", "valid", "test"):
        taken.add(D.load_examples(DEMO_DATA / f"{split}.jsonl"))
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
    on ``setup``'s training rows and score it on the test set."""
    for p in model.parameters():  # every method keeps the base model frozen
        p.requires_grad_(False)
    torch.manual_seed(seed)
    t0 = time.time()
    info: dict[str, Any] = {"method": method, "task": setup.name, "seed": seed, "n_train": len(setup.train)}
    if method == "zero_shot":
        scored: Any = model
    elif method == "jola":
        tc = train_config("jola", seed, epochs, **(train_overrides or {}))
        jm = JoLAModel(model, jola_config or JoLAConfig())
        tr = JoLATrainer(jm, setup.train, setup.valid, tc, progress=progress).train()
        info.update(trainable_params=jm.n_trainable_parameters(), steps=tr.steps, best_epoch=tr.best_epoch,
                    train_config=tc.to_dict(), jola_config=jm.config.to_dict(),
                    open_gates={site: jm.open_gate_counts(site) for site in jm.edits})
        if "attn" in jm.edits:
            info.update(open_heads=int(jm.open_mask().sum()), open_mask=jm.open_mask().int().tolist(),
                        # JoLA's head score: max over the head's gates of P(gate open)
                        prob_open=torch.stack(list(jm.prob_open().values())).amax(0).tolist())
        scored = jm
    elif method.startswith("edit:"):
        if mask is None:
            raise ValueError(f"{method} needs a mask")
        tc = train_config(method, seed, epochs, **(train_overrides or {}))
        jm, tr = edit_on_mask(model, mask, setup.train, setup.valid, tc, progress=progress, return_result=True)
        info.update(trainable_params=int(mask.sum()) * 2 * model.cfg.d_head, k=int(mask.sum()), steps=tr.steps,
                    train_config=tc.to_dict())
        scored = jm
    elif method in list_baselines():
        tc = train_config(method, seed, epochs, **(train_overrides or {}))
        opts = {"seed": seed, **(baseline_options or {})}
        if method == "lofit":  # stage 1 gets the same epoch budget as stage 2 (LoFiT: 5 and 5)
            opts.setdefault("stage1", {"epochs": epochs})
        bl = make_baseline(method, model, **opts)
        tr = bl.fit(setup.train, setup.valid, tc, progress=progress)
        info.update(trainable_params=bl.n_trainable_parameters(), steps=tr.steps, best_epoch=tr.best_epoch,
                    train_config=tc.to_dict(), settings=bl.settings)
        scored = bl
    else:
        raise ValueError(f"unknown method {method!r}")
    info["train_seconds"] = time.time() - t0
    # per-example predictions are kept in the run (``rows``), so a table's accuracy can be taken apart later
    res = evaluate_task(scored, setup.td, setup.spec, generation=False, progress=progress, return_rows=True)
    info.update(res)
    info["accuracy"] = res.get("likelihood_acc")
    info["seconds"] = time.time() - t0
    for p in model.parameters():  # the model is shared by the next run: it must still be frozen and clean
        assert not p.requires_grad
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values()), "a hook was left on the model"
    return info


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
    ap.add_argument("--tasks", nargs="+", default=list(tasks), choices=sorted(TASKS))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(seeds))
    ap.add_argument("--epochs", type=int, default=2)
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
