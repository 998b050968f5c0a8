"""Fixtures of the task-data tests."""

from __future__ import annotations

import pytest

from jola_lens.tasks import load_examples


@pytest.fixture(scope="module")
def arc_examples(shared_data):
    """Six ARC-Easy training examples of the shared data (skipped without it)."""
    exs = load_examples(shared_data / "ARC-Easy" / "train.jsonl")
    return [exs[i] for i in (0, 1, 2, 10, 100, 1000)]
