"""The "no selection" baseline: every head (plain per-head editing everywhere).

``k`` is ignored (kept in ``record["requested_k"]``); the result's ``k`` is the number of heads.

Example:
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.selection import select
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> r = select("all", HookedTransformer(cfg), [{"input_ids": [1, 2], "labels": [-100, 2]}], k=3)
    >>> r.k, bool(r.mask.all()), r.record["requested_k"]
    (8, True, 3)
"""

from __future__ import annotations

from typing import Any

import torch

from .base import SelectionResult, register_selector


@register_selector("all")
def select_all(model: Any, train_data: list[dict[str, Any]], *, k: int | None, seed: int = 0) -> SelectionResult:
    """All ``n_layers * n_heads`` heads, score 1 each."""
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    mask = torch.ones(shape, dtype=torch.bool)
    return SelectionResult(torch.ones(shape), mask, "all", int(mask.sum()),
                           {"settings": {}, "steps": 0, "requested_k": k})
