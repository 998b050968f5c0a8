"""The one shape of "an edit on a frozen model": :class:`Editor` and :class:`EditorConfig`.

An editor is an ``nn.Module`` that holds a frozen HookedTransformer (``editor.model``) and a few
trainable tensors, and changes the model's forward pass only through TransformerLens forward hooks:

* :meth:`Editor.fwd_hooks` gives ``(hook_name, fn)`` pairs; :meth:`Editor.applied` attaches them for
  the body of a ``with`` block and always removes exactly those hooks (also after an exception);
  nested ``applied()`` blocks (or ``editor(x)`` inside one) attach them once.
* :meth:`Editor.penalty` is the regulariser the one :class:`~jola_lens.train.Trainer` adds to the
  answer loss (0 by default; JoLA's expected-L0 term; LoFiT stage 1's L1 term);
  :meth:`Editor.before_step` / :meth:`Editor.after_step` run around each optimiser step (the
  trained head selectors' per-step draws, annealing and clip-and-reopen; nothing by default).
* :meth:`Editor.summary` reports trainable parameters and, where the method has them, open gates
  and edited heads.
* :meth:`Editor.save` writes the one saved-run format (``jola_config.json`` + ``edits.safetensors``,
  see :mod:`jola_lens.editors.io`); :func:`jola_lens.editors.load_editor` reads it back, checks the
  model identity and returns the editor in eval mode.
* :meth:`Editor.merge` folds the edit into the weights where that is exact.

Example (a tiny random model; every editor has the same interface):
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.editors import get_editor
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4, d_mlp=32,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> model = HookedTransformer(cfg)
    >>> red = get_editor(model, "red").eval()
    >>> tokens = torch.randint(0, 50, (1, 5))
    >>> with red.applied():
    ...     edited = model(tokens)
    >>> torch.allclose(edited, model(tokens))  # RED starts at the identity (scale 1, bias 0)
    True
    >>> red.summary()["trainable_params"]
    64
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

import torch
from jaxtyping import Bool
from torch import Tensor, nn

from ..config import EditorConfig  # noqa: F401  (re-exported: the base of every editor's config)

if TYPE_CHECKING:  # pragma: no cover
    from ..schedule import GateSchedule
    from ..train import TrainConfig, TrainResult

HookFn = Callable[..., Tensor]


class EditorLoadError(ValueError):
    """Saved edits could not be loaded onto this model; the message says what differs."""


def model_identity(model: Any) -> dict[str, Any]:
    """The fields a saved edit must match to be loaded onto ``model``: its shapes, its name (for
    messages) and a fingerprint of its weights (``weights``: 16 evenly spaced values of each of a few
    weight matrices, and ``dtype``), so a model is recognised by what it is, not by the path it was
    loaded from.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> m = HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, n_heads=2,
        ...                                               d_vocab=5, act_fn="gelu"))
        >>> sorted(model_identity(m))[:3]
        ['d_head', 'd_model', 'd_vocab']
        >>> len(model_identity(m)["weights"]) > 0
        True
    """
    c = model.cfg
    return {
        "model_name": c.model_name,
        "original_architecture": c.original_architecture,
        "n_layers": c.n_layers,
        "n_heads": c.n_heads,
        "d_head": c.d_head,
        "d_model": c.d_model,
        "d_vocab": c.d_vocab,
        "dtype": str(getattr(c, "dtype", "")).replace("torch.", ""),
        "weights": weight_fingerprint(model),
    }


#: the weight matrices sampled by :func:`weight_fingerprint` ({last}: the last block)
FINGERPRINT_TENSORS = ("embed.W_E", "blocks.0.attn.W_Q", "blocks.{last}.attn.W_V", "blocks.{last}.mlp.W_out",
                       "unembed.W_U")


@torch.no_grad()
def weight_fingerprint(model: Any, per_tensor: int = 16) -> list[float]:
    """``per_tensor`` evenly spaced values of each of :data:`FINGERPRINT_TENSORS` (those the model
    has), as float32 numbers: two different checkpoints of one architecture differ in all of them,
    the same checkpoint loaded from another path or device in none."""
    cached = getattr(model, "weight_fingerprint_cache", None)  # taken before FSDP sharded the weights
    if cached is not None and per_tensor == 16:
        return list(cached)
    own = getattr(model, "fingerprint_params", None)  # a backend whose weights have other names (hf)
    params = own() if callable(own) else dict(model.named_parameters())
    last = model.cfg.n_layers - 1
    out: list[float] = []
    for name in FINGERPRINT_TENSORS:
        p = params.get(name.format(last=last))
        if p is None or p.numel() == 0:
            continue
        flat = p.detach().reshape(-1)
        idx = torch.arange(per_tensor, device=flat.device) * (flat.numel() - 1) // max(per_tensor - 1, 1)
        out.extend(float(v) for v in flat[idx].float().cpu())
    return out


def same_weights(saved: list[float], here: list[float], dtypes: tuple[str, str] = ("", "")) -> bool:
    """Whether two :func:`weight_fingerprint` lists come from the same checkpoint (a half-precision
    copy of a float32 checkpoint counts as the same: tolerance by the coarser dtype)."""
    if len(saved) != len(here):
        return False
    half = any(d in ("float16", "bfloat16") for d in dtypes)
    rel = 2.0**-7 if half else 1e-5  # bfloat16 keeps 8 significant bits
    return all(abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-12 for a, b in zip(saved, here))


def strip_hooks(model: Any) -> None:
    """Remove every forward/backward hook from ``model`` (TransformerLens hook points and plain torch hooks)."""
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                     "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):
            d = getattr(m, attr, None)
            if d is not None:
                d.clear()
        for attr in ("fwd_hooks", "bwd_hooks"):
            if isinstance(getattr(m, attr, None), list):
                setattr(m, attr, [])
    rewire = getattr(model, "rewire", None)  # the hf backend feeds its hook points from torch hooks
    if callable(rewire):
        rewire()


#: the identity fields that must agree for the saved tensors to fit at all
SHAPE_KEYS = ("n_layers", "n_heads", "d_head", "d_model", "d_vocab")


@contextlib.contextmanager
def attached_hooks(model: Any, hooks: list[tuple[str, HookFn]]) -> Iterator[Any]:
    """Add forward hooks ``(hook_name, fn)`` to a HookedTransformer for the ``with`` body only.

    The one hook mechanism of the library (editors and selectors): unlike ``model.hooks(...)``
    it removes exactly the hooks it added, so hooks the user attached before stay in place, and it
    removes them also when the body raises.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, n_heads=2, d_vocab=5,
        ...                               act_fn="gelu")
        >>> m = HookedTransformer(cfg)
        >>> with attached_hooks(m, [("blocks.0.attn.hook_z", lambda z, hook: z * 0)]):
        ...     len(m.blocks[0].attn.hook_z.fwd_hooks)
        1
        >>> len(m.blocks[0].attn.hook_z.fwd_hooks)
        0
    """
    added = []
    try:
        for name, fn in hooks:
            if name not in model.hook_dict:
                raise ValueError(f"the model has no hook point {name!r}")
            hp = model.hook_dict[name]
            hp.add_hook(fn, dir="fwd")
            added.append((hp, hp.fwd_hooks[-1]))
        yield model
    finally:
        for hp, handle in added:
            handle.hook.remove()
            if handle in hp.fwd_hooks:
                hp.fwd_hooks.remove(handle)


class PromptPositions:
    """Per forward pass: which positions are real tokens, and where each row's prompt ends.

    Attached by :meth:`Editor.applied` (a forward pre-hook on the HookedTransformer). Then
    :meth:`first_last` and :meth:`from_last_prompt_token` give ``[batch, pos]`` float masks. It
    reads the ``attention_mask`` and ``past_kv_cache`` arguments of the forward call (a pass on top
    of a non-empty cache is a continuation: no prompt positions), and, in training, the labels the
    trainer shows it (:meth:`Editor.observe_batch`: the prompt ends at the first labelled token).
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
        if cache is not None and hasattr(cache, "get_seq_length"):  # the hf backend's cache
            self.continuation = cache.get_seq_length() > 0
            return
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


def resolve_config(config_cls: type, config: Any, options: dict[str, Any]) -> Any:
    """``config`` if given (then ``options`` must be empty), else ``config_cls(**options)``."""
    if config is not None:
        if options:
            raise TypeError(f"give either a {config_cls.__name__} or keyword options, not both: {sorted(options)}")
        if isinstance(config, dict):
            return config_cls.from_dict(config)
        if not isinstance(config, config_cls):
            raise TypeError(f"expected a {config_cls.__name__}, got {type(config).__name__}")
        return config
    return config_cls(**options)


class Editor(nn.Module):
    """A frozen HookedTransformer plus trainable edits applied through forward hooks.

    Subclasses set ``name`` (the registry name), ``display_name``, ``config_cls``; create their
    tensors in ``__init__`` (after ``super().__init__(model, config)``) as parameters, buffers or
    submodules of ``self``; and implement :meth:`fwd_hooks`. Everything else (freezing, train/eval
    modes, edit state, hook attachment, training with the one trainer, saving) is shared.

    The base model's parameters never require grad and it stays in eval mode; ``editor.train()``
    switches only the edits (JoLA's gates become stochastic).
    """

    name: ClassVar[str] = "editor"
    display_name: ClassVar[str] = "editor"
    config_cls: ClassVar[type] = EditorConfig
    #: evaluation runs each prompt alone into the KV cache first (edits that depend on prompt positions)
    needs_prompt_pass: ClassVar[bool] = False
    #: :meth:`merge` folds the edit into the weights exactly
    supports_merge: ClassVar[bool] = False
    #: :meth:`applied` also tracks prompt positions (a forward pre-hook); edits that act on every
    #: position alike (JoLA) switch it off
    uses_positions: ClassVar[bool] = True

    #: the backends whose hook points this editor uses (:mod:`jola_lens.backends`)
    backends: ClassVar[tuple[str, ...]] = ("hooked",)

    def __init__(self, model: Any, config: Any = None) -> None:
        super().__init__()
        from ..backends import backend_of

        backend = backend_of(model)
        if backend not in self.backends:
            raise ValueError(f"{self.display_name} uses TransformerLens-only hook points or weights, which the "
                             f"{backend} backend does not have; load the model with backend='hooked', or use an "
                             "editor that runs on every backend (jola, lofit, iti)")
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        self.config = config if config is not None else self.config_cls()
        self.positions = PromptPositions()
        self.settings: dict[str, Any] = {}
        self._applied_depth = 0

    # ---- parameters --------------------------------------------------------------------------
    def _assert_frozen(self) -> None:
        bad = [n for n, p in self.model.named_parameters() if p.requires_grad]
        if bad:
            raise RuntimeError(f"base-model parameters require grad: {bad[:5]}")

    def named_edit_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of every trainable tensor of the edit (never the base model's)."""
        for n, p in self.named_parameters():
            if not n.startswith("model.") and p.requires_grad:
                yield n, p

    def edit_parameters(self) -> list[nn.Parameter]:
        """Every trainable tensor of the edit."""
        self._assert_frozen()
        return [p for _, p in self.named_edit_parameters()]

    def n_trainable_parameters(self) -> int:
        """Parameters that can change the output."""
        return sum(p.numel() for p in self.edit_parameters())

    def edit_state(self) -> dict[str, Tensor]:
        """A detached copy of every edit tensor (parameters and buffers; the base model left out)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items() if not k.startswith("model.")}

    def load_edit_state(self, state: dict[str, Tensor]) -> None:
        """Copy ``state`` (as from :meth:`edit_state`) into the edit tensors; names must match exactly."""
        own = {k: v for k, v in self.state_dict(keep_vars=True).items() if not k.startswith("model.")}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"edit state: missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for k, t in own.items():
                src = state[k]
                if tuple(src.shape) != tuple(t.shape):
                    raise ValueError(f"edit state: {k} has shape {tuple(src.shape)}, expected {tuple(t.shape)}")
                t.copy_(src.to(t.device, t.dtype))

    def train(self, mode: bool = True) -> "Editor":
        """Training mode for the edits only; the base model stays in eval mode."""
        self.training = mode
        for name, child in self.named_children():
            if name != "model":
                child.train(mode)
        self.model.eval()
        return self

    # ---- applying ----------------------------------------------------------------------------
    def fwd_hooks(self) -> list[tuple[str, HookFn]]:
        """``(hook_name, fn)`` pairs, for ``model.run_with_hooks(..., fwd_hooks=...)`` or ``model.hooks``."""
        raise NotImplementedError

    @contextlib.contextmanager
    def applied(self) -> Iterator["Editor"]:
        """Attach the edit hooks (and the prompt-position tracker) for the ``with`` body; always
        detach exactly those. A nested ``applied()`` (or a call ``editor(x)`` inside one) does not
        attach them a second time."""
        if self._applied_depth:
            self._applied_depth += 1
            try:
                yield self
            finally:
                self._applied_depth -= 1
            return
        positions = self.positions.attach(self.model) if self.uses_positions else contextlib.nullcontext()
        with positions, attached_hooks(self.model, self.fwd_hooks()):
            self._applied_depth = 1
            try:
                yield self
            finally:
                self._applied_depth = 0

    def observe_batch(self, batch: dict[str, Tensor] | None) -> None:
        """Called by the trainer before each forward pass with the collated batch (``None`` clears)."""
        self.positions.observe_labels(None if batch is None else batch.get("labels"))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """``model(*args, **kwargs)`` with the edits applied."""
        with self.applied():
            return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``model.generate`` with the edits applied (deterministic gates unless in training mode)."""
        with self.applied():
            return self.model.generate(*args, **kwargs)

    # ---- training objective ------------------------------------------------------------------
    def penalty_schedule(self, config: "TrainConfig", total_steps: int) -> "GateSchedule | None":
        """The schedule of the penalty weight over training (``None``: the editor has no penalty)."""
        return None

    def penalty(self, step: int, weight: float) -> Tensor | float:
        """The regulariser added to the answer loss at optimiser step ``step`` (1-based) with the
        schedule's ``weight``; 0 unless the method has one."""
        return 0.0

    def before_step(self, step: int) -> None:
        """Called by the trainer at the start of optimiser step ``step`` (1-based), before the
        forward pass: per-step draws or annealing (DSP's soft top-k mask at its temperature, PASS's
        gate sample). Nothing by default."""

    def after_step(self, step: int) -> None:
        """Called by the trainer after the optimiser update of step ``step``: changes of the edit
        tensors outside the gradient step and per-step records (PASS's clip-and-reopen and target
        counts). Nothing by default."""

    def progress_stats(self) -> dict[str, int]:
        """Cheap numbers the trainer shows per step and stores per epoch (JoLA: open-gate counts)."""
        return {}

    def gate_snapshot(self) -> dict[str, Tensor] | None:
        """Per-head gate values the trainer's gate log records each step (``None``: no gates)."""
        return None

    def summary(self) -> dict[str, Any]:
        """What the edit is: method, trainable parameters, and its own numbers (open gates, heads).

        Subclasses with gates or head choices add them (``open_gates``, ``active_heads``).
        """
        return {"editor": self.name, "trainable_params": self.n_trainable_parameters(), **self.progress_stats()}

    def fit(
        self,
        train: list[dict[str, Any]],
        valid: list[dict[str, Any]] | None,
        config: "TrainConfig | None" = None,
        *,
        out_dir: str | Path | None = None,
        progress: bool = True,
        resume_from: str | Path | None = None,
        **trainer_options: Any,
    ) -> "TrainResult":
        """Train the edits with the one :class:`~jola_lens.train.Trainer` (answer-only loss, AdamW,
        schedule, early stopping on validation loss, plus :meth:`penalty`). ``resume_from``: a
        checkpoint folder to continue; ``trainer_options`` go to the Trainer (``checkpoint_every``...)."""
        from ..train import Trainer

        if not self.edit_parameters():
            raise RuntimeError(f"{self.name} has no trainable parameters")
        trainer = Trainer(self, train, valid, config, out_dir=out_dir, progress=progress, **trainer_options)
        try:
            return trainer.train(resume_from=resume_from)
        finally:
            self.observe_batch(None)

    # ---- merge -------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self, inplace: bool = False) -> Any:
        """Fold the (deterministic) edit into the weights; returns a plain HookedTransformer whose
        logits match the hooked model to float rounding. Raises for methods where no exact fold
        exists (position-dependent edits: LoReFT, ITI)."""
        if not self.supports_merge:
            raise NotImplementedError(f"{self.display_name} edits depend on token positions and do not fold "
                                      "into the weights exactly; use editor.applied() instead")
        if self._applied_depth and inplace:
            raise RuntimeError("merge(inplace=True) inside applied(): the model would carry the edit twice (in its "
                               "weights and in the hooks) until the with-block ends; merge outside it, or merge a copy")
        if inplace:
            target = self.model
        else:  # a plain copy: whatever hooks are on the model now (this editor's, inside applied()) stay behind
            target = copy.deepcopy(self.model)
            strip_hooks(target)
        self._merge_into(target)
        return target

    def _merge_into(self, target: Any) -> None:
        raise NotImplementedError

    def save_merged_hf(self, out_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
        """Write the model with this edit folded in as a standard Hugging Face checkpoint (PEFT's
        ``merge_and_unload().save_pretrained(dir)``); see :func:`jola_lens.backends.export.save_merged_hf`."""
        from ..backends.export import save_merged_hf

        return save_merged_hf(self, out_dir, **kwargs)

    # ---- persistence -------------------------------------------------------------------------
    def run_metadata(self) -> dict[str, Any]:
        """Extra top-level entries of the saved run's JSON (JoLA: its config under the first release's key)."""
        return {}

    def config_dict(self) -> dict[str, Any]:
        """The editor's settings as JSON (what :func:`~jola_lens.editors.load_editor` rebuilds it from)."""
        return self.config.to_dict()

    @classmethod
    def from_saved(cls, model: Any, config: Any, run: Any) -> "Editor":
        """An editor ready to receive ``run``'s tensors (``load_editor`` then loads them)."""
        return cls(model, config)

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the saved-run format into ``directory`` (``jola_config.json`` + ``edits.safetensors``)."""
        from .io import write_run

        return write_run(self, directory, extra=extra)

    @classmethod
    def load(cls, directory: str | Path, model: Any, *, check_model_name: bool = True,
             is_trainable: bool = False) -> "Editor":
        """Rebuild this editor from a saved run onto ``model`` (which must match); eval mode unless
        ``is_trainable``."""
        from .registry import load_editor

        ed = load_editor(directory, model, check_model_name=check_model_name, is_trainable=is_trainable)
        if not isinstance(ed, cls):
            raise EditorLoadError(f"{directory} holds a {ed.name!r} run, not {cls.name!r}")
        return ed

    def load_edits(self, directory: str | Path) -> "Editor":
        """Load the tensors of a saved run of the same method into this editor."""
        from .io import read_run

        self.load_edit_state(read_run(directory).tensors)
        return self


#: old name of the base class (the baselines' frame before editors existed)
EditBaseline = Editor


def mask_heads(mask: Bool[Tensor, "n_layers n_heads"]) -> list[dict[str, int]]:
    """``[{"layer": l, "head": h}, ...]`` for the True entries of a head mask (layer, then head order)."""
    return [{"layer": int(a), "head": int(b)} for a, b in torch.nonzero(mask).tolist()]


def head_mask_or_all(model: Any, mask: Bool[Tensor, "n_layers n_heads"] | None) -> Tensor:
    """``mask`` checked against the model's heads, or every head when ``None``."""
    c = model.cfg
    if mask is None:
        return torch.ones(c.n_layers, c.n_heads, dtype=torch.bool)
    if tuple(mask.shape) != (c.n_layers, c.n_heads):
        raise ValueError(f"mask must have shape {(c.n_layers, c.n_heads)}, got {tuple(mask.shape)}")
    return mask.bool()


def check_layers(model: Any, layers: list[int] | None) -> list[int]:
    """``layers`` sorted and checked against the model (``None``: every layer)."""
    n = model.cfg.n_layers
    if layers is None:
        return list(range(n))
    layers = sorted({int(x) for x in layers})
    if not layers or layers[0] < 0 or layers[-1] >= n:
        raise ValueError(f"layers must be a non-empty subset of 0..{n - 1}, got {layers}")
    return layers
