"""Kept for old imports: see :mod:`jola_lens.editors.iti`."""

from ..editors.iti import *  # noqa: F401,F403
from ..editors.iti import ITISteering  # noqa: F401
