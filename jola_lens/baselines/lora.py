"""Kept for old imports: see :mod:`jola_lens.editors.lora`."""

from ..editors.lora import *  # noqa: F401,F403
