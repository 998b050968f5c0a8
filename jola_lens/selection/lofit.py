"""LoFiT stage 1 (Yin et al. 2024): learn per-head scalings with an L1 penalty, rank by norm.

Every head of every layer gets a multiplicative vector A (``z' = (1 + A) * z``, i.e.
``JoLAConfig(edit="multiplicative", gate_mode="none")``, A ~ N(0, 1e-3^2)). Only A trains,
on ``answer CE + lambda_L1 * sum |A|`` with AdamW (lr 5e-3, weight decay 0, linear decay, no
warm-up: the HF defaults of the LoFiT scripts), 5 epochs of batch 8. Heads are ranked by
``||A_{l,h}||_2`` across all layers and the top K are kept (METHODS.md section 2.2).

The stage is an editor, :class:`LoFiTScalings` (JoLA's multiplicative edit without gates, plus
the L1 penalty at a constant weight), trained by the one :class:`~jola_lens.train.Trainer`.

Example (a tiny random model):
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.selection import select
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> data = [{"input_ids": [i, 2, 3, 4], "labels": [-100, -100, 3, 4]} for i in range(8)]
    >>> r = select("lofit", HookedTransformer(cfg), data, k=3, epochs=1)
    >>> r.k, r.record["steps"], len(r.record["loss"])
    (3, 1, 1)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..config import JoLAConfig
from ..model import JoLAModel
from ..schedule import GateSchedule
from .base import SelectionResult, default_k, register_selector, stage_config, top_k_mask, train_stage


class LoFiTScalings(JoLAModel):
    """LoFiT stage 1 as an editor: a multiplicative vector A on every head (``z' = (1 + A) * z``,
    no gates), and the penalty ``lambda_L1 * sum |A|`` at the constant weight ``l1``."""

    name = "lofit_stage1"
    display_name = "LoFiT stage 1"

    def __init__(self, model: Any, l1: float = 5e-4, init_std: float = 1e-3) -> None:
        super().__init__(model, JoLAConfig(edit="multiplicative", gate_mode="none", init_std=init_std))
        self.l1 = float(l1)

    def penalty_schedule(self, config: Any, total_steps: int) -> GateSchedule:
        """The L1 weight: ``l1`` at every step."""
        return GateSchedule("constant", self.l1, total_steps)

    def penalty(self, step: int, weight: float) -> Tensor:
        """``weight * sum |A|``."""
        return weight * self.edits["attn"].m.abs().sum()

    def progress_stats(self) -> dict[str, int]:
        return {}  # no gates to count

    def gate_snapshot(self) -> None:
        return None  # no gates to log


@register_selector("lofit")
def select_lofit(
    model: Any,
    train_data: list[dict[str, Any]],
    *,
    k: int | None,
    seed: int = 0,
    l1: float = 5e-4,
    lr: float = 5e-3,
    epochs: int = 5,
    batch_size: int = 8,
    max_steps: int | None = None,
    init_std: float = 1e-3,
    max_grad_norm: float = 1.0,
) -> SelectionResult:
    """LoFiT's head selection.

    Args:
        l1: lambda_L1, the weight of ``sum |A|`` (LoFiT scripts: 5e-4 to 5e-3).
        lr: AdamW learning rate (LoFiT: 5e-3 for most runs).
        epochs, batch_size, max_steps: the budget (LoFiT: 5 epochs of 8).
        init_std: standard deviation of A's initialisation.
        max_grad_norm: gradient clipping (HF default 1.0; 0 disables).

    ``record["loss"]`` has the task loss of every step, ``record["l1_norm"]`` the final sum |A|.
    """
    k = default_k(model) if k is None else k
    torch.manual_seed(seed)
    stage = LoFiTScalings(model, l1, init_std)
    edit = stage.edits["attn"]
    result, steps = train_stage(stage, train_data, stage_config(
        lr=lr, epochs=epochs, batch_size=batch_size, max_steps=max_steps, seed=seed, lr_schedule="linear",
        max_grad_norm=max_grad_norm))
    losses = [s["ce"] for s in steps]
    with torch.no_grad():
        scores = edit.m.norm(dim=-1).float().cpu()
        l1_norm = float(edit.m.abs().sum())
    mask = top_k_mask(scores, k)
    record = {
        "settings": {"l1": l1, "lr": lr, "epochs": epochs, "batch_size": batch_size, "max_steps": max_steps,
                     "init_std": init_std, "max_grad_norm": max_grad_norm, "optimizer": "AdamW",
                     "lr_schedule": "linear, no warm-up"},
        "steps": result.steps,
        "stopped": result.stopped,
        "loss": losses,
        "l1_norm": l1_norm,
        "rule": "top-k by ||A||_2",
    }
    return SelectionResult(scores, mask, "lofit", k, record)
