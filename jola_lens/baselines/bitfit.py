"""Kept for old imports: see :mod:`jola_lens.editors.bitfit`."""

from ..editors.bitfit import *  # noqa: F401,F403
