"""The JoLA edit: per-head additive and multiplicative vectors behind Hard-Concrete gates.

For layer l and head h, with the head's attention output z (TransformerLens ``hook_z``):

    z' = (1 + g_m[l, h] * m[l, h]) * z + g_a[l, h] * a[l, h]

``a`` and ``m`` are ``[n_layers, n_heads, d_head]``; the gates are ``[n_layers, n_heads]``.
One hook per layer applies all heads of that layer in one broadcast. In training the gates
are sampled once per forward pass (at the first edited layer) and shared by every batch
item and position; in eval mode they take their deterministic values.

The MLP site (``hook_mlp_out``, ``[batch, pos, d_model]``) is handled as one "head" per
layer with ``d_model`` features, for the paper's attention-vs-MLP ablation.

Example:
    >>> import torch
    >>> from jola_lens.config import JoLAConfig
    >>> from jola_lens.edits import HeadEdit
    >>> e = HeadEdit(n_layers=2, n_units=3, d_unit=4, config=JoLAConfig(), site="attn").eval()
    >>> z = torch.randn(1, 5, 3, 4)
    >>> e.apply(z, layer=0).shape
    torch.Size([1, 5, 3, 4])
"""

from __future__ import annotations

from typing import Callable

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from .config import JoLAConfig
from .gates import HardConcrete


def hook_name(site: str, layer: int) -> str:
    """TransformerLens hook point edited at ``site`` in ``layer``."""
    if site == "attn":
        return f"blocks.{layer}.attn.hook_z"  # [batch, pos, head_index, d_head]
    if site == "mlp":
        return f"blocks.{layer}.hook_mlp_out"  # [batch, pos, d_model]
    raise ValueError(f"unknown site {site!r}")


class HeadEdit(nn.Module):
    """Gated additive + multiplicative edits for every (layer, unit) of one hook site."""

    def __init__(self, n_layers: int, n_units: int, d_unit: int, config: JoLAConfig, site: str = "attn") -> None:
        super().__init__()
        self.site = site
        self.config = config
        self.n_layers, self.n_units, self.d_unit = n_layers, n_units, d_unit
        layers = list(range(n_layers)) if config.layers is None else list(config.layers)
        bad = [x for x in layers if x >= n_layers]
        if bad:
            raise ValueError(f"layers {bad} do not exist: the model has {n_layers} layers (0..{n_layers - 1})")
        self.layers = layers
        shape = (n_layers, n_units, d_unit)
        gshape = (n_layers, n_units)
        std = config.init_std
        self.a = nn.Parameter(torch.randn(shape) * std) if config.edit in ("both", "additive") else None
        self.m = nn.Parameter(torch.randn(shape) * std) if config.edit in ("both", "multiplicative") else None

        def gate() -> HardConcrete:
            return HardConcrete(gshape, config.beta, config.limits, config.gate_init, config.gate_init_value)

        self.gate_a = self.gate_m = self.gate_shared = None
        if config.gate_mode == "two":
            self.gate_a = gate() if self.a is not None else None
            self.gate_m = gate() if self.m is not None else None
        elif config.gate_mode == "shared":
            self.gate_shared = gate()
        applied = torch.zeros(gshape, dtype=torch.bool)
        applied[layers] = True
        # Which (layer, unit) may be edited at all: applied layers, times an optional
        # user mask (used to train edits only on heads chosen by a selector).
        self.register_buffer("mask", applied)
        self._current: dict[str, Tensor] | None = None
        self.last_gates: dict[str, Tensor] = {}

    # ---- gates -------------------------------------------------------------------------
    def kinds(self) -> list[str]:
        """The edit kinds present: a subset of ``["a", "m"]``."""
        return [k for k in ("a", "m") if getattr(self, k) is not None]

    def gate_modules(self) -> dict[str, HardConcrete]:
        if self.gate_shared is not None:
            return {k: self.gate_shared for k in self.kinds()}
        out = {}
        if self.gate_a is not None:
            out["a"] = self.gate_a
        if self.gate_m is not None:
            out["m"] = self.gate_m
        return out

    def gates(self, stochastic: bool | None = None) -> dict[str, Float[Tensor, "layer unit"]]:
        """Gate values per kind, masked. Sampled if ``stochastic`` (default: training mode)."""
        stochastic = self.training if stochastic is None else stochastic
        mods = self.gate_modules()
        mask = self.mask.to(self._dtype())
        out: dict[str, Tensor] = {}
        if self.gate_shared is not None:
            g = self.gate_shared.sample() if stochastic else self.gate_shared.deterministic()
            for k in self.kinds():
                out[k] = g * mask
            return out
        for k in self.kinds():
            if k in mods:
                g = mods[k].sample() if stochastic else mods[k].deterministic()
                out[k] = g * mask
            else:
                out[k] = mask.clone()
        return out

    def deterministic_gates(self) -> dict[str, Tensor]:
        with torch.no_grad():
            return {k: v.detach() for k, v in self.gates(stochastic=False).items()}

    def prob_open(self) -> dict[str, Tensor]:
        """P(gate != 0) per kind (ones where the gate mode has no gate), masked."""
        mods = self.gate_modules()
        mask = self.mask.to(self._dtype())
        return {k: (mods[k].prob_open() * mask if k in mods else mask.clone()) for k in self.kinds()}

    def set_head_mask(self, head_mask: Bool[Tensor, "layer unit"] | None) -> None:
        """Restrict edits to the True entries (and the applied layers); ``None`` clears it."""
        applied = torch.zeros(self.mask.shape, dtype=torch.bool, device=self.mask.device)
        applied[self.layers] = True
        if head_mask is not None:
            head_mask = torch.as_tensor(head_mask, dtype=torch.bool, device=self.mask.device)
            if head_mask.shape != self.mask.shape:
                raise ValueError(f"head_mask has shape {tuple(head_mask.shape)}, expected {tuple(self.mask.shape)}")
            applied &= head_mask
        self.mask.copy_(applied)

    def _dtype(self) -> torch.dtype:
        p = self.a if self.a is not None else self.m
        return p.dtype

    # ---- applying ----------------------------------------------------------------------
    def apply(self, z: Tensor, layer: int) -> Tensor:
        """Edit activation ``z`` of ``layer``: ``[batch, pos, unit, d]`` (attn) or ``[batch, pos, d]`` (mlp)."""
        if layer == self.layers[0] or self._current is None or not self.training:
            # one sample per forward pass: drawn at the first edited layer, reused by the rest
            self._current = self.gates()
            self.last_gates = {k: v.detach() for k, v in self._current.items()}
        g = self._current
        squeeze = self.site == "mlp"
        if squeeze:
            z = z.unsqueeze(-2)
        out = z
        if self.m is not None:
            out = out * (1 + g["m"][layer, :, None] * self.m[layer]).to(z.dtype)
        if self.a is not None:
            out = out + (g["a"][layer, :, None] * self.a[layer]).to(z.dtype)
        return out.squeeze(-2) if squeeze else out

    def hook_fn(self, layer: int) -> Callable[..., Tensor]:
        def jola_hook(activation: Tensor, hook=None) -> Tensor:
            return self.apply(activation, layer)

        jola_hook.__name__ = f"jola_{self.site}_L{layer}"
        return jola_hook

    def fwd_hooks(self) -> list[tuple[str, Callable[..., Tensor]]]:
        """``(hook_name, fn)`` pairs for ``HookedTransformer.run_with_hooks``."""
        return [(hook_name(self.site, layer), self.hook_fn(layer)) for layer in self.layers]

    def train(self, mode: bool = True) -> "HeadEdit":
        self._current = None
        return super().train(mode)

    @torch.no_grad()
    def scale_and_shift(self) -> tuple[Float[Tensor, "layer unit d"], Float[Tensor, "layer unit d"]]:
        """The deterministic edit as z' = scale * z + shift (used by ``merge``)."""
        g = self.gates(stochastic=False)
        shape = (self.n_layers, self.n_units, self.d_unit)
        scale = torch.ones(shape, dtype=self._dtype(), device=self.mask.device)
        shift = torch.zeros(shape, dtype=self._dtype(), device=self.mask.device)
        if self.m is not None:
            scale = scale + g["m"][..., None] * self.m
        if self.a is not None:
            shift = shift + g["a"][..., None] * self.a
        return scale, shift

    def n_trainable(self) -> int:
        """Parameters that can affect the output: edit vectors and gates of applied layers."""
        n_units = int(self.mask.sum())
        per_unit = self.d_unit * len(self.kinds())
        per_unit += len({id(m) for m in self.gate_modules().values()})
        return n_units * per_unit
