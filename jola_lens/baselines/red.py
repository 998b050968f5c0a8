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

from typing import Any, Callable

import torch
from torch import Tensor, nn

from .base import EditBaseline, check_layers


class RED(EditBaseline):
    name = "red"
    display_name = "RED"

    def __init__(self, model: Any, layers: list[int] | None = None, seed: int = 0) -> None:
        super().__init__(model)
        c = model.cfg
        self.layers = check_layers(model, layers)
        self.scale = nn.Parameter(torch.ones(len(self.layers), c.d_model))
        self.bias = nn.Parameter(torch.zeros(len(self.layers), c.d_model))
        self.settings = {"layers": self.layers, "site": "hook_mlp_out", "init": "scale 1, bias 0"}

    def fwd_hooks(self) -> list[tuple[str, Callable[..., Tensor]]]:
        def make(i: int) -> Callable[..., Tensor]:
            def hook(h: Tensor, hook: Any = None) -> Tensor:
                return h * self.scale[i].to(h.dtype) + self.bias[i].to(h.dtype)

            return hook

        return [(f"blocks.{layer}.hook_mlp_out", make(i)) for i, layer in enumerate(self.layers)]
