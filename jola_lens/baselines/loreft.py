"""Kept for old imports: see :mod:`jola_lens.editors.loreft`."""

from ..editors.loreft import *  # noqa: F401,F403
