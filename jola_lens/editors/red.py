"""RED (Wu et al., ACL 2024): a scaling and a bias vector on each layer's FFN output.

``h' = l_s * h + l_b`` on ``hook_mlp_out`` (the MLP output before the residual add), ``l_s``
initialised to ones and ``l_b`` to zeros; 2 * d_model * n_layers parameters (SmolLM2: 34,560).

Example:
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=8, n_ctx=16, d_head=4, n_heads=2, d_mlp=16,
    ...                               d_vocab=11, act_fn="gelu")
    >>> red = RED(HookedTransformer(cfg))
    >>> red.n_trainable_parameters()
    32
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .base import Editor, EditorConfig, check_layers, resolve_config


@dataclass
class REDConfig(EditorConfig):
    """RED settings: ``layers`` (``None``: all); ``seed`` is unused (identity init), kept for symmetry."""

    layers: list[int] | None = None
    seed: int = 0


class RED(Editor):
    name = "red"
    display_name = "RED"
    config_cls = REDConfig
    supports_merge = True

    def __init__(self, model: Any, config: REDConfig | None = None, **options: Any) -> None:
        config = resolve_config(REDConfig, config, options)
        super().__init__(model, config)
        c = model.cfg
        self.layers = check_layers(model, config.layers)
        self.scale = nn.Parameter(torch.ones(len(self.layers), c.d_model))
        self.bias = nn.Parameter(torch.zeros(len(self.layers), c.d_model))
        self.settings = {"layers": self.layers, "site": "hook_mlp_out", "init": "scale 1, bias 0"}

    def fwd_hooks(self) -> list[tuple[str, Callable[..., Tensor]]]:
        def make(i: int) -> Callable[..., Tensor]:
            def hook(h: Tensor, hook: Any = None) -> Tensor:
                return h * self.scale[i].to(h.dtype) + self.bias[i].to(h.dtype)

            return hook

        return [(f"blocks.{layer}.hook_mlp_out", make(i)) for i, layer in enumerate(self.layers)]

    @torch.no_grad()
    def _merge_into(self, target: Any) -> None:
        # (h W_out + b_out) * s + c  ==  h (W_out diag(s)) + (b_out * s + c)
        for i, layer in enumerate(self.layers):
            mlp = target.blocks[layer].mlp
            s, c = self.scale[i].to(mlp.W_out.dtype), self.bias[i].to(mlp.W_out.dtype)
            mlp.W_out.mul_(s[None, :])
            mlp.b_out.copy_(mlp.b_out * s + c)
