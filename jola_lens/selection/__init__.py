"""Where to edit: head-selection methods behind one interface, and "edit after selection".

Selectors (``list_selectors()``): ``jola`` (JoLA's gates), ``lofit`` (LoFiT stage 1), ``dsp``
(Differentiable Subset Pruning), ``pass`` (PASS), ``smp`` (Single-Shot Meta-Pruning), ``iti``
(ITI probes), ``random`` and ``all``. Each is run as
``select(name, model, train_data, k=K, seed=0, **options)`` and returns a
:class:`SelectionResult`; :func:`edit_on_mask` then trains plain (ungated) additive +
multiplicative edits on the chosen heads only, so every selector is scored by the same
downstream procedure.

The trained selectors are editors trained by the one :class:`~jola_lens.train.Trainer`: ``jola``
(:class:`~jola_lens.JoLAModel`), ``lofit`` (:class:`~jola_lens.selection.lofit.LoFiTScalings`),
``dsp`` (:class:`~jola_lens.selection.dsp.DSPHeadLogits`) and ``pass``
(:class:`~jola_lens.selection.pass_.PASSGates`), their hooks attached by
:meth:`~jola_lens.editors.Editor.applied`. SMP's scorer (a CNN on attention images) and ITI's probes
(logistic regressions on head outputs) train no edit of the model and keep their own optimisers;
their hooks go through the same :func:`~jola_lens.editors.base.attached_hooks`.

Example (a tiny random model):
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.selection import select, edit_on_mask
    >>> from jola_lens.train import TrainConfig
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> model = HookedTransformer(cfg)
    >>> data = [{"input_ids": [i, 2, 3, 4], "labels": [-100, -100, 3, 4]} for i in range(8)]
    >>> chosen = select("random", model, data, k=2, seed=0)
    >>> jm = edit_on_mask(model, chosen.mask, data, None, TrainConfig(epochs=1, warmup_steps=1))
    >>> torch.equal(jm.edits["attn"].mask, chosen.mask)
    True
"""

from __future__ import annotations

from typing import Any

from jaxtyping import Bool
from torch import Tensor

from ..config import JoLAConfig
from ..model import JoLAModel
from ..train import JoLATrainer, TrainConfig, TrainResult
from . import all_, dsp, iti, jola, lofit, pass_, random_, smp  # noqa: F401  (registers the selectors)
from .base import (
    SelectionResult,
    default_k,
    get_selector,
    list_selectors,
    per_layer_top_fraction,
    register_selector,
    select,
    top_k_mask,
)
from .dsp import gumbel_soft_topk
from .iti import contrastive_rows
from .smp import SMPScorer, load_scorer, meta_train_smp, save_scorer


def edit_on_mask(
    model: Any,
    mask: Bool[Tensor, "n_layers n_heads"],
    train: list[dict[str, Any]],
    valid: list[dict[str, Any]] | None,
    train_config: TrainConfig | None = None,
    *,
    jola_config: JoLAConfig | None = None,
    out_dir: Any = None,
    progress: bool = False,
    return_result: bool = False,
) -> JoLAModel | tuple[JoLAModel, TrainResult]:
    """Train additive + multiplicative edits on the heads of ``mask`` only (no gates).

    ``JoLAConfig(gate_mode="none")`` (or ``jola_config`` with its gate mode forced to ``"none"``)
    plus :meth:`JoLAModel.set_head_mask`: the edits of unmasked heads are multiplied by 0 in the
    forward pass, so they get no gradient and stay at their initial values, and the base model
    stays frozen. Training is :class:`JoLATrainer` with ``train_config`` (there is no gate
    penalty to apply: the config's penalty is forced to ``"none"``).

    Returns:
        the trained :class:`JoLAModel` (and the :class:`TrainResult` with ``return_result``).
    """
    import dataclasses

    cfg = dataclasses.replace(jola_config or JoLAConfig(), gate_mode="none")
    tc = dataclasses.replace(train_config or TrainConfig(), penalty="none")
    jm = JoLAModel(model, cfg)
    jm.set_head_mask(mask)
    tok = getattr(model, "tokenizer", None)
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    trainer = JoLATrainer(jm, train, valid, tc, out_dir=out_dir, progress=progress,
                          pad_id=pad if pad is not None else 0)
    result = trainer.train()
    return (jm, result) if return_result else jm


__all__ = [
    "SMPScorer",
    "SelectionResult",
    "contrastive_rows",
    "default_k",
    "edit_on_mask",
    "get_selector",
    "gumbel_soft_topk",
    "list_selectors",
    "load_scorer",
    "meta_train_smp",
    "per_layer_top_fraction",
    "register_selector",
    "save_scorer",
    "select",
    "top_k_mask",
]
