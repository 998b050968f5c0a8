"""Kept for old imports: JoLA now lives in :mod:`jola_lens.editors.jola` (``JoLAModel`` is an
:class:`~jola_lens.editors.Editor`); the saved-run format in :mod:`jola_lens.editors.io`."""

from .editors.base import attached_hooks, model_identity
from .editors.io import CONFIG_FILE, EDITS_FILE
from .editors.jola import _SHAPE_KEYS, SAVE_FORMAT, JoLALoadError, JoLAModel

__all__ = ["CONFIG_FILE", "EDITS_FILE", "SAVE_FORMAT", "JoLALoadError", "JoLAModel", "_SHAPE_KEYS",
           "attached_hooks", "model_identity"]
