"""Kept for old imports: the common frame of the baselines is :class:`jola_lens.editors.Editor`."""

from ..editors.base import EditBaseline, Editor, PromptPositions, check_layers, head_mask_or_all
from ..editors.io import LEGACY_BASELINE_CONFIG as BASELINE_CONFIG
from ..editors.io import LEGACY_BASELINE_FILE as BASELINE_FILE

__all__ = ["BASELINE_CONFIG", "BASELINE_FILE", "EditBaseline", "Editor", "PromptPositions", "check_layers",
           "head_mask_or_all"]
