"""The head-selection interface: one result type, a registry, and :func:`select`.

Every method answers the same question, "which K attention heads should be edited?", on
a frozen :class:`~transformer_lens.HookedTransformer` and a list of tokenised examples
(dicts with ``input_ids`` and ``labels``; labels are -100 except on answer tokens). A
method is a function registered under a name::

    @register_selector("my_method")
    def my_method(model, train_data, *, k, seed, **options) -> SelectionResult: ...

and is run through :func:`select`, which seeds the RNG (without disturbing the caller's),
times the run, restores the model's ``requires_grad`` flags and training mode, and checks
that the mask has exactly ``k`` heads.

Example (a tiny random model):
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.selection import select, list_selectors
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> model = HookedTransformer(cfg)
    >>> data = [{"input_ids": [1, 2, 3, 4], "labels": [-100, -100, 3, 4]}] * 4
    >>> r = select("random", model, data, k=3, seed=0)
    >>> r.method, r.k, tuple(r.mask.shape), int(r.mask.sum())
    ('random', 3, (2, 4), 3)
    >>> {"all", "dsp", "iti", "jola", "lofit", "pass", "random", "smp"} <= set(list_selectors())
    True
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..tasks import length_grouped_batches
from ..train import TrainConfig, Trainer, TrainResult, collate

RESULT_TENSORS = "selection.safetensors"
RESULT_JSON = "selection.json"


# ---- the result -------------------------------------------------------------------------------
@dataclass
class SelectionResult:
    """What a selector returns.

    Attributes:
        scores: one number per head; higher means "more worth editing". Methods that pick
            heads by a rule other than the score (e.g. JoLA's open gates with ``k=None``)
            still fill it with the ranking quantity they use.
        mask: the chosen heads (exactly ``k`` of them).
        method: the registered name.
        k: number of heads in ``mask``.
        record: how the result was obtained: ``settings`` (every option, defaults included),
            ``steps`` (optimiser steps, 0 for training-free methods), ``seconds``, ``seed``,
            plus method-specific entries (loss curves, ITI directions, ...). Values are JSON
            types or tensors.
    """

    scores: Float[Tensor, "n_layers n_heads"]
    mask: Bool[Tensor, "n_layers n_heads"]
    method: str
    k: int
    record: dict[str, Any] = field(default_factory=dict)

    def heads(self) -> list[tuple[int, int]]:
        """The selected ``(layer, head)`` pairs, best score first.

        Example:
            >>> r = SelectionResult(torch.tensor([[0.1, 0.9], [0.5, 0.2]]),
            ...                     torch.tensor([[False, True], [True, False]]), "demo", 2)
            >>> r.heads()
            [(0, 1), (1, 0)]
        """
        idx = torch.nonzero(self.mask, as_tuple=False).tolist()
        return sorted(((int(a), int(b)) for a, b in idx), key=lambda lh: -float(self.scores[lh[0], lh[1]]))

    def save(self, directory: str | Path) -> Path:
        """Write ``selection.safetensors`` (scores, mask, tensors of ``record``) and ``selection.json``.

        Example:
            >>> import tempfile
            >>> r = SelectionResult(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool), "all", 6,
            ...                     {"seed": 0, "directions": torch.zeros(2, 3, 4)})
            >>> with tempfile.TemporaryDirectory() as d:
            ...     back = SelectionResult.load(r.save(d))
            >>> back.k, back.record["seed"], tuple(back.record["directions"].shape)
            (6, 0, (2, 3, 4))
        """
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {"scores": self.scores.detach().cpu().contiguous(), "mask": self.mask.cpu().contiguous()}
        plain: dict[str, Any] = {}
        for key, value in self.record.items():
            if torch.is_tensor(value):
                tensors[f"record.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[key] = value
        save_file(tensors, str(d / RESULT_TENSORS))
        meta = {"method": self.method, "k": self.k, "record": plain}
        (d / RESULT_JSON).write_text(json.dumps(meta, indent=2, default=_json_default))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "SelectionResult":
        """Read what :meth:`save` wrote."""
        from safetensors.torch import load_file

        d = Path(directory)
        tensors = load_file(str(d / RESULT_TENSORS))
        meta = json.loads((d / RESULT_JSON).read_text())
        record = dict(meta.get("record", {}))
        record.update({k[len("record."):]: v for k, v in tensors.items() if k.startswith("record.")})
        return cls(tensors["scores"], tensors["mask"].bool(), meta["method"], int(meta["k"]), record)


def _json_default(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return repr(value)


# ---- helpers on score matrices ----------------------------------------------------------------
def top_k_mask(
    scores: Float[Tensor, "n_layers n_heads"],
    k: int,
    tiebreak: Float[Tensor, "n_layers n_heads"] | None = None,
) -> Bool[Tensor, "n_layers n_heads"]:
    """The ``k`` highest-scoring heads, across all layers.

    Ties are broken by ``tiebreak`` (higher first) when given, then by position (lower layer,
    then lower head, first), so the result is deterministic. NaN scores rank last.

    Example:
        >>> s = torch.tensor([[0.1, 0.9, 0.3], [0.9, 0.0, 0.5]])
        >>> top_k_mask(s, 3).int().tolist()
        [[0, 1, 0], [1, 0, 1]]
        >>> top_k_mask(torch.zeros(2, 2), 1, tiebreak=torch.tensor([[0., 0.], [0., 1.]])).int().tolist()
        [[0, 0], [0, 1]]
    """
    flat = scores.detach().reshape(-1).double().cpu()
    n = flat.numel()
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and the number of heads ({n}), got {k}")
    flat = torch.nan_to_num(flat, nan=-math.inf)
    order = torch.arange(n)
    if tiebreak is not None:
        tb = torch.nan_to_num(tiebreak.detach().reshape(-1).double().cpu(), nan=-math.inf)
        order = torch.sort(tb, descending=True, stable=True).indices
    order = order[torch.sort(flat[order], descending=True, stable=True).indices]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[:k]] = True
    return mask.reshape(scores.shape).to(scores.device)


def per_layer_top_fraction(
    scores: Float[Tensor, "n_layers n_heads"], fraction: float
) -> Bool[Tensor, "n_layers n_heads"]:
    """Keep the ``round(fraction * n_heads)`` best heads of every layer (SMP's per-layer rule).

    Example:
        >>> s = torch.tensor([[0.1, 0.9, 0.3, 0.2], [0.0, 0.5, 0.7, 0.6]])
        >>> per_layer_top_fraction(s, 0.5).int().tolist()
        [[0, 1, 1, 0], [0, 0, 1, 1]]
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    n_keep = int(round(fraction * scores.shape[1]))
    return torch.stack([top_k_mask(row[None], n_keep)[0] for row in scores])


def default_k(model: Any) -> int:
    """LoFiT's default when K is not given: 10 % of all heads (at least one)."""
    return max(1, round(0.1 * model.cfg.n_layers * model.cfg.n_heads))


# ---- registry -----------------------------------------------------------------------------------
@runtime_checkable
class Selector(Protocol):
    """A selection method (see the module docstring); ``runtime_checkable`` so that annotations
    naming it can be checked at run time (an ``isinstance`` check only asks for a ``__call__``)."""

    def __call__(self, model: Any, train_data: list[dict[str, Any]], *, k: int | None, seed: int,
                 **options: Any) -> SelectionResult: ...


_REGISTRY: dict[str, Selector] = {}


def register_selector(name: str) -> Callable[[Selector], Selector]:
    """Decorator: make a selector available to :func:`select` under ``name``.

    Example:
        >>> @register_selector("first_heads_demo")
        ... def first_heads(model, train_data, *, k, seed, **options):
        ...     scores = -torch.arange(model.cfg.n_layers * model.cfg.n_heads, dtype=torch.float)
        ...     scores = scores.reshape(model.cfg.n_layers, model.cfg.n_heads)
        ...     return SelectionResult(scores, top_k_mask(scores, k), "first_heads_demo", k)
        >>> "first_heads_demo" in list_selectors()
        True
        >>> _ = _REGISTRY.pop("first_heads_demo")
    """

    def wrap(fn: Selector) -> Selector:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"a selector named {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def get_selector(name: str) -> Selector:
    """The function registered under ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown selector {name!r}; registered: {', '.join(list_selectors())}") from None


def list_selectors() -> list[str]:
    """Registered selector names, sorted."""
    return sorted(_REGISTRY)


@contextlib.contextmanager
def _model_state_kept(model: Any) -> Iterator[None]:
    """Restore ``requires_grad`` of every parameter and the training mode afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        model.train(was_training)


def select(
    name: str,
    model: Any,
    train_data: list[dict[str, Any]],
    *,
    k: int | None,
    seed: int = 0,
    **options: Any,
) -> SelectionResult:
    """Run selector ``name`` and check its result.

    Args:
        name: a registered selector (see :func:`list_selectors`).
        model: a HookedTransformer; its weights are never changed.
        train_data: tokenised examples (``input_ids``, ``labels``).
        k: heads to select. ``None`` lets the method decide where it has a rule of its own
            (``jola``: the open gates; ``smp``: the per-layer fraction; ``pass``: gates > 0.5;
            ``all``: every head); the others then use :func:`default_k`.
        seed: seeds every random choice of the method (the caller's RNG state is restored).
        options: method-specific settings (see each selector's docstring).

    Returns:
        a :class:`SelectionResult` whose ``record`` has ``seconds``, ``seed``, ``n_examples``
        and ``steps`` filled in.
    """
    fn = get_selector(name)
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    if k is not None and not 1 <= int(k) <= n_heads:
        raise ValueError(f"k must be between 1 and {n_heads} (the model's heads), got {k}")
    if not train_data:
        raise ValueError("train_data is empty")
    start = time.time()
    devices = [model.cfg.device] if str(model.cfg.device).startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), _model_state_kept(model):
        torch.manual_seed(seed)
        result = fn(model, train_data, k=None if k is None else int(k), seed=seed, **options)
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    if tuple(result.scores.shape) != shape or tuple(result.mask.shape) != shape:
        raise RuntimeError(f"selector {name!r} returned scores {tuple(result.scores.shape)} and mask "
                           f"{tuple(result.mask.shape)}, expected {shape}")
    result.mask = result.mask.bool()
    if int(result.mask.sum()) != result.k:
        raise RuntimeError(f"selector {name!r} reported k={result.k} but its mask has {int(result.mask.sum())} heads")
    if k is not None and name != "all" and result.k != k:
        raise RuntimeError(f"selector {name!r} selected {result.k} heads, {k} were asked for")
    result.record.setdefault("steps", 0)
    result.record.update(seconds=time.time() - start, seed=seed, n_examples=len(train_data))
    return result


# ---- shared plumbing for the trained selectors -----------------------------------------------------
def pad_id_of(model: Any) -> int:
    """The tokenizer's pad id, or 0 for a model without a tokenizer."""
    tok = getattr(model, "tokenizer", None)
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    return int(pad) if pad is not None else 0


def training_batches(
    data: list[dict[str, Any]],
    batch_size: int,
    seed: int,
    epochs: int,
    max_steps: int | None,
    pad_id: int,
    device: Any = None,
) -> Iterator[dict[str, Tensor]]:
    """Collated, length-bucketed batches in a seeded order, epoch after epoch, at most ``max_steps``."""
    lengths = [len(e["input_ids"]) for e in data]
    steps = 0
    for epoch in range(epochs):
        for idx in length_grouped_batches(lengths, batch_size, seed + epoch):
            if max_steps is not None and steps >= max_steps:
                return
            b = collate([data[i] for i in idx], pad_id)
            yield {key: v.to(device) for key, v in b.items()} if device is not None else b
            steps += 1


def n_training_steps(n_examples: int, batch_size: int, epochs: int, max_steps: int | None) -> int:
    """How many batches :func:`training_batches` yields (and a selector stage's :class:`Trainer` runs)."""
    total = math.ceil(n_examples / batch_size) * epochs
    return total if max_steps is None else min(total, max_steps)


def stage_config(
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    max_steps: int | None,
    seed: int,
    lr_schedule: str = "constant",
    max_grad_norm: float = 0.0,
) -> TrainConfig:
    """The :class:`TrainConfig` of a trained selector stage.

    AdamW (betas 0.9/0.999, eps 1e-8, no weight decay) at ``lr`` for every parameter (gate
    log-alphas included), no warm-up, ``lr_schedule`` over the run, no validation or early
    stopping, the parameters of the last step kept, the global RNG stream of the caller continued
    (the stage seeded it before initialising its tensors), and the batches of
    :func:`training_batches` (the Trainer's order for the same ``seed``). ``epochs=0`` trains
    nothing.
    """
    return TrainConfig(lr=lr, gate_lr=None, batch_size=batch_size, epochs=max(1, epochs),
                       max_steps=0 if epochs < 1 else max_steps, warmup_steps=0, lr_schedule=lr_schedule,
                       weight_decay=0.0, max_grad_norm=max_grad_norm, patience=0, penalty="none", seed=seed,
                       seed_rng=False, restore_best=False)


def train_stage(
    editor: Any, train_data: list[dict[str, Any]], config: TrainConfig
) -> tuple[TrainResult, list[dict[str, Any]]]:
    """Train a selector stage (an :class:`~jola_lens.editors.Editor`) with the one :class:`Trainer`.

    Returns the :class:`TrainResult` and the trainer's statistics of every step (``ce``,
    ``penalty``, ``lambda``...), in order.
    """
    steps: list[dict[str, Any]] = []
    trainer = Trainer(editor, train_data, None, config, progress=False, pad_id=pad_id_of(editor.model),
                      callbacks=[steps.append])
    try:
        result = trainer.train()
    finally:
        editor.observe_batch(None)
    return result, steps


def head_scale_hooks(
    model: Any, scale: Callable[[int], Tensor]
) -> list[tuple[str, Callable[..., Tensor]]]:
    """Hooks multiplying each head's ``hook_z`` of layer ``l`` by ``scale(l)`` (shape ``[n_heads]``)."""

    def make(layer: int) -> Callable[..., Tensor]:
        def head_scale(z: Tensor, hook: Any = None) -> Tensor:
            return z * scale(layer).to(z.dtype)[None, None, :, None]

        return head_scale

    return [(f"blocks.{layer}.attn.hook_z", make(layer)) for layer in range(model.cfg.n_layers)]
