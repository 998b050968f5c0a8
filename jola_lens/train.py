"""The one trainer: answer-only cross-entropy plus the editor's penalty, for every editor.

:class:`Trainer` trains any :class:`~jola_lens.editors.Editor` (JoLA, every baseline, the trained
selector stages): it asks the editor for its parameters, its penalty (``editor.penalty``: JoLA's
expected-L0 gate term, 0 for most baselines), the numbers to show per step
(``editor.progress_stats``) and, where it has gates, what to write into the gate log
(``editor.gate_snapshot``), and calls ``editor.before_step`` / ``editor.after_step`` around
each optimiser step (the selector stages' per-step draws, annealing and clip-and-reopen).
``JoLATrainer`` is the first release's name of the same class.

The loop is plain PyTorch: AdamW, cosine schedule with warm-up, gradient clipping,
early stopping on validation loss with restore of the best edits, a gate log of the
gates each forward pass actually used, tqdm progress, NaN guard, Ctrl-C checkpoints
and ``resume``. Only the answer positions are unembedded.

Example (a tiny random model)::

    from jola_lens import JoLAModel
    from jola_lens.train import Trainer, TrainConfig
    trainer = Trainer(JoLAModel(model), train=tokenised_train, valid=tokenised_valid,
                      config=TrainConfig(epochs=3), out_dir="runs/x")
    result = trainer.train()
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from .distributed import RankFailure
from .recipes import DEMO_DEFAULTS as _DEMO
from .schedule import PENALTIES, SCHEDULES, GateSchedule
from .tasks import DataCollator, length_grouped_batches

if TYPE_CHECKING:  # pragma: no cover
    from .editors.base import Editor


@dataclass
class TrainConfig:
    """Training settings. The defaults are the ``demo`` recipe (:mod:`jola_lens.recipes`), which
    trains and closes gates on the bundled model in 3 epochs; ``get_recipe("paper").train_config()``
    gives the JoLA paper's and code's settings (METHODS.md 1.6), noted below as "JoLA".

    Attributes:
        lr: AdamW learning rate for a and m (JoLA: 5e-3).
        gate_lr: learning rate for the gate log-alphas (``None``: same as ``lr``, as in JoLA; demo: 0.2).
        batch_size: examples per optimiser step (JoLA: 8).
        eval_batch_size: batch size of validation passes.
        epochs: maximum epochs (demo: 3; JoLA: 20).
        max_steps: stop after this many optimiser steps (``None``: no limit).
        warmup_steps: linear warm-up steps of the cosine schedule (demo: 10; JoLA: 50).
        lr_schedule: ``"cosine"``, ``"linear"`` or ``"constant"`` (after warm-up).
        weight_decay: AdamW weight decay (JoLA: 0).
        max_grad_norm: gradient clipping (HF default 1.0; 0 disables).
        patience: early-stopping patience in epochs on validation loss (JoLA: 2; 0 disables).
        penalty: ``"jola_code"`` (the released code; JoLA), ``"paper"`` (lambda * sum P(open); demo) or ``"none"``.
        gate_schedule: one of ``constant, expon, linear, cyclic, perform`` (demo: constant; JoLA: expon).
        gate_lambda: lambda_0 (``None``: the code's constant for the schedule, as in JoLA; demo: 5e-3).
        seed: seeds data order, gate samples and initialisation replays.
        eval_every_epochs: validation frequency.
        log_gates_every: record the gate log every this many steps.
        seed_rng: call ``torch.manual_seed(seed)`` when training starts; ``False`` continues the
            caller's global RNG stream (a trained selector stage seeded before initialising its
            tensors). The data order follows ``seed`` either way.
        restore_best: load the edits of the best validation epoch at the end (without validation
            data: those of the last completed epoch); ``False`` keeps the edits of the last step.
    """

    # the fields the recipes set default to the demo recipe's values (recipes.py is their one home)
    lr: float = _DEMO["lr"]
    gate_lr: float | None = _DEMO["gate_lr"]
    batch_size: int = 8
    eval_batch_size: int = 8
    epochs: int = _DEMO["epochs"]
    max_steps: int | None = None
    warmup_steps: int = _DEMO["warmup_steps"]
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    patience: int = 2
    penalty: str = _DEMO["penalty"]
    gate_schedule: str = _DEMO["gate_schedule"]
    gate_lambda: float | None = _DEMO["gate_lambda"]
    seed: int = 42
    eval_every_epochs: int = 1
    log_gates_every: int = 1
    seed_rng: bool = True
    restore_best: bool = True

    def __post_init__(self) -> None:
        if self.penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}, got {self.penalty!r}")
        if self.gate_schedule not in SCHEDULES:
            raise ValueError(f"gate_schedule must be one of {SCHEDULES}, got {self.gate_schedule!r}")
        if self.lr_schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"lr_schedule must be cosine, linear or constant, got {self.lr_schedule!r}")
        for name in ("batch_size", "eval_batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        # NaN passes every comparison, so finiteness is checked first: a NaN or infinite setting would
        # otherwise train to NaN edits (or, for gate_lambda, to untrained ones) and report success
        for name in ("lr", "gate_lr", "gate_lambda", "weight_decay", "max_grad_norm"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(float(v)):
                raise ValueError(f"{name} must be a finite number, got {v}")
        if self.lr <= 0 or (self.gate_lr is not None and self.gate_lr <= 0):
            raise ValueError(f"learning rates must be > 0, got lr={self.lr}, gate_lr={self.gate_lr}")
        for name in ("gate_lambda", "weight_decay", "max_grad_norm"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        for name in ("warmup_steps", "patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], section: str | None = None) -> "TrainConfig":
        """From a dict (YAML, JSON): unknown fields and wrong types are a one-line ``ValueError``."""
        from .settings import coerce_fields

        return cls(**coerce_fields(cls, d, section))


class TrainingDiverged(RuntimeError):
    """Training diverged: the loss became NaN or inf, or an edit parameter left any sensible range
    (|value| > ``Trainer.max_edit_abs``). The editor keeps the last finite edits it had; no run is saved."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt (checksum mismatch) or from another run."""


# ---- batching -------------------------------------------------------------------------------
def collate(examples: list[dict[str, Any]], pad_id: int) -> dict[str, Tensor]:
    """Right-pad tokenised examples (``input_ids``, ``labels``) into tensors (masks from lengths)."""
    return DataCollator(pad_token_id=pad_id)(examples)


# ---- loss -------------------------------------------------------------------------------------
def answer_loss(
    model: Any,
    input_ids: Int[Tensor, "batch pos"],
    labels: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy on the answer tokens only, unembedding only the positions that predict them.

    Runs the blocks, then ``ln_final`` and ``unembed`` on the gathered ``[n_answer, d_model]``
    rows: no ``[batch, pos, vocab]`` logits tensor is ever built.
    """
    resid = model(input_ids, attention_mask=attention_mask, stop_at_layer=model.cfg.n_layers)
    targets = labels[:, 1:]
    b, t = torch.nonzero(targets != -100, as_tuple=True)
    if b.numel() == 0:
        raise ValueError("batch has no answer tokens (every label is -100)")
    rows = resid[b, t][None]  # [1, n_answer, d_model]
    logits = model.unembed(model.ln_final(rows))[0]
    return F.cross_entropy(logits.float(), targets[b, t], reduction=reduction)


# ---- gate log ---------------------------------------------------------------------------------
class GateLog:
    """Per-step gate values, stored as tensors ``[steps, n_layers, n_heads]`` per kind.

    ``records()`` gives tidy rows (step, layer, head, kind, value, deterministic,
    prob_open, lambda): ``pandas.DataFrame(log.records())`` is one line away.
    """

    KIND_NAMES = {"a": "additive", "m": "multiplicative"}

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.lambdas: list[float] = []
        self.data: dict[str, list[Tensor]] = {}

    def record(self, step: int, lam: float, snapshot: Any) -> None:
        """Append one step: ``snapshot`` is ``editor.gate_snapshot()`` (``"a.value"``,
        ``"a.deterministic"``, ``"a.prob_open"``... each ``[n_layers, n_heads]``), or an editor."""
        if hasattr(snapshot, "gate_snapshot"):
            snapshot = snapshot.gate_snapshot()
        if not snapshot:
            return
        self.steps.append(step)
        self.lambdas.append(float(lam))
        for key, value in snapshot.items():
            self.data.setdefault(key, []).append(value.detach().float().cpu().clone())

    def tensor(self, key: str) -> Tensor:
        """e.g. ``tensor("a.prob_open")``: ``[steps, n_layers, n_heads]``."""
        return torch.stack(self.data[key])

    def records(self) -> list[dict[str, Any]]:
        rows = []
        kinds = sorted({k.split(".")[0] for k in self.data})
        for k in kinds:
            v, d, p = self.tensor(f"{k}.value"), self.tensor(f"{k}.deterministic"), self.tensor(f"{k}.prob_open")
            n_layers, n_heads = v.shape[1:]
            for si, step in enumerate(self.steps):
                for layer in range(n_layers):
                    for head in range(n_heads):
                        rows.append({
                            "step": step, "layer": layer, "head": head, "kind": self.KIND_NAMES[k],
                            "value": float(v[si, layer, head]), "deterministic": float(d[si, layer, head]),
                            "prob_open": float(p[si, layer, head]), "lambda": self.lambdas[si],
                        })
        return rows

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if self.steps:
            save_file({k: self.tensor(k).contiguous() for k in self.data}, str(d / "gate_log.safetensors"))
        (d / "gate_log.json").write_text(json.dumps({"steps": self.steps, "lambdas": self.lambdas}))

    @classmethod
    def load(cls, directory: str | Path) -> "GateLog":
        from safetensors.torch import load_file

        d = Path(directory)
        log = cls()
        meta = json.loads((d / "gate_log.json").read_text())
        log.steps, log.lambdas = list(meta["steps"]), list(meta["lambdas"])
        if log.steps:
            for k, v in load_file(str(d / "gate_log.safetensors")).items():
                log.data[k] = list(v.unbind(0))
        return log


# ---- trainer ----------------------------------------------------------------------------------
@dataclass
class TrainResult:
    steps: int
    epochs_run: float
    best_epoch: int | None
    best_valid_loss: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = "completed"  # completed | early_stopping | max_steps | diverged | interrupted
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Trainer:
    """Train an editor's edits on tokenised examples (dicts with ``input_ids`` and ``labels``).

    Args:
        editor: any :class:`~jola_lens.editors.Editor` (JoLA, a baseline, a selector's stage).
        train, valid: tokenised examples (labels -100 except on answer tokens).
        config: :class:`TrainConfig`.
        out_dir: where checkpoints, the gate log and the final edits go (optional).
        progress: show tqdm bars.
        checkpoint_every: with ``out_dir``, write a checkpoint (``out_dir/checkpoint``) every this
            many optimiser steps, besides the one at the end of every epoch and the one on Ctrl-C
            (0: epochs and Ctrl-C only). Each is written atomically: a new step file, then the
            ``latest.json`` pointer with its sha256, so a ``kill -9`` at any moment leaves the
            previous checkpoint intact.
        run_meta: what identifies this run (task, settings, model); stored in each checkpoint, so a
            resume can check that it continues the same run.

    Ctrl-C (SIGINT) during :meth:`train` finishes the current step, writes a checkpoint and returns
    with ``stopped == "interrupted"`` (a second Ctrl-C stops at once); ``train(resume_from=...)``
    continues to the same final edits as an uninterrupted run.
    """

    #: an edit parameter larger than this in absolute value means the run diverged (an absurd learning
    #: rate: lr 1e6 took the parameters to 1.6e6 in one step and closed every gate, loss still finite)
    max_edit_abs: float = 1e4

    def __init__(
        self,
        editor: "Editor",
        train: list[dict[str, Any]] | None = None,
        valid: list[dict[str, Any]] | None = None,
        config: TrainConfig | None = None,
        out_dir: str | Path | None = None,
        progress: bool = True,
        pad_id: int | None = None,
        callbacks: list[Callable[[dict[str, Any]], None] | Any] | None = None,  # HF callbacks with train_dataset=
        *,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        tokenizer: Any = None,
        data_collator: Any = None,
        args: Any = None,
        gate_scheduler: str | None = None,
        dataset_text_field: str | None = None,
        max_seq_length: int = 400,
        peft_config: Any = None,
        checkpoint_every: int = 50,
        run_meta: dict[str, Any] | None = None,
    ) -> None:
        if train_dataset is not None:  # the original package's keyword interface (jola_lens.compat)
            from .compat import trainer_args_from_original

            train, valid, config, out_dir, callbacks = trainer_args_from_original(
                editor, train_dataset, eval_dataset, tokenizer, args, gate_scheduler, max_seq_length, callbacks
            )
        if not train:
            raise ValueError("the training set is empty")
        self.editor = editor
        self.train_data = train
        self.valid_data = valid or []
        self.config = config or TrainConfig()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        tok = getattr(editor.model, "tokenizer", None)
        self.pad_id = pad_id if pad_id is not None else (tok.pad_token_id if tok is not None else 0)
        self.device = getattr(getattr(editor.model, "cfg", None), "device", None)
        self.callbacks = callbacks or []
        if checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
        self.checkpoint_every = checkpoint_every
        self.run_meta = run_meta
        self._stop_requested = False
        self._in_step = False
        c = self.config
        self.steps_per_epoch = math.ceil(len(train) / c.batch_size)
        self.total_steps = self.steps_per_epoch * c.epochs
        if c.max_steps is not None:
            self.total_steps = min(self.total_steps, c.max_steps)
        # the penalty weight over training; None for editors without a penalty
        self.schedule: GateSchedule | None = editor.penalty_schedule(c, self.total_steps)
        self.gate_log = GateLog()
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_valid: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.bad_epochs = 0
        self._build_optimizer()
        from .distributed import current, wrap_edit_parameters

        # data parallel under accelerate launch / torchrun (jola_lens.distributed): DDP over the edit
        # parameters only; rank 0 alone writes
        self.dist = current()
        self._ddp = wrap_edit_parameters(self.jola.edit_parameters()) if self.dist.enabled else None

    @property
    def jola(self) -> "Editor":
        """The editor being trained (the first release's attribute name)."""
        return self.editor

    # -- optimiser -----------------------------------------------------------------------------
    def _build_optimizer(self) -> None:
        c = self.config
        gate_params, edit_params = [], []
        for name, p in self.jola.named_edit_parameters():
            (gate_params if "log_alpha" in name else edit_params).append(p)
        groups = [{"params": edit_params, "lr": c.lr}]
        if gate_params:
            groups.append({"params": gate_params, "lr": c.gate_lr or c.lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=c.weight_decay)
        def lr_factor(step: int) -> float:  # a plain function: LambdaLR keeps it out of its state_dict
            return self._lr_factor(step)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)

    def _lr_factor(self, step: int) -> float:
        c = self.config
        if c.warmup_steps and step < c.warmup_steps:
            return (step + 1) / (c.warmup_steps + 1)
        if c.lr_schedule == "constant":
            return 1.0
        span = max(self.total_steps - c.warmup_steps, 1)
        progress = min((step - c.warmup_steps) / span, 1.0)
        if c.lr_schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    # -- evaluation ----------------------------------------------------------------------------
    def validation_loss(self) -> float | None:
        """Mean answer-token cross-entropy on the validation set with deterministic gates."""
        if not self.valid_data:
            return None
        from .distributed import no_grad_context

        with no_grad_context(self.jola.model):
            return self._validation_loss()

    def _validation_loss(self) -> float:
        was_training = self.jola.training
        self.jola.eval()
        total, count = 0.0, 0
        lengths = [len(e["input_ids"]) for e in self.valid_data]
        batches = length_grouped_batches(lengths, self.config.eval_batch_size, 0, shuffle=False)
        weights = [1.0] * len(batches)
        if self.dist.enabled:  # each rank its share of the batches, the sums reduced below
            from .distributed import is_sharded

            share = batches[self.dist.rank :: self.dist.world]
            weights = [1.0] * len(share)
            if is_sharded(self.jola.model):  # FSDP: every rank the same number of forward passes
                n = -(-len(batches) // self.dist.world)
                weights += [0.0] * (n - len(share))
                share += batches[:1] * (n - len(share))
            batches = share
        with self.jola.applied():
            for idx, w in zip(batches, weights):
                b = self._batch(self.valid_data, idx)
                self._observe(b)
                loss = answer_loss(self.jola.model, b["input_ids"], b["labels"], b["attention_mask"], reduction="sum")
                total += float(loss) * w
                count += int((b["labels"][:, 1:] != -100).sum()) * int(w)
        self.jola.train(was_training)
        if self.dist.enabled:
            from .distributed import all_reduce_sum

            total, count = all_reduce_sum([total, count])
        return total / max(count, 1)

    # -- the loop ------------------------------------------------------------------------------
    def train(self, resume_from: str | Path | None = None) -> TrainResult:
        from tqdm.auto import tqdm

        c = self.config
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        elif c.seed_rng:
            torch.manual_seed(c.seed)
        start = time.time()
        lengths = [len(e["input_ids"]) for e in self.train_data]
        stopped = "completed"
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress,
                   desc=getattr(self.jola, "display_name", "JoLA"), unit="step")
        self.jola.train()
        self._stop_requested = self._in_step = False
        restore_sigint = self._defer_sigint()
        try:
            while self.epoch < c.epochs and stopped == "completed":
                batches = length_grouped_batches(lengths, c.batch_size, c.seed + self.epoch)
                while self.batch_in_epoch < len(batches):
                    if c.max_steps is not None and self.step >= c.max_steps:
                        stopped = "max_steps"
                        break
                    if self._stop_requested:
                        raise KeyboardInterrupt
                    idx = batches[self.batch_in_epoch]
                    stats = self._train_step_on(idx)
                    self.batch_in_epoch += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{stats['ce']:.3f}", open=stats["open"], lam=f"{stats['lambda']:.3g}")
                    for cb in self.callbacks:
                        cb(stats)
                    if (self._writes and self.checkpoint_every
                            and self.step % self.checkpoint_every == 0 and self.batch_in_epoch < len(batches)):
                        self.save_checkpoint(self.out_dir / "checkpoint")
                if stopped != "completed":
                    break
                self.epoch += 1
                self.batch_in_epoch = 0
                if self._end_of_epoch():
                    stopped = "early_stopping"
                elif self._writes and self.epoch < c.epochs:
                    self.save_checkpoint(self.out_dir / "checkpoint")
                if self._stop_requested and stopped == "completed" and self.epoch < c.epochs:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            stopped = "interrupted"
            if self.out_dir is not None and self._in_step:  # half a step: its state is not one to continue from
                self._in_step = False
                kept = self.out_dir / "checkpoint" / "latest.json"
                print(f"\n[jola_lens] interrupted inside step {self.step + 1}: "
                      + (f"the last checkpoint ({self.out_dir / 'checkpoint'}) is kept" if kept.is_file()
                         else "no checkpoint was written yet"), flush=True)
            elif self._writes:
                path = self.save_checkpoint(self.out_dir / "checkpoint")
                print(f"\n[jola_lens] interrupted after step {self.step}: checkpoint saved to {path}; continue with "
                      "Trainer.train(resume_from=...) or by re-running the same command", flush=True)
        except RankFailure as e:
            ckpt = self.out_dir / "checkpoint" if self.out_dir is not None else None
            kept = ckpt is not None and (ckpt / "latest.json").is_file()
            raise RankFailure(
                f"rank {self.dist.rank} of {self.dist.world}: another process of the group stopped during step "
                f"{self.step + 1} ({e}); "
                + (f"the last checkpoint ({ckpt}, step {json.loads((ckpt / 'latest.json').read_text())['step']}) "
                   "is intact: relaunch the same command to resume from it" if kept
                   else "no checkpoint was written yet: relaunch to start again")) from e
        except TrainingDiverged as e:
            stopped = "diverged"
            self.diverged_message = str(e)
            print(f"\n[jola_lens] {e}", flush=True)
        finally:
            restore_sigint()
            bar.close()
            self.jola.eval()
        if c.restore_best and stopped in ("completed", "early_stopping", "max_steps") and self.best_state is not None:
            self.jola.load_edit_state(self.best_state)
        result = TrainResult(
            steps=self.step,
            epochs_run=self.epoch + self.batch_in_epoch / max(self.steps_per_epoch, 1),
            best_epoch=self.best_epoch,
            best_valid_loss=self.best_valid,
            history=self.history,
            stopped=stopped,
            seconds=time.time() - start,
        )
        if self._writes and stopped == "diverged":
            # no run is saved for edits that diverged; the last periodic checkpoint (if any) stays
            self.out_dir.mkdir(parents=True, exist_ok=True)
            from .outdir import atomic_write_text

            atomic_write_text(self.out_dir / "train_result.json",
                              json.dumps({**result.to_dict(), "message": self.diverged_message}, indent=2))
        elif self._writes and stopped != "interrupted":
            self.save_run(self.out_dir, result)
            import shutil

            shutil.rmtree(self.out_dir / "checkpoint", ignore_errors=True)  # the finished run replaces it
        return result

    def _defer_sigint(self) -> Callable[[], None]:
        """Turn the first Ctrl-C into "stop after this step" (the checkpoint is then exact); the second
        raises at once. Only in the main thread (signal handlers can be set nowhere else)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        try:
            previous = signal.getsignal(signal.SIGINT)
        except (ValueError, TypeError):
            return lambda: None
        if previous is not signal.default_int_handler:  # someone else (a debugger, a test) owns SIGINT
            return lambda: None

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            print("\n[jola_lens] Ctrl-C: stopping after this step (again to stop at once)", flush=True)

        signal.signal(signal.SIGINT, handler)

        def restore() -> None:
            signal.signal(signal.SIGINT, previous)

        return restore

    def _batch(self, data: list[dict[str, Any]], idx: list[int]) -> dict[str, Tensor]:
        """The collated examples ``idx`` of ``data``, on the model's device."""
        b = collate([data[i] for i in idx], self.pad_id)
        return b if self.device is None else {k: v.to(self.device) for k, v in b.items()}

    @property
    def _writes(self) -> bool:
        """Whether this process writes the run folder and checkpoints (rank 0 of a group, or alone)."""
        return self.out_dir is not None and self.dist.is_main

    def _n_targets(self, idx: list[int]) -> int:
        """Answer tokens the loss averages over in examples ``idx`` (labels after the first position)."""
        n = 0
        for i in idx:
            labels = self.train_data[i]["labels"]
            n += sum(1 for t in list(labels)[1:] if int(t) != -100)
        return n

    def _train_step_on(self, idx: list[int]) -> dict[str, Any]:
        """One optimiser step on the global batch ``idx``: all of it alone, this rank's share in a group."""
        if self._ddp is None:
            return self._train_step(self._batch(self.train_data, idx))
        share = idx[self.dist.rank :: self.dist.world]
        weight = 1.0
        if not share:  # a last batch smaller than the group: this rank takes part with no weight
            share, weight = idx[:1], 0.0
        try:
            return self._train_step(self._batch(self.train_data, share), global_targets=self._n_targets(idx),
                                    weight=weight)
        except RuntimeError as e:
            from .distributed import RankFailure

            if isinstance(e, RankFailure):
                raise
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if any(w in msg.lower() for w in ("connection", "gloo", "nccl", "timed out", "peer", "broken pipe")):
                raise RankFailure(msg) from e
            raise

    def _train_step(self, batch: dict[str, Tensor], global_targets: int | None = None,
                    weight: float = 1.0) -> dict[str, Any]:
        self._in_step = True
        out = self._train_step_inner(batch, global_targets, weight)
        self._in_step = False
        return out

    def _train_step_inner(self, batch: dict[str, Tensor], global_targets: int | None = None,
                          weight: float = 1.0) -> dict[str, Any]:
        c = self.config
        self.jola.before_step(self.step + 1)
        good_state = self.jola.edit_state()
        lam = self.schedule.value(self.step + 1) if self.schedule is not None else 0.0
        self._observe(batch)
        self.optimizer.zero_grad(set_to_none=True)
        # the backward pass runs with the hooks still attached: gradient checkpointing recomputes each
        # layer there, and the recomputed layer must be the edited one
        with self.jola.applied():
            if self._ddp is None:
                ce = answer_loss(self.jola.model, batch["input_ids"], batch["labels"], batch["attention_mask"])
                pen = self.jola.penalty(self.step + 1, lam)
                loss = ce + pen
                seen = loss.detach()
            else:
                # this rank's answer-token loss SUM over the global count, times the world size: DDP's
                # gradient average is then the gradient of the global batch's mean loss (one process's)
                from .distributed import all_reduce_sum

                def compute() -> tuple[Tensor, Tensor, Any]:
                    ce_sum = answer_loss(self.jola.model, batch["input_ids"], batch["labels"],
                                         batch["attention_mask"], reduction="sum") * weight
                    pen = self.jola.penalty(self.step + 1, lam)
                    return ce_sum * (self.dist.world / max(global_targets or 1, 1)) + pen, ce_sum, pen

                loss, ce_sum, pen = self._ddp(compute)
                ce = torch.tensor(all_reduce_sum([float(ce_sum.detach())])[0] / max(global_targets or 1, 1))
                seen = ce + (pen.detach().cpu() if torch.is_tensor(pen) else pen)  # the same on every rank
            if not bool(torch.isfinite(seen)):
                self.jola.load_edit_state(good_state)
                raise TrainingDiverged(
                    f"training diverged at step {self.step + 1}: the loss is {float(seen)}; "
                    "the editor keeps the last finite edits, no edits were saved"
                )
            loss.backward()
        if c.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.jola.edit_parameters(), c.max_grad_norm)
        self.optimizer.step()
        self._check_edits(good_state, float(seen))
        self.scheduler.step()
        self.step += 1
        if self.schedule is not None:
            self.schedule.observe(float(seen))
        self.jola.after_step(self.step)
        if self.step % c.log_gates_every == 0:
            snap = self.jola.gate_snapshot()
            if snap is not None:
                self.gate_log.record(self.step, lam, snap)
        counts = self.jola.progress_stats()
        return {"step": self.step, "ce": float(ce.detach()),
                "penalty": float(pen.detach()) if torch.is_tensor(pen) else float(pen), "lambda": lam,
                "open": counts.get("total", -1)}

    def _check_edits(self, good_state: dict[str, Tensor], loss: float) -> None:
        """After an optimiser step: every edit parameter finite and within ``max_edit_abs``, else
        restore the edits of before the step and raise :class:`TrainingDiverged`."""
        worst = 0.0
        for p in self.jola.edit_parameters():
            if p.numel():
                worst = max(worst, float(p.detach().abs().max()))
        if math.isfinite(worst) and worst <= self.max_edit_abs:
            return
        self.jola.load_edit_state(good_state)
        c = self.config
        raise TrainingDiverged(
            f"training diverged at step {self.step + 1}: an edit parameter reached {worst:.3g} (loss {loss:.4g}); "
            f"the learning rate is likely too large (lr {c.lr:g}, gate_lr {c.gate_lr or c.lr:g}). "
            "No edits were saved"
        )

    def _observe(self, batch: dict[str, Tensor]) -> None:
        """Show the batch (labels included) to edits that depend on where the prompt ends."""
        self.jola.observe_batch(batch)

    def _end_of_epoch(self) -> bool:
        """Validate, keep the best edits; True when early stopping triggers."""
        c = self.config
        if self.epoch % c.eval_every_epochs != 0:
            return False
        v = self.validation_loss()
        counts = self.jola.progress_stats()
        self.history.append({"epoch": self.epoch, "step": self.step, "valid_loss": v, **counts})
        if v is None:
            self.best_state = self.jola.edit_state()
            return False
        if self.best_valid is None or v < self.best_valid:
            self.best_valid, self.best_epoch = v, self.epoch
            self.best_state = self.jola.edit_state()
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return bool(c.patience) and self.bad_epochs >= c.patience

    # -- persistence (no pickle: tensors in safetensors, the rest in JSON) -----------------------
    def save_run(self, out_dir: str | Path, result: TrainResult) -> None:
        d = Path(out_dir)
        self.jola.save(d, extra={"train_config": self.config.to_dict()})
        self.gate_log.save(d)
        (d / "train_result.json").write_text(json.dumps(result.to_dict(), indent=2))

    def save_checkpoint(self, directory: str | Path) -> Path:
        """Write a checkpoint of the whole training state (edits, optimiser, schedules, RNG, best edits,
        gate log) into ``directory``: ``step-NNNNNNN.safetensors``, then ``latest.json`` naming it with
        its sha256, each through a temporary file; older step files are removed after that."""
        from safetensors.torch import save_file

        from .editors.io import _sha256
        from .outdir import atomic_write_text

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, Tensor] = {f"edits.{k}": v.detach().cpu().contiguous()
                                      for k, v in self.jola.edit_state().items()}
        opt = self.optimizer.state_dict()
        for pid, st in opt["state"].items():
            for k, v in st.items():
                tensors[f"opt.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
        tensors["rng"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, st in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng_cuda.{i}"] = st
        if self.best_state is not None:
            tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in self.best_state.items()})
        for k in self.gate_log.data:
            tensors[f"gatelog.{k}"] = self.gate_log.tensor(k).contiguous()
        name = f"step-{self.step:07d}-e{self.epoch}b{self.batch_in_epoch}.safetensors"
        tmp = d / f".{name}.tmp-{os.getpid()}"
        save_file(tensors, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, d / name)
        meta = {
            "format": 2, "file": name, "sha256": _sha256(d / name),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "best_valid": self.best_valid, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
            "history": self.history, "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "scheduler": self.scheduler.state_dict(),
            "opt_param_groups": opt["param_groups"],
            "train_config": self.config.to_dict(),
            "gate_log": {"steps": self.gate_log.steps, "lambdas": self.gate_log.lambdas},
            "run": self.run_meta,
        }
        atomic_write_text(d / "latest.json", json.dumps(meta, default=float))
        for old in d.glob("step-*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)
        for old in ("state.safetensors", "trainer_state.json", "gate_log.json", "gate_log.safetensors"):
            (d / old).unlink(missing_ok=True)  # a first-release checkpoint in the same folder
        return d

    @staticmethod
    def read_checkpoint(directory: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The tensors and the metadata of the checkpoint in ``directory`` (checksum verified).

        Raises :class:`CheckpointError` (one line) for a missing, truncated or altered checkpoint.
        Reads the first release's ``state.safetensors`` + ``trainer_state.json`` too.
        """
        from safetensors.torch import load_file

        from .editors.io import _sha256

        d = Path(directory)
        if (d / "latest.json").is_file():
            try:
                meta = json.loads((d / "latest.json").read_text())
                path = d / meta["file"]
            except (ValueError, KeyError, TypeError):
                raise CheckpointError(f"{d}/latest.json is unreadable: the checkpoint is corrupt") from None
            if not path.is_file():
                raise CheckpointError(f"{d}: the checkpoint file {meta['file']} named by latest.json is missing")
            if _sha256(path) != meta.get("sha256"):
                raise CheckpointError(f"{path} does not match its checksum in latest.json: the checkpoint is "
                                      "corrupt (start afresh with --overwrite)")
            tensors = load_file(str(path))
            return tensors, meta
        if (d / "state.safetensors").is_file() and (d / "trainer_state.json").is_file():
            try:
                tensors = load_file(str(d / "state.safetensors"))
                meta = json.loads((d / "trainer_state.json").read_text())
            except Exception as e:
                raise CheckpointError(f"{d}: the checkpoint is unreadable ({type(e).__name__})") from None
            if (d / "gate_log.json").is_file():
                log = GateLog.load(d)
                meta["gate_log"] = {"steps": log.steps, "lambdas": log.lambdas}
                tensors.update({f"gatelog.{k}": log.tensor(k) for k in log.data})
            return tensors, meta
        raise CheckpointError(f"no checkpoint in {d} (expected latest.json and its step file)")

    def load_checkpoint(self, directory: str | Path) -> None:
        tensors, meta = self.read_checkpoint(directory)
        self.jola.load_edit_state({k[6:]: v for k, v in tensors.items() if k.startswith("edits.")})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best_state = best or None
        state: dict[int, dict[str, Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, pid, name = k.split(".", 2)
                state.setdefault(int(pid), {})[name] = v
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["opt_param_groups"]})
        self.scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(tensors["rng"])
        cuda_states = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng_cuda.")),
                                                  key=lambda k: int(k.split(".")[1]))]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)
        self.step, self.epoch, self.batch_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
        self.best_valid, self.best_epoch, self.bad_epochs = meta["best_valid"], meta["best_epoch"], meta["bad_epochs"]
        self.history = meta["history"]
        if self.schedule is not None and meta.get("schedule") is not None:
            self.schedule.load_state_dict(meta["schedule"])
        log = GateLog()
        if meta.get("gate_log"):
            log.steps, log.lambdas = list(meta["gate_log"]["steps"]), list(meta["gate_log"]["lambdas"])
            for k, v in tensors.items():
                if k.startswith("gatelog."):
                    log.data[k[8:]] = list(v.unbind(0))
        self.gate_log = log


#: the first release's name of the one trainer
JoLATrainer = Trainer


def _install_call() -> None:
    """``jl.train(editor, task)`` is :func:`jola_lens.workflow.train`; this module has the same name, and
    whichever is imported last would own ``jola_lens.train``, so the module itself is made callable
    (as :mod:`jola_lens.evaluate` is): calling it runs the workflow's function."""
    import sys
    import types

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            from .workflow import train as workflow_train

            return workflow_train(*args, **kwargs)

    sys.modules[__name__].__class__ = _CallableModule


_install_call()
