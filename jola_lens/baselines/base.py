"""The common frame of the baselines: a frozen HookedTransformer plus trainable hook edits.

:class:`EditBaseline` has the interface :class:`~jola_lens.train.JoLATrainer` and
:func:`~jola_lens.experiment.evaluate_task` use for a :class:`~jola_lens.model.JoLAModel`
(``model``, ``applied()``, ``named_edit_parameters()``, ``edit_state()``, ``save()``...), so one
trainer and one evaluation serve JoLA and every baseline: same data, same loss (answer tokens
only), same optimiser and schedule, same scoring.

:class:`PromptPositions` tells an edit, inside a forward pass, which positions belong to the
prompt; LoReFT (first/last prompt positions) and ITI steering (from the last prompt token on)
need it. It reads the ``attention_mask`` and ``past_kv_cache`` arguments of the forward call
(a pass on top of a non-empty cache is a continuation: no prompt positions), and, in training,
the labels the trainer shows it (:meth:`EditBaseline.observe_batch`: the prompt ends at the first
labelled token). Evaluation runs every prompt alone into the KV cache first for such edits
(``needs_prompt_pass``).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from jaxtyping import Bool
from torch import Tensor, nn

from ..model import attached_hooks, model_identity
from ..train import JoLATrainer, TrainConfig, TrainResult

BASELINE_FILE = "baseline.safetensors"
BASELINE_CONFIG = "baseline.json"


class PromptPositions:
    """Per forward pass: which positions are real tokens, and where each row's prompt ends.

    Attach with :meth:`attach` (a forward pre-hook on the HookedTransformer). Then
    :meth:`first_last` and :meth:`from_last_prompt_token` give ``[batch, pos]`` float masks.
    """

    def __init__(self) -> None:
        self.attention_mask: Tensor | None = None
        self.continuation = False  # the pass runs on top of a non-empty KV cache
        self.prompt_end: Tensor | None = None  # [batch] first answer position (training only)

    def observe_labels(self, labels: Tensor | None) -> None:
        """Training rows: the prompt ends where the first label != -100 is (``None`` clears)."""
        if labels is None:
            self.prompt_end = None
            return
        has = labels != -100
        first = torch.where(has.any(1), has.float().argmax(1), torch.full_like(labels[:, 0], labels.shape[1]))
        self.prompt_end = first

    def _pre_hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        self.attention_mask = kwargs.get("attention_mask")
        cache = kwargs.get("past_kv_cache")
        entries = getattr(cache, "entries", None) if cache is not None else None
        self.continuation = bool(entries) and entries[0].past_keys.shape[1] > 0

    @contextlib.contextmanager
    def attach(self, model: nn.Module) -> Iterator["PromptPositions"]:
        handle = model.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()
            self.attention_mask = None
            self.continuation = False

    def _spans(self, batch: int, pos: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(start, end)`` of each row's prompt: the real tokens before the first answer token."""
        if self.attention_mask is not None and self.attention_mask.shape == (batch, pos):
            real = self.attention_mask.to(device).bool()
            start = real.float().argmax(1)
            end = pos - real.flip(1).float().argmax(1)
        else:
            start = torch.zeros(batch, dtype=torch.long, device=device)
            end = torch.full((batch,), pos, dtype=torch.long, device=device)
        if self.prompt_end is not None and self.prompt_end.shape[0] == batch:
            end = torch.minimum(end, self.prompt_end.to(device))
        return start, end

    def first_last(self, batch: int, pos: int, first: int, last: int, device: torch.device) -> Tensor:
        """Mask of the first ``first`` and last ``last`` prompt positions (ReFT's "f+l")."""
        if self.continuation:
            return torch.zeros(batch, pos, device=device)
        start, end = self._spans(batch, pos, device)
        p = torch.arange(pos, device=device)[None]
        head = (p >= start[:, None]) & (p < (start + first)[:, None]) & (p < end[:, None])
        tail = (p >= (end - last)[:, None]) & (p >= start[:, None]) & (p < end[:, None])
        return (head | tail).float()

    def from_last_prompt_token(self, batch: int, pos: int, device: torch.device) -> Tensor:
        """Mask of the last prompt token and everything after it (ITI's edit with a KV cache)."""
        if self.continuation:
            return torch.ones(batch, pos, device=device)
        start, end = self._spans(batch, pos, device)
        p = torch.arange(pos, device=device)[None]
        keep = p >= (end - 1)[:, None]
        if self.attention_mask is not None and self.attention_mask.shape == (batch, pos):
            keep = keep & self.attention_mask.to(device).bool()
        return keep.float()


class EditBaseline(nn.Module):
    """A frozen HookedTransformer with trainable edits applied through TransformerLens hooks.

    Subclasses create their parameters in ``__init__`` (as submodules or parameters of ``self``)
    and implement :meth:`fwd_hooks`. ``fit`` trains them with :class:`JoLATrainer` (no gate
    penalty); evaluation uses :func:`jola_lens.experiment.evaluate_task` unchanged.
    """

    name = "baseline"
    display_name = "baseline"
    needs_prompt_pass = False
    #: the trainer reads JoLA's gate modules from ``edits``; baselines have none
    edits: dict = {}

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        self.positions = PromptPositions()
        self.settings: dict[str, Any] = {}

    # ---- parameters --------------------------------------------------------------------------
    def named_edit_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for n, p in self.named_parameters():
            if not n.startswith("model.") and p.requires_grad:
                yield n, p

    def edit_parameters(self) -> list[nn.Parameter]:
        bad = [n for n, p in self.model.named_parameters() if p.requires_grad]
        if bad:
            raise RuntimeError(f"base-model parameters require grad: {bad[:5]}")
        return [p for _, p in self.named_edit_parameters()]

    def n_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.edit_parameters())

    def edit_state(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.state_dict().items() if not k.startswith("model.")}

    def load_edit_state(self, state: dict[str, Tensor]) -> None:
        own = self.edit_state()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"edit state: missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for k, t in self.state_dict().items():
                if k in state:
                    t.copy_(state[k].to(t.device, t.dtype))

    def train(self, mode: bool = True) -> "EditBaseline":
        self.training = mode
        for name, child in self.named_children():
            if name != "model":
                child.train(mode)
        self.model.eval()
        return self

    # ---- applying ----------------------------------------------------------------------------
    def fwd_hooks(self) -> list[tuple[str, Callable[..., Tensor]]]:
        raise NotImplementedError

    @contextlib.contextmanager
    def applied(self) -> Iterator["EditBaseline"]:
        """Attach the edit hooks (and the prompt-position tracker) for the ``with`` body."""
        with self.positions.attach(self.model), attached_hooks(self.model, self.fwd_hooks()):
            yield self

    def observe_batch(self, batch: dict[str, Tensor] | None) -> None:
        """Called by the trainer before each forward pass with the collated batch."""
        self.positions.observe_labels(None if batch is None else batch.get("labels"))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.applied():
            return self.model(*args, **kwargs)

    # ---- training ----------------------------------------------------------------------------
    def fit(
        self,
        train: list[dict[str, Any]],
        valid: list[dict[str, Any]] | None,
        config: TrainConfig | None = None,
        *,
        out_dir: str | Path | None = None,
        progress: bool = True,
    ) -> TrainResult:
        """Train the edits with the JoLA trainer (answer-only loss, AdamW, schedule, early stopping)."""
        import dataclasses

        tc = dataclasses.replace(config or TrainConfig(), penalty="none")
        if not self.edit_parameters():
            raise RuntimeError(f"{self.name} has no trainable parameters")
        trainer = JoLATrainer(self, train, valid, tc, out_dir=out_dir, progress=progress)  # type: ignore[arg-type]
        try:
            return trainer.train()
        finally:
            self.observe_batch(None)

    # ---- persistence (safetensors + JSON) ----------------------------------------------------
    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.cpu().contiguous() for k, v in self.edit_state().items()}, str(d / BASELINE_FILE))
        meta = {"baseline": self.name, "settings": self.settings, "model": model_identity(self.model),
                "trainable_params": self.n_trainable_parameters()}
        if extra:
            meta["extra"] = extra
        (d / BASELINE_CONFIG).write_text(json.dumps(meta, indent=2, default=str))
        return d

    def load_edits(self, directory: str | Path) -> "EditBaseline":
        from safetensors.torch import load_file

        self.load_edit_state(load_file(str(Path(directory) / BASELINE_FILE)))
        return self


def head_mask_or_all(model: Any, mask: Bool[Tensor, "n_layers n_heads"] | None) -> Tensor:
    c = model.cfg
    if mask is None:
        return torch.ones(c.n_layers, c.n_heads, dtype=torch.bool)
    if tuple(mask.shape) != (c.n_layers, c.n_heads):
        raise ValueError(f"mask must have shape {(c.n_layers, c.n_heads)}, got {tuple(mask.shape)}")
    return mask.bool()


def check_layers(model: Any, layers: list[int] | None) -> list[int]:
    n = model.cfg.n_layers
    if layers is None:
        return list(range(n))
    layers = sorted({int(x) for x in layers})
    if not layers or layers[0] < 0 or layers[-1] >= n:
        raise ValueError(f"layers must be a non-empty subset of 0..{n - 1}, got {layers}")
    return layers
