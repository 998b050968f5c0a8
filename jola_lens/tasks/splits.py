"""Train / validation / test splits: seeded carving, sampling and removal of overlapping examples.

Splits are disjoint by id and by whitespace-normalised question text (:class:`SeenExamples`);
:func:`load_task` turns a task folder into such splits.

Example:
    >>> from jola_lens.tasks.splits import SeenExamples, make_splits
    >>> pool = [{"id": str(i), "question": f"q{i}"} for i in range(6)]
    >>> d = make_splits(pool, pool[:1], train_size=2, valid_size=2, seed=0)
    >>> d.sizes, any(ex in SeenExamples(d.test) for ex in d.train + d.valid)
    ({'train': 2, 'valid': 2, 'test': 1}, False)
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TypeVar

from .choices import label_set
from .io import _SPLIT_FILES, _split_file, _task_for_labels, load_examples, resolve_task_dir
from .schema import DataError, Example, note

__all__ = ["SeenExamples", "TaskData", "carve_splits", "load_task", "make_splits", "sample_subset"]

T = TypeVar("T")


def sample_subset(examples: Sequence[T], n: int | None, seed: int = 0) -> list[T]:
    """``n`` examples chosen with ``random.Random(seed).sample``, kept in their original order.

    Deterministic for a given list, ``n`` and seed (Python's ``random`` is stable across
    versions for ``sample``); ``n=None`` or ``n >= len(examples)`` returns all of them. The
    demo's test set is ``sample_subset(arc_easy_test, 300, seed=0)``.

    Example:
        >>> sample_subset(list("abcdefgh"), 3, seed=0)
        ['d', 'g', 'h']
    """
    if n is None or n >= len(examples):
        return list(examples)
    if n < 0:
        raise DataError(f"subset size must be >= 0, got {n}")
    picked = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in picked]


def _text_key(question: str) -> str:
    return " ".join(question.split())


class SeenExamples:
    """Ids and whitespace-normalised question texts of a set of examples.

    ``ex in seen`` is true when ``ex`` shares its id or its question text (whitespace runs
    collapsed) with one of the examples added: the overlap test of every split here.

    Example:
        >>> seen = SeenExamples([{"id": "1", "question": "Is  the sky blue?"}])
        >>> {"id": "9", "question": "Is the sky\\nblue?"} in seen, {"id": "1", "question": "x"} in seen
        (True, True)
        >>> seen.add([{"id": "2", "question": "New?"}]); {"id": "3", "question": "New?"} in seen
        True
    """

    def __init__(self, examples: Iterable[Mapping[str, Any]] = (), *, use_ids: bool = True) -> None:
        self.ids: set[str] = set()
        self.texts: set[str] = set()
        self.use_ids = use_ids  # False: ids mean nothing across these files (row numbers, all equal)
        self.add(examples)

    def add(self, examples: Iterable[Mapping[str, Any]]) -> None:
        for ex in examples:
            self.ids.add(ex["id"])
            self.texts.add(_text_key(ex["question"]))

    def __contains__(self, ex: Mapping[str, Any]) -> bool:
        return (self.use_ids and ex["id"] in self.ids) or _text_key(ex["question"]) in self.texts


#: The first release's private name of :class:`SeenExamples`.
_Seen = SeenExamples


@dataclass
class TaskData:
    """Train / validation / test examples of one task (disjoint by id and by question text)."""

    train: list[Example]
    valid: list[Example]
    test: list[Example]
    name: str = ""
    labels: list[str] | None = field(default=None)

    @property
    def sizes(self) -> dict[str, int]:
        """Number of examples per split.

        Example:
            >>> TaskData(train=[{}], valid=[], test=[{}, {}]).sizes
            {'train': 1, 'valid': 0, 'test': 2}
        """
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def make_splits(
    examples_train: Sequence[Example],
    examples_test: Sequence[Example] | None = None,
    *,
    examples_valid: Sequence[Example] | None = None,
    train_size: int | None = 200,
    valid_size: int = 200,
    seed: int = 42,
) -> TaskData:
    """Seeded train / validation splits, disjoint from each other and from the test examples.

    Training examples sharing an id or a (whitespace-normalised) question with a test example
    are dropped first. ``train_size`` examples are drawn with ``random.Random(seed)``
    (``None``: all); the validation examples are the next ``valid_size`` of the same
    permutation whose question is not in train, or a seeded sample of ``examples_valid`` when
    given. Each split keeps the original order. ``valid_size=0`` asks for no validation.

    Raises:
        DataError: the train split, the validation split (unless ``valid_size=0``) or a given
            test split is empty.

    Example:
        >>> pool = [{"id": str(i), "question": f"q{i}"} for i in range(10)]
        >>> d = make_splits(pool, pool[:2], train_size=3, valid_size=2, seed=0)
        >>> d.sizes, [e["id"] for e in d.train]
        ({'train': 3, 'valid': 2, 'test': 2}, ['3', '6', '7'])
    """
    if train_size is not None and train_size < 1:
        raise DataError(f"train_size must be >= 1 (or None for all), got {train_size}")
    if valid_size < 0:
        raise DataError(f"valid_size must be >= 0, got {valid_size}")
    test = list(examples_test) if examples_test is not None else []
    if examples_test is not None and not test:
        raise DataError("the test split is empty")
    use_ids = _ids_are_identities(examples_train, test, examples_valid)
    seen_test = SeenExamples(test, use_ids=use_ids)
    pool = [ex for ex in examples_train if ex not in seen_test]
    if len(pool) < len(examples_train):
        note(f"{len(examples_train) - len(pool)} of {len(examples_train)} training examples repeat a test question"
             f"{' or id' if use_ids else ''} and were dropped")
    rng = random.Random(seed)
    order = list(range(len(pool)))
    rng.shuffle(order)
    n_train = len(pool) if train_size is None else min(train_size, len(pool))
    train = [pool[i] for i in sorted(order[:n_train])]
    if not train:
        raise DataError(
            f"the train split is empty ({len(examples_train)} training examples, "
            f"{len(examples_train) - len(pool)} of them overlap the test split)"
        )
    seen_train = SeenExamples(train, use_ids=use_ids)
    if examples_valid is not None:
        candidates = [ex for ex in examples_valid if ex not in seen_train and ex not in seen_test]
        if len(candidates) < len(examples_valid):
            note(f"{len(examples_valid) - len(candidates)} of {len(examples_valid)} validation examples repeat a "
                 "training or test question and were left out of validation")
        valid = sample_subset(candidates, valid_size, seed)
    else:
        rest = [i for i in order[n_train:] if pool[i] not in seen_train]
        valid = [pool[i] for i in sorted(rest[:valid_size])]
    if valid_size > 0 and not valid:
        n = len(pool)
        fit_train = max(1, (n * 4) // 5)
        dropped = len(examples_train) - n
        raise DataError(
            f"the validation split is empty: the data has {n} training examples"
            f"{f' ({dropped} more overlap the test split)' if dropped else ''} and train_size {train_size} leaves "
            f"none for valid_size {valid_size}; set train_size "
            f"(--train-size) to {fit_train} and valid_size (--valid-size) to {max(n - fit_train, 0) or 0}, "
            "give a validation split, or valid_size 0 for none",
            fit={"train_size": fit_train, "valid_size": max(n - fit_train, 0)},
        )
    return TaskData(train=train, valid=valid, test=test)


def _ids_are_identities(train: Sequence[Example], test: Sequence[Example],
                        valid: Sequence[Example] | None = None) -> bool:
    """Whether ids can tell examples apart across these splits.

    Not when they repeat within a split (all equal, say), and not when train and test share most
    of their ids (at least half of the smaller split's) and these name *different* questions every
    time: that is each file numbering its own rows
    ("0".."79" and "0".."19"), and matching by id would drop rows that overlap nothing. In both
    cases the splits are kept apart by question text alone, with a note saying so.
    """
    for split in (train, test, valid or []):
        ids = [ex["id"] for ex in split]
        if len(set(ids)) < len(ids):
            return False
    by_id = {ex["id"]: _text_key(ex["question"]) for ex in test}
    shared = [ex for ex in train if ex["id"] in by_id]
    numbering = len(shared) >= max(2, min(len(train), len(test)) / 2)  # most ids shared, not one stray clash
    if numbering and all(by_id[ex["id"]] != _text_key(ex["question"]) for ex in shared):
        note(f"{len(shared)} training ids also appear in the test split (e.g. {shared[0]['id']!r}) but name "
             "different questions every time, as when each file numbers its own rows: ids are ignored and "
             "the splits are kept apart by question text")
        return False
    return True


#: the share of a single file carved into the test split when no test size is given
SINGLE_FILE_TEST_SHARE = 0.2
_DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")


def _load_single_file(path: Path, *, train_size: int | None, valid_size: int, test_size: int | None, seed: int,
                      test_seed: int, fields: Mapping[str, str] | None) -> TaskData:
    """One data file carved into disjoint test / train / validation splits (test first, with ``test_seed``)."""
    return carve_splits(load_examples(path, fields=fields), path.stem, train_size=train_size, valid_size=valid_size,
                        test_size=test_size, seed=seed, test_seed=test_seed, where=str(path))


def carve_splits(examples: Sequence[Example], name: str, *, train_size: int | None = 200, valid_size: int = 200,
                 test_size: int | None = None, seed: int = 42, test_seed: int = 0,
                 where: str | None = None) -> TaskData:
    """Examples from one source carved into disjoint test / train / validation splits: ``test_size``
    (default: 20%) drawn with ``test_seed``, then :func:`make_splits` with ``seed``; one note says the sizes.

    Example:
        >>> import warnings; warnings.simplefilter("ignore")
        >>> rows = [{"id": str(i), "question": f"q{i}"} for i in range(20)]
        >>> carve_splits(rows, "toy", train_size=10, valid_size=4).sizes
        {'train': 10, 'valid': 4, 'test': 4}
    """
    path = where or name
    examples = list(examples)
    n_test = test_size if test_size is not None else max(1, round(len(examples) * SINGLE_FILE_TEST_SHARE))
    if n_test >= len(examples):
        n = len(examples)
        t = max(1, round(n * SINGLE_FILE_TEST_SHARE))
        v = max(1, round((n - t) * SINGLE_FILE_TEST_SHARE)) if n - t > 1 else 0
        raise DataError(f"{path}: {n} examples cannot give a test split of {n_test} and leave any for training: "
                        f"set test_size (--test-size) to {t}, train_size (--train-size) to {n - t - v} and "
                        f"valid_size (--valid-size) to {v}",
                        fit={"test_size": t, "train_size": n - t - v, "valid_size": v})
    order = list(range(len(examples)))
    random.Random(test_seed).shuffle(order)
    test = [examples[i] for i in sorted(order[:n_test])]
    rest = [examples[i] for i in sorted(order[n_test:])]
    data = make_splits(rest, test, train_size=train_size, valid_size=valid_size, seed=seed)
    note(f"{Path(path).name}: one file, carved into test {len(data.test)} (seed {test_seed}), train "
         f"{len(data.train)} and validation {len(data.valid)} (seed {seed}), disjoint; "
         f"{len(examples) - sum(data.sizes.values())} examples left unused")
    data.name = name
    data.labels = label_set(data.train + data.test)
    return data


def load_task(
    name_or_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    train_size: int | None = 200,
    valid_size: int = 200,
    test_size: int | None = None,
    seed: int = 42,
    test_seed: int = 0,
    fields: Mapping[str, str] | None = None,
) -> TaskData:
    """Load a task folder (``train.jsonl``, ``test.jsonl``, optional ``validation.jsonl``) as splits.

    ``name_or_dir`` is a folder, a single data file (``.jsonl``, ``.json``, ``.csv``, ``.tsv``: carved
    into test, train and validation with the seeds, reported in one note), or a folder name under
    ``data_root`` (default: ``$JOLA_LENS_DATA``,
    ``./data``, then ``../shared/data`` beside the repository), e.g. ``"ARC-Easy"`` or
    ``"mmlu_pro/biology"``; case, ``-`` and ``_`` do not matter.

    * With a train split: :func:`make_splits` (validation from ``validation.jsonl`` if present,
      else carved from the rest of train; train examples that overlap test are dropped).
    * Without one (MMLU-Pro, E2E): train and validation are carved with ``seed`` from
      ``validation`` when it has at least ``train_size + valid_size`` examples (E2E), else
      from ``validation`` + ``test`` (MMLU-Pro); test examples that share an id or question
      with them are removed from the test split.

    ``test_size`` then subsamples the test split with :func:`sample_subset` and ``test_seed``
    (fixed, 0 by default, so the test subset does not change with ``seed``).

    Example (with the shared development data)::

        data = load_task("ARC-Easy", test_size=300)     # the demo's fixed test subset
        data.sizes                                      # {'train': 200, 'valid': 200, 'test': 300}
    """
    single = Path(name_or_dir).expanduser()
    if single.is_file():
        if single.suffix.lower() not in _DATA_SUFFIXES:
            raise DataError(f"{single}: a data file must end in {', '.join(_DATA_SUFFIXES)}")
        return _load_single_file(single, train_size=train_size, valid_size=valid_size, test_size=test_size,
                                 seed=seed, test_seed=test_seed, fields=fields)
    folder = resolve_task_dir(name_or_dir, data_root)
    task = _task_for_labels(folder)
    files = {split: _split_file(folder, split) for split in _SPLIT_FILES}
    loaded = {split: load_examples(f, task=task, fields=fields) for split, f in files.items() if f is not None}
    if "test" not in loaded and "validation" not in loaded:
        raise DataError(f"{folder}: no test split (expected test.jsonl or test.json)")
    if "train" in loaded:
        if "test" not in loaded:
            raise DataError(f"{folder}: no test split (expected test.jsonl or test.json)")
        data = make_splits(
            loaded["train"], loaded["test"], examples_valid=loaded.get("validation"),
            train_size=train_size, valid_size=valid_size, seed=seed,
        )
    else:
        valid_split = loaded.get("validation", [])
        test_split = loaded.get("test", [])
        big_enough = train_size is not None and len(valid_split) >= train_size + valid_size
        pool = valid_split if big_enough or not test_split else valid_split + test_split
        data = make_splits(pool, None, train_size=train_size, valid_size=valid_size, seed=seed)
        used = SeenExamples(data.train + data.valid)
        data.test = [ex for ex in test_split if ex not in used]
        if len(data.test) < len(test_split):
            note(f"{folder.name}: no train split, so train and validation were carved from "
                 f"{'validation' if pool is valid_split else 'validation + test'}; the "
                 f"{len(test_split) - len(data.test)} test examples used for them left the test split")
        if not data.test:
            raise DataError(f"{folder}: no test examples left after carving train and validation")
    data.test = sample_subset(data.test, test_size, test_seed)
    data.name = folder.name if folder.parent.name != "mmlu_pro" else f"mmlu_pro/{folder.name}"
    data.labels = label_set(data.train + data.test, task=task)
    return data
