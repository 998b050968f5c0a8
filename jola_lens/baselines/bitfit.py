"""BitFit (Ben Zaken et al., 2022): train only the bias terms.

TransformerLens gives every block the biases ``b_Q, b_K, b_V`` (per head), ``b_O``, ``b_in`` and
``b_out`` (for Llama-style models such as SmolLM2 they exist and are zero). BitFit trains all of
them. Here the base model is never modified: each bias gets a trainable offset, added by a hook
at the point where TransformerLens adds the bias (``hook_q/k/v`` before the rotary embedding,
``hook_attn_out``, ``hook_post`` for a gated MLP (TransformerLens adds its ``b_in`` to
``act(pre) * pre_linear``) or ``hook_pre`` otherwise, ``hook_mlp_out``), which is the same function as
training the bias itself (tested against edited biases), and leaves the original weights untouched.

Example:
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=8, n_ctx=16, d_head=4, n_heads=2, d_mlp=16,
    ...                               d_vocab=11, act_fn="silu", gated_mlp=True, normalization_type="RMS")
    >>> bf = BitFit(HookedTransformer(cfg))
    >>> bf.n_trainable_parameters()  # per layer: 3*2*4 (q, k, v) + 8 (O) + 16 (in) + 8 (out)
    112
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from .base import EditBaseline, check_layers


class BitFit(EditBaseline):
    name = "bitfit"
    display_name = "BitFit"

    def __init__(self, model: Any, layers: list[int] | None = None, seed: int = 0) -> None:
        super().__init__(model)
        c = model.cfg
        self.layers = check_layers(model, layers)
        n_kv = getattr(c, "n_key_value_heads", None) or c.n_heads
        self.gated = bool(getattr(c, "gated_mlp", False))
        n = len(self.layers)
        self.b_Q = nn.Parameter(torch.zeros(n, c.n_heads, c.d_head))
        self.b_K = nn.Parameter(torch.zeros(n, n_kv, c.d_head))
        self.b_V = nn.Parameter(torch.zeros(n, n_kv, c.d_head))
        self.b_O = nn.Parameter(torch.zeros(n, c.d_model))
        self.b_in = nn.Parameter(torch.zeros(n, c.d_mlp)) if c.d_mlp else None
        self.b_out = nn.Parameter(torch.zeros(n, c.d_model))
        self.settings = {"layers": self.layers, "biases": "b_Q b_K b_V b_O b_in b_out (offsets, zero init)"}

    def fwd_hooks(self) -> list[tuple[str, Callable[..., Tensor]]]:
        def add(param: nn.Parameter, i: int) -> Callable[..., Tensor]:
            def hook(x: Tensor, hook: Any = None) -> Tensor:
                return x + param[i].to(x.dtype)

            return hook

        hooks = []
        for i, layer in enumerate(self.layers):
            b = f"blocks.{layer}"
            hooks += [(f"{b}.attn.hook_q", add(self.b_Q, i)), (f"{b}.attn.hook_k", add(self.b_K, i)),
                      (f"{b}.attn.hook_v", add(self.b_V, i)), (f"{b}.hook_attn_out", add(self.b_O, i)),
                      (f"{b}.hook_mlp_out", add(self.b_out, i))]
            if self.b_in is not None:
                # TransformerLens's GatedMLP adds b_in after the gating product, before hook_post
                hooks.append((f"{b}.mlp.hook_post" if self.gated else f"{b}.mlp.hook_pre", add(self.b_in, i)))
        return hooks
