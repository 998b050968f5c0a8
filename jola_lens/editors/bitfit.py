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

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .base import Editor, EditorConfig, check_layers, resolve_config


@dataclass
class BitFitConfig(EditorConfig):
    """BitFit settings: ``layers`` (``None``: all); ``seed`` is unused (zero init), kept for symmetry."""

    layers: list[int] | None = None
    seed: int = 0


class BitFit(Editor):
    name = "bitfit"
    display_name = "BitFit"
    config_cls = BitFitConfig
    supports_merge = True

    def __init__(self, model: Any, config: BitFitConfig | None = None, **options: Any) -> None:
        config = resolve_config(BitFitConfig, config, options)
        super().__init__(model, config)
        c = model.cfg
        self.layers = check_layers(model, config.layers)
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

    @torch.no_grad()
    def _merge_into(self, target: Any) -> None:
        # every offset is added right where TransformerLens adds the bias it shadows
        def bias(module: Any, name: str) -> Tensor:
            return getattr(module, f"_{name}") if hasattr(module, f"_{name}") else getattr(module, name)

        for i, layer in enumerate(self.layers):
            attn, mlp = target.blocks[layer].attn, target.blocks[layer].mlp
            attn.b_Q.add_(self.b_Q[i].to(attn.b_Q.dtype))
            bias(attn, "b_K").add_(self.b_K[i].to(attn.b_Q.dtype))
            bias(attn, "b_V").add_(self.b_V[i].to(attn.b_Q.dtype))
            attn.b_O.add_(self.b_O[i].to(attn.b_O.dtype))
            mlp.b_out.add_(self.b_out[i].to(mlp.b_out.dtype))
            if self.b_in is not None:
                mlp.b_in.add_(self.b_in[i].to(mlp.b_in.dtype))
