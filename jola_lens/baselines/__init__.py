"""Kept for old imports: the baselines are editors now (:mod:`jola_lens.editors`), built with
``jola_lens.editors.get_editor``; ``make_baseline`` / ``list_baselines`` remain as aliases that
leave JoLA out.

Example:
    >>> from jola_lens.baselines import list_baselines
    >>> list_baselines()
    ['bitfit', 'iti', 'lofit', 'lora', 'loreft', 'red']
"""

from __future__ import annotations

from typing import Any

from ..editors import (
    RED,
    BitFit,
    EditBaseline,
    Editor,
    ITISteering,
    LoFiT,
    LoRA,
    LoReFT,
    PromptPositions,
    editor_class,
    list_editors,
)

BASELINES: dict[str, type[Editor]] = {
    "bitfit": BitFit, "red": RED, "loreft": LoReFT, "lora": LoRA, "lofit": LoFiT, "iti": ITISteering,
}


def list_baselines() -> list[str]:
    """Every registered editor but JoLA, sorted."""
    return sorted(n for n in list_editors() if n != "jola")


def make_baseline(name: str, model: Any, **options: Any) -> Editor:
    """Build baseline ``name`` on ``model`` (options go to its config)."""
    if name not in list_baselines():
        raise ValueError(f"unknown baseline {name!r}; choose from {list_baselines()}")
    return editor_class(name)(model, **options)


__all__ = ["BASELINES", "BitFit", "EditBaseline", "ITISteering", "LoFiT", "LoRA", "LoReFT", "PromptPositions",
           "RED", "list_baselines", "make_baseline"]
