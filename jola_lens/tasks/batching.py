"""Collation of tokenised rows (right padding, masks from lengths) and length-grouped batches.

Example:
    >>> from jola_lens.tasks.batching import DataCollator, length_grouped_batches
    >>> DataCollator(pad_token_id=0)([{"input_ids": [4, 5]}, {"input_ids": [6]}])["attention_mask"].tolist()
    [[1, 1], [1, 0]]
    >>> length_grouped_batches([3, 1, 2], batch_size=2, shuffle=False)
    [[0, 2], [1]]
"""

from __future__ import annotations

import operator
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from .schema import DataError
from .tokenize import IGNORE_INDEX

__all__ = ["DataCollator", "length_grouped_batches"]


def _as_ids(value: Any, name: str, row: int) -> list[int]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    try:
        return [operator.index(v) for v in value]
    except TypeError:
        raise DataError(f"batch row {row}: '{name}' must be a sequence of ints") from None


def _find_last(seq: list[int], pattern: list[int]) -> int:
    for start in range(len(seq) - len(pattern), -1, -1):
        if seq[start : start + len(pattern)] == pattern:
            return start
    return -1


@dataclass
class DataCollator:
    """Right-pads tokenised rows into LongTensors ``input_ids``, ``attention_mask``, ``labels``.

    Masks come from the row lengths (and a row's own ``attention_mask``), never from pad ids:
    SmolLM2's pad token is also its end-of-turn token, which is a real, labelled target token.
    A row without ``labels`` is labelled after the last occurrence of the response template
    (JoLA's completion-only masking) when one is set, else on every token.
    """

    pad_token_id: int = 0
    response_template_ids: list[int] | None = None
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise DataError("cannot collate an empty batch")
        rows = []
        for r, f in enumerate(features):
            if "input_ids" not in f:
                raise DataError(f"batch row {r}: missing 'input_ids'")
            ids = _as_ids(f["input_ids"], "input_ids", r)
            mask = [1] * len(ids)
            if f.get("attention_mask") is not None:
                mask = _as_ids(f["attention_mask"], "attention_mask", r)
            if f.get("labels") is not None:
                labels = _as_ids(f["labels"], "labels", r)
            elif self.response_template_ids:
                start = _find_last(ids, self.response_template_ids)
                if start < 0:
                    raise DataError(f"batch row {r}: the response template was not found in input_ids")
                cut = start + len(self.response_template_ids)
                labels = [IGNORE_INDEX] * cut + ids[cut:]
            else:
                labels = list(ids)
            if not (len(ids) == len(mask) == len(labels)):
                raise DataError(f"batch row {r}: input_ids, attention_mask and labels differ in length")
            labels = [lab if m else IGNORE_INDEX for lab, m in zip(labels, mask)]
            rows.append((ids, mask, labels))
        width = max(len(ids) for ids, _, _ in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        out = {
            "input_ids": torch.full((len(rows), width), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
            "labels": torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long),
        }
        for r, (ids, mask, labels) in enumerate(rows):
            n = len(ids)
            out["input_ids"][r, :n] = torch.tensor(ids, dtype=torch.long)
            out["attention_mask"][r, :n] = torch.tensor(mask, dtype=torch.long)
            out["labels"][r, :n] = torch.tensor(labels, dtype=torch.long)
        return out


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int = 0, shuffle: bool = True
) -> list[list[int]]:
    """Batches of indices whose examples have similar lengths (less padding), deterministic per seed.

    With ``shuffle``: a seeded permutation of the indices is cut into chunks of
    ``50 * batch_size``, each chunk is sorted by length (longest first) and cut into batches,
    and the batch order is shuffled with the same generator. Without ``shuffle`` the chunks
    follow the original order and the batch order is kept. Pass ``seed + epoch`` for a new
    order each epoch. Every index appears exactly once; only the last batch of a chunk can be short.

    Example:
        >>> length_grouped_batches([5, 1, 4, 2, 3], batch_size=2, shuffle=False)
        [[0, 2], [4, 3], [1]]
        >>> sorted(i for b in length_grouped_batches([5, 1, 4, 2, 3], 2, seed=1) for i in b)
        [0, 1, 2, 3, 4]
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    chunk = 50 * batch_size
    batches: list[list[int]] = []
    for c in range(0, len(order), chunk):
        part = sorted(order[c : c + chunk], key=lambda i: -lengths[i])  # stable: ties keep chunk order
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    if shuffle:
        rng.shuffle(batches)
    return batches
