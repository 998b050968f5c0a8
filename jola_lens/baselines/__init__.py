"""The paper's baselines on the same frozen model, data, trainer and evaluation as JoLA.

=========  ====================================================================  ===================
name       what is trained                                                       SmolLM2-135M params
=========  ====================================================================  ===================
bitfit     offsets of every bias (b_Q, b_K, b_V, b_O, b_in, b_out)                109,440
red        scale + bias on each layer's MLP output (RED)                          34,560
loreft     rank-8 LoReFT on every block output, first 7 + last 7 prompt tokens   276,720
lora       rank-8 LoRA on W_Q and W_V                                             460,800
lofit      LoFiT: stage-1 head selection (L1 scalings), stage-2 offsets v         K * 64
iti        ITI steering: probe-selected heads, mass-mean shift (nothing trained)  0
=========  ====================================================================  ===================

Every baseline is an :class:`EditBaseline`: ``fit(train, valid, TrainConfig)`` trains it with
:class:`jola_lens.train.JoLATrainer` (no gate penalty), and
:func:`jola_lens.experiment.evaluate_task` scores it exactly as it scores a JoLAModel. The base
model's weights are never changed (edits are hooks; its parameters never require grad).

Example (a tiny random model):
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.baselines import make_baseline, list_baselines
    >>> from jola_lens.train import TrainConfig
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4, d_mlp=32,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> data = [{"input_ids": [i, 2, 3, 4], "labels": [-100, -100, 3, 4]} for i in range(8)]
    >>> red = make_baseline("red", HookedTransformer(cfg))
    >>> result = red.fit(data, data[:2], TrainConfig(epochs=1, warmup_steps=0), progress=False)
    >>> result.steps, list_baselines()
    (1, ['bitfit', 'iti', 'lofit', 'lora', 'loreft', 'red'])
"""

from __future__ import annotations

from typing import Any

from .base import EditBaseline, PromptPositions
from .bitfit import BitFit
from .lofit import LoFiT
from .lora import LoRA
from .loreft import LoReFT
from .red import RED
from .steering import ITISteering

BASELINES: dict[str, type[EditBaseline]] = {
    "bitfit": BitFit, "red": RED, "loreft": LoReFT, "lora": LoRA, "lofit": LoFiT, "iti": ITISteering,
}


def list_baselines() -> list[str]:
    return sorted(BASELINES)


def make_baseline(name: str, model: Any, **options: Any) -> EditBaseline:
    """Build baseline ``name`` on ``model`` (options go to its constructor)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {list_baselines()}")
    return BASELINES[name](model, **options)


__all__ = ["BASELINES", "BitFit", "EditBaseline", "ITISteering", "LoFiT", "LoRA", "LoReFT", "PromptPositions",
           "RED", "list_baselines", "make_baseline"]
