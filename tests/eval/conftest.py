"""Fixtures of the evaluation tests."""

from __future__ import annotations

import pytest

from .helpers import CharTokenizer


@pytest.fixture
def tiny_tok(tiny_model):
    """The tiny random model with a character-level stand-in tokenizer."""
    tiny_model.tokenizer = CharTokenizer()
    return tiny_model
