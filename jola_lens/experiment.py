"""One task end to end: data -> zero-shot evaluation -> JoLA training -> evaluation -> results.

Used by the CLI (``jola-lens train | eval | demo``) and by the analysis scripts, so that
every number in the README comes from the same code path.

Example::

    from jola_lens import load_model
    from jola_lens.experiment import TaskSpec, run_experiment
    results = run_experiment(load_model(), TaskSpec(task="demo"), out_dir="runs/demo")
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import tasks as D
from .config import JoLAConfig
from .editors.base import Editor
from .editors.jola import JoLAModel
from .eval.driver import (  # noqa: F401  (the task-level evaluation lives in jola_lens.eval.driver)
    _label_fits,
    _scoring_note,
    _short,
    evaluate_task,
    group_references,
    is_multiple_choice,
    parse_choice_text,
)
from .eval.driver import task_majority_accuracy as majority_label_accuracy
from .eval.target import base_model, prepends_bos
from .tasks import DEFAULT_PROMPT_STYLE, DEMO_DATA  # noqa: F401  (DEMO_DATA: old import path)
from .tasks.spec import TaskSpec, load_task_data  # noqa: F401  (their home is torch-free: data checks come first)
from .train import JoLATrainer, TrainConfig, Trainer  # noqa: F401  (JoLATrainer: old import path)


def tokenize_splits(tokenizer: Any, td: D.TaskData, spec: TaskSpec, prepend_bos: bool = False) -> tuple[list, list]:
    kw = dict(style=spec.style, target=spec.target, max_length=spec.max_length, prepend_bos=prepend_bos)
    return D.tokenize_examples(td.train, tokenizer, **kw), D.tokenize_examples(td.valid, tokenizer, **kw)


@dataclass
class ExperimentResult:
    results: dict[str, Any]
    jola: Any  # the trained editor (JoLA unless ``method`` named another)
    trainer: Any  # the Trainer that trained it (None for editors with their own fit: LoFiT, ITI)

    @property
    def editor(self) -> Any:
        return self.jola


def build_editor(model: Any, method: str, *, seed: int, jola_config: JoLAConfig | None = None,
                 mask: Any = None, options: dict[str, Any] | None = None) -> Any:
    """The editor ``method`` names, built on ``model`` right after ``torch.manual_seed(seed)``, so the
    editor's initial values (JoLA's a, m and gate log-alphas) are the same in every process.

    ``method``: ``"jola"`` (``jola_config``), a registered editor name (``options`` go to its config,
    with ``seed`` unless given), or ``"edit:<selector>"``: JoLA's edits without gates on the heads of
    ``mask`` (edit after selection).

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2, d_vocab=11,
        ...                               act_fn="gelu", normalization_type="RMS")
        >>> m = HookedTransformer(cfg)
        >>> a, b = build_editor(m, "jola", seed=3), build_editor(m, "jola", seed=3)
        >>> torch.equal(a.edits["attn"].a, b.edits["attn"].a)
        True
    """
    from .editors import editor_class, list_editors

    torch.manual_seed(seed)  # (every editor freezes the base model when it is built)
    if method == "jola":
        return JoLAModel(model, jola_config or JoLAConfig())
    if method.startswith("edit:"):
        if mask is None:
            raise ValueError(f"{method} needs a mask")
        cfg = dataclasses.replace(jola_config or JoLAConfig(), gate_mode="none")
        jm = JoLAModel(model, cfg)
        jm.set_head_mask(mask)
        return jm
    if method in list_editors():
        return editor_class(method)(model, **{"seed": seed, **(options or {})})
    raise ValueError(f"unknown method {method!r}; choose from zero_shot, {', '.join(list_editors())} "
                     "or edit:<selector>")


def method_record(editor: Any, method: str, mask: Any = None) -> dict[str, Any]:
    """What a run stores about its trained editor (the studies' run JSON fields)."""
    info: dict[str, Any] = {"trainable_params": editor.n_trainable_parameters()}
    if method.startswith("edit:"):
        info["k"] = int(mask.sum())
    elif method == "jola":
        info["jola_config"] = editor.config.to_dict()
        info["open_gates"] = {site: editor.open_gate_counts(site) for site in editor.edits}
        if "attn" in editor.edits:
            info.update(open_heads=int(editor.open_mask().sum()), open_mask=editor.open_mask().int().tolist(),
                        # JoLA's head score: max over the head's gates of P(gate open)
                        prob_open=torch.stack(list(editor.prob_open().values())).amax(0).tolist())
    else:
        info["settings"] = editor.settings
    return info


def run_method(
    model: Any,
    method: str,
    td: D.TaskData,
    spec: TaskSpec,
    train: list[dict[str, Any]],
    valid: list[dict[str, Any]] | None,
    *,
    seed: int,
    train_config: TrainConfig | None = None,
    jola_config: JoLAConfig | None = None,
    mask: Any = None,
    editor_options: dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
    generation: bool = False,
    progress: bool = True,
    task_name: str | None = None,
) -> dict[str, Any]:
    """The one experiment runner: build ``method``'s editor (seeded), train it on the tokenised
    ``train`` / ``valid`` rows, score it on ``td.test``; returns the run record.

    ``method``: ``"zero_shot"`` (nothing trained), ``"jola"``, any registered editor, or
    ``"edit:<selector>"`` with ``mask``. The record holds the method, task, seed, training
    settings and outcome, the editor's own numbers (:func:`method_record`), the scores of
    :func:`evaluate_task` with per-question ``rows``, ``accuracy`` (the likelihood accuracy) and
    the run time. The base model is left frozen and without hooks (checked).
    """
    for p in model.parameters():  # frozen for every method, zero-shot included (checked at the end)
        p.requires_grad_(False)
    t0 = time.time()
    info: dict[str, Any] = {"method": method, "task": task_name or td.name or spec.task, "seed": seed,
                            "n_train": len(train)}
    if method == "zero_shot":
        scored: Any = model
    else:
        tc = train_config or TrainConfig(seed=seed)
        if method.startswith("edit:"):  # JoLA's edits without gates: no gate penalty
            tc = dataclasses.replace(tc, penalty="none")
        editor = build_editor(model, method, seed=seed, jola_config=jola_config, mask=mask, options=editor_options)
        tr = editor.fit(train, valid, tc, out_dir=out_dir, progress=progress)
        info.update(steps=tr.steps, best_epoch=tr.best_epoch, train_config=(train_config or tc).to_dict())
        info.update(method_record(editor, method, mask))  # trainable_params and the method's own numbers
        scored = editor
    info["train_seconds"] = time.time() - t0
    res = evaluate_task(scored, td, spec, generation=generation, progress=progress, return_rows=True)
    info.update(res)
    info["accuracy"] = res.get("likelihood_acc")
    info["seconds"] = time.time() - t0
    for p in model.parameters():  # the model is shared by the next run: it must still be frozen and clean
        assert not p.requires_grad
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values()), "a hook was left on the model"
    return info


class RunInterrupted(KeyboardInterrupt):
    """Training was stopped by Ctrl-C; a checkpoint was written (``checkpoint``) and no results."""

    def __init__(self, message: str, checkpoint: Path | None = None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


def _run_meta(spec: TaskSpec, method: str, editor: Any, tc: TrainConfig, model: Any) -> dict[str, Any]:
    """What makes two runs the same run (a checkpoint may only be continued by the same one)."""
    from .editors.base import model_identity

    ident = model_identity(model)
    return {"spec": spec.to_dict(), "method": method, "editor_config": editor.config_dict(),
            "train_config": tc.to_dict(), "model": {k: ident[k] for k in ("n_layers", "n_heads", "d_head", "d_model",
                                                                          "d_vocab", "weights")}}


def _meta_differences(saved: dict[str, Any] | None, here: dict[str, Any]) -> list[str]:
    if saved is None:
        return ["the checkpoint does not say which run it belongs to"]
    diffs = []
    for section in ("spec", "method", "editor_config", "train_config", "model"):
        a, b = saved.get(section), here.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if json.dumps(a.get(k), sort_keys=True) != json.dumps(b.get(k), sort_keys=True):
                    shown = "differ" if k == "weights" else f"{a.get(k)!r} there, {b.get(k)!r} here"
                    diffs.append(f"{section}.{k}: {shown}")
        elif a != b:
            diffs.append(f"{section}: {a!r} there, {b!r} here")
    return diffs


def _quiet(*args: Any, **kwargs: Any) -> None:
    pass


def run_experiment(
    model: Any,
    spec: TaskSpec,
    *,
    jola_config: JoLAConfig | None = None,
    train_config: TrainConfig | None = None,
    out_dir: Any = None,
    zero_shot: bool = True,
    generation: bool = True,
    progress: bool = True,
    log: Any = print,
    method: str = "jola",
    editor_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool | None = None,
    task_data: D.TaskData | None = None,
    checkpoint_every: int = 50,
) -> ExperimentResult:
    """Zero-shot evaluation, training of ``method`` (JoLA by default; any registered editor),
    its evaluation; writes the run folder (edits, gate log) and ``results.json`` into ``out_dir``.

    The editor is built right after ``torch.manual_seed(train_config.seed)``: the same seed gives
    the same run. ``out_dir`` (a path, or an :class:`~jola_lens.outdir.OutputFolder` already
    claimed) is checked and locked before any work: a finished run there is refused unless
    ``overwrite``; a checkpoint of the same run there is continued (``resume=None``, the default,
    or ``True``; checkpoints are written every ``checkpoint_every`` steps and every epoch). The
    editor's settings (``--layers 99``) are checked against the model before zero-shot scoring.

    Raises:
        TrainingDiverged: the loss or the edits stopped being finite; no edits and no results saved.
        RunInterrupted: Ctrl-C; a checkpoint is saved, no results are written.
    """
    from .distributed import current
    from .outdir import OutputFolder

    folder = None
    if out_dir is not None and not current().is_main:  # rank > 0 of a group: rank 0 owns the folder
        folder = _FollowerFolder(out_dir.path if isinstance(out_dir, OutputFolder) else out_dir)
    elif out_dir is not None:
        folder = out_dir if isinstance(out_dir, OutputFolder) else OutputFolder(out_dir, overwrite=overwrite,
                                                                                   resume=resume)
    owns_claim = folder is not None and not folder.claimed
    if owns_claim:
        folder.claim()
    try:
        return _run_experiment(model, spec, jola_config, train_config, folder, zero_shot, generation, progress,
                               log, method, editor_options, task_data, checkpoint_every)
    finally:
        if owns_claim:
            folder.release()


class _FollowerFolder:
    """The run folder as a rank > 0 of a process group sees it: rank 0 claims it and decides fresh /
    resume (told to the others in :func:`_run_experiment`); this rank only reads the checkpoint."""

    claimed = True

    def __init__(self, path: Any) -> None:
        from pathlib import Path

        self.path = Path(path)
        self.state = "fresh"
        self.checkpoint = self.path / "checkpoint"

    def claim(self) -> "_FollowerFolder":
        return self

    def release(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def finished(self) -> None:
        pass


def _run_experiment(model, spec, jola_config, train_config, folder, zero_shot, generation, progress, log, method,
                    editor_options, task_data, checkpoint_every):
    from .distributed import all_reduce_sum, current, is_sharded

    dist = current()
    # an FSDP-sharded base answers only when every rank runs the same forward pass: all ranks score
    # (rank 0 writes and prints), and free generation, whose rows stop at data-dependent steps, is left out
    lockstep = dist.enabled and is_sharded(base_model(model))
    if dist.enabled:
        # rank 0 has claimed the folder and decided fresh / resume: the others follow (and wait here while
        # rank 0 scores the unedited model); rank 0 alone evaluates and writes
        told = all_reduce_sum([1.0 if dist.is_main and folder is not None and folder.state == "resume" else 0.0,
                               1.0 if dist.is_main and zero_shot else 0.0])
        if not dist.is_main:
            zero_shot = lockstep and told[1] > 0
            if folder is not None and told[0] > 0:
                folder.state = "resume"
        if not dist.is_main:
            log = _quiet
            progress = False
    if lockstep and generation:
        log("[jola_lens] note: the base is sharded (FSDP): scoring by likelihood only; for generation, "
            "evaluate the saved run in one process (jola-lens eval --run OUT, with --device-map if needed)")
        generation = False
    writes = dist.is_main
    from .outdir import atomic_write_text
    from .train import TrainingDiverged

    out = folder.path if folder is not None else None
    td = task_data if task_data is not None else load_task_data(spec)
    log(f"[jola_lens] task {td.name or spec.task}: train {len(td.train)}, valid {len(td.valid)}, test {len(td.test)}")
    hooked = base_model(model)
    tc = train_config or TrainConfig(seed=spec.seed)
    # built (and its settings checked against the model) before any scoring: --layers 99 fails here
    editor = build_editor(hooked, method, seed=tc.seed, jola_config=jola_config, options=editor_options)
    run_meta = _run_meta(spec, method, editor, tc, hooked)
    resume_from = None
    if folder is not None and folder.state == "resume":
        _, meta = Trainer.read_checkpoint(folder.checkpoint)
        diffs = _meta_differences(meta.get("run"), run_meta)
        if diffs:
            raise ValueError(f"{out} holds the checkpoint of a different run ({'; '.join(diffs[:3])}): pass "
                             "--overwrite to start afresh, or choose another --out")
        if type(editor).fit is not Editor.fit:
            log(f"[jola_lens] note: {editor.display_name} trains in its own stages and cannot continue a "
                "checkpoint: training again from the start")
            folder.clear()
        else:
            resume_from = folder.checkpoint
            log(f"[jola_lens] continuing the checkpoint in {folder.checkpoint} (step {meta['step']})")
    results: dict[str, Any] = {
        "task": td.name or spec.task, "n_train": len(td.train), "n_valid": len(td.valid), "n_test": len(td.test),
        "seed": spec.seed, "spec": spec.to_dict(),
        "scoring": _scoring_note(spec, is_multiple_choice(td)),
    }
    if method != "jola":
        results["method"] = method
    if is_multiple_choice(td):
        results["majority_label_acc"] = majority_label_accuracy(td)
    if zero_shot:
        log("[jola_lens] zero-shot evaluation")
        results["zero_shot"] = evaluate_task(model, td, spec, generation=generation, progress=progress,
                                             out_path=out / "predictions_zero_shot.jsonl" if out and writes
                                             else None)
        log(f"[jola_lens] zero-shot: {_short(results['zero_shot'])}")
    prepend_bos = prepends_bos(hooked)
    train_tok, valid_tok = tokenize_splits(hooked.tokenizer, td, spec, prepend_bos)
    trainer = None
    label = editor.display_name
    log(f"[jola_lens] training {label}: {editor.n_trainable_parameters():,} trainable parameters")
    if type(editor).fit is Editor.fit:
        trainer = Trainer(editor, train_tok, valid_tok, tc, out_dir=out, progress=progress,
                          checkpoint_every=checkpoint_every, run_meta=run_meta)
        try:
            tr = trainer.train(resume_from=resume_from)
        finally:
            editor.observe_batch(None)
    else:
        tr = editor.fit(train_tok, valid_tok, tc, out_dir=out, progress=progress)
    if tr.stopped == "diverged":
        raise TrainingDiverged(getattr(trainer, "diverged_message", "training diverged")
                               + (f" (train_result.json in {out}); no results were written" if out else ""))
    if tr.stopped == "interrupted":
        ckpt = out / "checkpoint" if out is not None and (out / "checkpoint" / "latest.json").is_file() else None
        raise RunInterrupted(f"interrupted after step {tr.steps}"
                             + (f": checkpoint in {ckpt}; re-run the same command (or add --resume) to continue"
                                if ckpt else ": nothing was saved"), ckpt)
    if dist.enabled and not dist.is_main:  # rank 0 evaluates and writes the results
        results["train"] = {"steps": tr.steps, "stopped": tr.stopped, "rank": dist.rank}
        if lockstep:  # rank 0's scoring passes need this rank's shards
            evaluate_task(editor, td, spec, generation=False, progress=False, out_path=None)
        return ExperimentResult(results, editor, trainer)
    results["train"] = {"steps": tr.steps, "epochs": tr.epochs_run, "best_epoch": tr.best_epoch,
                        "best_valid_loss": tr.best_valid_loss, "stopped": tr.stopped, "history": tr.history}
    results["train_seconds"] = tr.seconds
    results["trainable_params"] = editor.n_trainable_parameters()
    results["train_config"] = tc.to_dict()
    if method == "jola":
        results["open_gates"] = editor.open_gate_counts()
        results["n_gates"] = {"additive": hooked.cfg.n_layers * hooked.cfg.n_heads,
                              "multiplicative": hooked.cfg.n_layers * hooked.cfg.n_heads}
        results["jola_config"] = editor.config.to_dict()
    else:
        results["editor_config"] = editor.config_dict()
    key = "jola" if method == "jola" else method
    log(f"[jola_lens] {label} evaluation")
    results[key] = evaluate_task(editor, td, spec, generation=generation, progress=progress,
                                 out_path=out / f"predictions_{key}.jsonl" if out else None)
    log(f"[jola_lens] {label}: {_short(results[key])}")
    results["active_heads"] = editor.summary().get("active_heads", [])
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "results.json", json.dumps(results, indent=2))
        folder.finished()
    return ExperimentResult(results, editor, trainer)
