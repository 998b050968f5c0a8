"""Kept for old imports: see :mod:`jola_lens.editors.red`."""

from ..editors.red import *  # noqa: F401,F403
