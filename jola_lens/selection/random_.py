"""The random baseline: K heads drawn uniformly, seeded.

Example:
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.selection import select
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> model, data = HookedTransformer(cfg), [{"input_ids": [1, 2], "labels": [-100, 2]}]
    >>> a, b = select("random", model, data, k=3, seed=1), select("random", model, data, k=3, seed=1)
    >>> torch.equal(a.mask, b.mask)
    True
"""

from __future__ import annotations

from typing import Any

import torch

from .base import SelectionResult, default_k, register_selector, top_k_mask


@register_selector("random")
def select_random(model: Any, train_data: list[dict[str, Any]], *, k: int | None, seed: int = 0) -> SelectionResult:
    """Scores are i.i.d. U(0, 1) from ``torch.Generator().manual_seed(seed)``; the mask is their top K."""
    k = default_k(model) if k is None else k
    gen = torch.Generator().manual_seed(seed)
    scores = torch.rand(model.cfg.n_layers, model.cfg.n_heads, generator=gen)
    return SelectionResult(scores, top_k_mask(scores, k), "random", k,
                           {"settings": {"generator": "torch.Generator().manual_seed(seed)"}, "steps": 0})
