"""JoLA's own localisation: train gated edits, then read the gates.

With ``k=None`` the selection is the heads with an open gate (deterministic value > 0, either
the additive or the multiplicative gate), as JoLA uses them. With a ``k``, heads are ranked by
``max(P(g_a != 0), P(g_m != 0))`` and the top ``k`` are kept; since P(open) and the
deterministic gate are both increasing in log-alpha, the open heads come first.

Example (a tiny random model, a few steps):
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.selection import select
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> data = [{"input_ids": [i, 2, 3, 4], "labels": [-100, -100, 3, 4]} for i in range(8)]
    >>> r = select("jola", HookedTransformer(cfg), data, k=2, max_steps=3)
    >>> r.k, r.record["steps"]
    (2, 3)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..config import JoLAConfig
from ..model import JoLAModel
from ..train import JoLATrainer, TrainConfig
from .base import SelectionResult, pad_id_of, register_selector, top_k_mask


@register_selector("jola")
def select_jola(
    model: Any,
    train_data: list[dict[str, Any]],
    *,
    k: int | None,
    seed: int = 0,
    valid_data: list[dict[str, Any]] | None = None,
    jola_config: JoLAConfig | None = None,
    train_config: TrainConfig | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    progress: bool = False,
) -> SelectionResult:
    """Train JoLA (two Hard-Concrete gates per head) and select by its gates.

    Args:
        valid_data: tokenised validation examples for early stopping (optional).
        jola_config: the edit configuration (default: the paper's, ``JoLAConfig()``).
        train_config: the training settings (default ``TrainConfig(seed=seed)``: JoLA's).
        epochs, max_steps: override the budget of ``train_config`` (``max_steps`` is the
            short-budget knob, e.g. 50 steps for a quick localisation).
        progress: show the trainer's progress bar.
    """
    cfg = jola_config or JoLAConfig()
    if cfg.gate_mode == "none":
        raise ValueError("the jola selector needs gates: use gate_mode 'two' or 'shared'")
    if "attn" not in cfg.sites:
        raise ValueError("the jola selector selects attention heads: JoLAConfig.sites must include 'attn'")
    tc = train_config or TrainConfig(seed=seed)
    overrides = {key: v for key, v in (("epochs", epochs), ("max_steps", max_steps)) if v is not None}
    if overrides:
        tc = dataclasses.replace(tc, **overrides)
    jm = JoLAModel(model, cfg)
    trainer = JoLATrainer(jm, train_data, valid_data, tc, progress=progress, pad_id=pad_id_of(model))
    result = trainer.train()
    prob = jm.prob_open("attn")
    scores = torch.stack([v for v in prob.values()]).amax(0).float().cpu()
    open_mask = jm.open_mask("attn").cpu()
    mask = open_mask if k is None else top_k_mask(scores, k)
    record = {
        "settings": {"jola_config": cfg.to_dict(), "train_config": tc.to_dict()},
        "steps": result.steps,
        "stopped": result.stopped,
        "best_valid_loss": result.best_valid_loss,
        "n_open": int(open_mask.sum()),
        "open_gate_counts": jm.open_gate_counts("attn"),
        "rule": "open gates" if k is None else "top-k by max P(open)",
        "train_seconds": result.seconds,
    }
    return SelectionResult(scores, mask, "jola", int(mask.sum()), record)
