"""LoReFT (Wu et al., NeurIPS 2024): a low-rank edit of the residual stream at prompt positions.

``Phi(h) = h + R^T (W h + b - R h)`` on the block output (``hook_resid_post``) of each chosen
layer, at the first ``first`` and last ``last`` prompt positions only ("f7+l7" by default, one
intervention shared by both groups, as pyreft's ``--share_weights``). ``R`` (``rank x d_model``)
has orthonormal rows (``torch.nn.utils.parametrizations.orthogonal``, orthogonal init); ``W, b``
are a learned linear map initialised like ``nn.Linear``. Generated tokens are not edited: in a
pass on top of a KV cache no position is a prompt position.

Example:
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=8, n_ctx=16, d_head=4, n_heads=2, d_vocab=11,
    ...                               act_fn="gelu")
    >>> reft = LoReFT(HookedTransformer(cfg), rank=2)
    >>> reft.n_trainable_parameters()  # per layer: R (8*2) + W (2*8) + b (2)
    68
    >>> R = reft.interventions[0].rotate.weight
    >>> bool(torch.allclose(R @ R.T, torch.eye(2), atol=1e-5))
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal

from .base import Editor, EditorConfig, check_layers, resolve_config


class LoReFTIntervention(nn.Module):
    """``h + R^T (W h + b - R h)`` for ``h`` of width ``d``; ``R`` of rank ``r`` with orthonormal rows."""

    def __init__(self, d: int, r: int) -> None:
        super().__init__()
        self.rotate = orthogonal(nn.Linear(d, r, bias=False))  # weight [r, d], orthonormal rows
        self.source = nn.Linear(d, r)

    def forward(self, h: Tensor) -> Tensor:
        R = self.rotate.weight
        return (self.source(h) - h @ R.T) @ R


@dataclass
class LoReFTConfig(EditorConfig):
    """LoReFT settings: ``rank``, ``layers`` (``None``: all), the ``first`` and ``last`` prompt
    positions edited, ``seed`` of the initialisation."""

    rank: int = 8
    layers: list[int] | None = None
    first: int = 7
    last: int = 7
    seed: int = 0


class LoReFT(Editor):
    name = "loreft"
    display_name = "LoReFT"
    config_cls = LoReFTConfig
    needs_prompt_pass = True

    def __init__(self, model: Any, config: LoReFTConfig | None = None, **options: Any) -> None:
        config = resolve_config(LoReFTConfig, config, options)
        super().__init__(model, config)
        rank, layers, first, last, seed = config.rank, config.layers, config.first, config.last, config.seed
        if rank < 1 or first < 0 or last < 0 or first + last == 0:
            raise ValueError(f"need rank >= 1 and first + last >= 1, got rank={rank}, first={first}, last={last}")
        self.layers = check_layers(model, layers)
        self.first, self.last = first, last
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.interventions = nn.ModuleList(LoReFTIntervention(model.cfg.d_model, rank) for _ in self.layers)
        self.settings = {"layers": self.layers, "rank": rank, "positions": f"f{first}+l{last}",
                         "site": "hook_resid_post", "shared_weights": True}

    def fwd_hooks(self) -> list[tuple[str, Callable[..., Tensor]]]:
        def make(i: int) -> Callable[..., Tensor]:
            def hook(h: Tensor, hook: Any = None) -> Tensor:
                mask = self.positions.first_last(h.shape[0], h.shape[1], self.first, self.last, h.device)
                if not bool(mask.any()):
                    return h
                return h + mask[..., None].to(h.dtype) * self.interventions[i](h)

            return hook

        return [(f"blocks.{layer}.hook_resid_post", make(i)) for i, layer in enumerate(self.layers)]
