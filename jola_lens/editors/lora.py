"""LoRA (Hu et al., 2022) on W_Q and W_V, applied through hooks.

``q += (alpha / r) * x A_q B_q`` and ``v += (alpha / r) * x A_v B_v`` where ``x`` is the
attention input (the block's ``ln1`` output). ``A`` is initialised like PEFT's (Kaiming-uniform
with a = sqrt(5)), ``B`` with zeros, so training starts from the base model. The offsets are
added at ``hook_q`` / ``hook_v`` (before the rotary embedding, exactly where ``x W_Q`` lands);
with grouped-query attention ``B_v`` has one block per key/value head. The base weights are
untouched; :meth:`LoRA.merged_weights` gives ``W + (alpha/r) A B`` for inspection.

Defaults: rank 8, alpha 16, no dropout, every layer.

Example:
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2, d_vocab=11,
    ...                               act_fn="gelu", normalization_type="RMS")
    >>> lora = LoRA(HookedTransformer(cfg), rank=2)
    >>> lora.n_trainable_parameters()  # (8*2 + 2*8) for Q and for V
    64
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .base import Editor, EditorConfig, check_layers, resolve_config


@dataclass
class LoRAConfig(EditorConfig):
    """LoRA settings: ``rank``, ``alpha`` (scaling ``alpha / rank``), ``layers`` (``None``: all),
    ``seed`` of the ``A`` initialisation."""

    rank: int = 8
    alpha: float = 16.0
    layers: list[int] | None = None
    seed: int = 0


class LoRA(Editor):
    name = "lora"
    display_name = "LoRA"
    config_cls = LoRAConfig
    supports_merge = True

    def __init__(self, model: Any, config: LoRAConfig | None = None, **options: Any) -> None:
        config = resolve_config(LoRAConfig, config, options)
        super().__init__(model, config)
        rank, alpha, layers, seed = config.rank, config.alpha, config.layers, config.seed
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        c = model.cfg
        self.layers = check_layers(model, layers)
        self.rank, self.scaling = rank, alpha / rank
        n_kv = getattr(c, "n_key_value_heads", None) or c.n_heads
        n = len(self.layers)
        g = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(c.d_model)  # kaiming_uniform(a=sqrt(5)) on a [r, d_model] weight
        self.A_q = nn.Parameter((torch.rand(n, c.d_model, rank, generator=g) * 2 - 1) * bound)
        self.A_v = nn.Parameter((torch.rand(n, c.d_model, rank, generator=g) * 2 - 1) * bound)
        self.B_q = nn.Parameter(torch.zeros(n, rank, c.n_heads * c.d_head))
        self.B_v = nn.Parameter(torch.zeros(n, rank, n_kv * c.d_head))
        self._x: dict[int, Tensor] = {}
        self.settings = {"layers": self.layers, "rank": rank, "alpha": alpha, "targets": ["W_Q", "W_V"]}

    def fwd_hooks(self) -> list[tuple[str, Callable[..., Tensor]]]:
        hooks = []
        for i, layer in enumerate(self.layers):
            block = self.model.blocks[layer]

            def grab(resid: Tensor, hook: Any = None, i: int = i, block: Any = block) -> Tensor:
                self._x[i] = block.ln1(resid)
                return resid

            def delta(t: Tensor, A: nn.Parameter, B: nn.Parameter, i: int) -> Tensor:
                x = self._x[i]
                d = (x @ A[i].to(x.dtype)) @ B[i].to(x.dtype) * self.scaling
                return t + d.reshape(t.shape)

            def on_q(q: Tensor, hook: Any = None, i: int = i) -> Tensor:
                return delta(q, self.A_q, self.B_q, i)

            def on_v(v: Tensor, hook: Any = None, i: int = i) -> Tensor:
                return delta(v, self.A_v, self.B_v, i)

            hooks += [(f"blocks.{layer}.hook_resid_pre", grab), (f"blocks.{layer}.attn.hook_q", on_q),
                      (f"blocks.{layer}.attn.hook_v", on_v)]
        return hooks

    @torch.no_grad()
    def merged_weights(self, layer: int) -> dict[str, Tensor]:
        """``W_Q`` ``[n_heads, d_model, d_head]`` and ``W_V`` with the low-rank update added (copies)."""
        i = self.layers.index(layer)
        attn = self.model.blocks[layer].attn
        wq = attn.W_Q.detach().clone()
        wv = (attn._W_V if hasattr(attn, "_W_V") else attn.W_V).detach().clone()
        dq = (self.A_q[i] @ self.B_q[i] * self.scaling).reshape(wq.shape[1], wq.shape[0], wq.shape[2])
        dv = (self.A_v[i] @ self.B_v[i] * self.scaling).reshape(wv.shape[1], wv.shape[0], wv.shape[2])
        return {"W_Q": wq + dq.transpose(0, 1), "W_V": wv + dv.transpose(0, 1)}

    @torch.no_grad()
    def _merge_into(self, target: Any) -> None:
        # x W_Q gains (alpha/r) x A B: W_Q[h] (d_model x d_head) gains the head's block of A B
        for layer in self.layers:
            w = self.merged_weights(layer)
            attn = target.blocks[layer].attn
            attn.W_Q.copy_(w["W_Q"])
            (attn._W_V if hasattr(attn, "_W_V") else attn.W_V).copy_(w["W_V"])
