"""Kept for old imports: see :mod:`jola_lens.editors.lofit`."""

from ..editors.lofit import *  # noqa: F401,F403
