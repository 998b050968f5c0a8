"""Which data, which prompt, which sizes: :class:`TaskSpec`, and :func:`load_task_data`, its split.

This module imports neither torch nor TransformerLens, so the CLI reads and checks a user's data (and
reports a missing field or a too-small set) in well under a second, before anything heavy loads.
Both names are also importable from :mod:`jola_lens.experiment`, their first home.

Example:
    >>> from jola_lens.tasks.spec import TaskSpec, load_task_data
    >>> td = load_task_data(TaskSpec(train_size=8, valid_size=4, test_size=6))
    >>> len(td.train), len(td.valid), len(td.test)
    (8, 4, 6)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Collection

from . import io as _io
from . import splits as _splits
from .prompts import DEFAULT_PROMPT_STYLE, PROMPT_STYLES, TARGETS
from .schema import DataError, note

#: the TaskSpec fields that size the splits
SIZE_FIELDS = ("train_size", "valid_size", "test_size")


@dataclass
class TaskSpec:
    """Which data, which prompt, which sizes.

    Attributes:
        task: ``"demo"`` (the ARC-Easy sample shipped with the package), a task folder name
            under ``data_root`` (``ARC-Easy``, ``boolq``, ``openbookqa``, ``mmlu_pro/math``, ``e2e_nlg``...),
            or a path to a folder with ``train``/``test`` files.
        style: prompt style (see :data:`jola_lens.tasks.PROMPT_STYLES`): ``chat``, ``alpaca`` (the
            paper's), ``cloze`` or ``qa`` (question and options, answer as text).
        target: ``"label"`` (the paper: ``answer2``) or ``"choice_text"`` (the option's text).
        test_size: fixed test subset (sampled with ``test_seed``); ``None`` keeps all.
        max_new_tokens: generation budget at evaluation.
        fields: your data's field names for ours (``{"question": "prompt", "answer": "label",
            "choices": "options"}``; see :func:`jola_lens.tasks.load_examples`).
    """

    task: str = "demo"
    data_root: str | None = None
    style: str = DEFAULT_PROMPT_STYLE
    target: str = "choice_text"
    train_size: int | None = 200
    valid_size: int = 200
    test_size: int | None = 300
    seed: int = 42
    test_seed: int = 0
    max_length: int = 400
    max_new_tokens: int = 16
    eval_batch_size: int = 16
    fields: dict[str, str] | None = None

    def __post_init__(self) -> None:
        # checked here, so a wrong option stops the CLI before the model loads, not after zero-shot scoring
        if self.style not in PROMPT_STYLES:
            raise ValueError(f"unknown prompt style {self.style!r}: use one of {', '.join(PROMPT_STYLES)}")
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}: use one of {', '.join(TARGETS)}")
        for name in ("train_size", "test_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 (or None for all), got {v}")
        if self.fields is not None:
            unknown = set(self.fields) - {"question", "answer", "choices", "id"}
            if unknown:
                raise ValueError(f"fields maps our names question, answer, choices, id to yours; got {sorted(unknown)}")
        for name, low in (("valid_size", 0), ("max_length", 8), ("max_new_tokens", 1), ("eval_batch_size", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], section: str | None = None) -> "TaskSpec":
        """From a dict (YAML, JSON): unknown fields and wrong types are a one-line ``ValueError``."""
        from ..settings import coerce_fields

        return cls(**coerce_fields(cls, d, section))


def load_task_data(spec: TaskSpec) -> _splits.TaskData:
    """The train/valid/test split for ``spec`` (seeded, disjoint)."""
    if spec.task == "demo":
        folder = _io.DEMO_DATA
        train, valid, test = (_io.load_examples(folder / f"{s}.jsonl") for s in ("train", "valid", "test"))
        cut = lambda xs, n: xs if n is None or n >= len(xs) else _splits.sample_subset(xs, n, seed=spec.seed)  # noqa: E731
        return _splits.TaskData(train=cut(train, spec.train_size), valid=cut(valid, spec.valid_size),
                                test=cut(test, spec.test_size), name="ARC-Easy (bundled sample)")
    return _splits.load_task(
        spec.task, data_root=spec.data_root, train_size=spec.train_size, valid_size=spec.valid_size,
        test_size=spec.test_size, seed=spec.seed, test_seed=spec.test_seed, fields=spec.fields,
    )


def fit_task_data(spec: TaskSpec, flexible: Collection[str] = SIZE_FIELDS) -> tuple[TaskSpec, _splits.TaskData]:
    """:func:`load_task_data`, where the sizes named in ``flexible`` (those the user did not set) shrink to
    fit data smaller than they ask; returns the spec with the sizes used, and the splits.

    The defaults (train 200, validation 200, test 300) are the paper's and the benchmarks'; 40 rows of
    your own would fail them. A size given explicitly is never changed: data too small for it is a
    :class:`~jola_lens.tasks.DataError` that says how many examples there are and what to set.

    Example:
        >>> import warnings; warnings.simplefilter("ignore")
        >>> from jola_lens.testing import write_task
        >>> import tempfile, pathlib
        >>> folder = write_task(pathlib.Path(tempfile.mkdtemp()) / "t", n_train=30, n_test=10)
        >>> spec, td = fit_task_data(TaskSpec(task=str(folder)))
        >>> spec.train_size, spec.valid_size, td.sizes
        (24, 6, {'train': 24, 'valid': 6, 'test': 10})
    """
    return fit_sizes(load_task_data, spec, flexible)


def fit_sizes(load: Callable[[TaskSpec], _splits.TaskData], spec: TaskSpec,
              flexible: Collection[str]) -> tuple[TaskSpec, _splits.TaskData]:
    """``load(spec)``, retried with the sizes a too-small-data :class:`DataError` suggests, as long as
    they only change sizes named in ``flexible``; one note says the sizes used."""
    tried = spec
    for _ in range(len(SIZE_FIELDS) + 1):
        try:
            data = load(tried)
        except DataError as e:
            changes = {k: v for k, v in e.fit.items() if getattr(tried, k) != v}
            if not changes or not set(changes) <= set(flexible):
                raise
            tried = dataclasses.replace(tried, **changes)
            continue
        if tried != spec:
            used = ", ".join(f"{k} {getattr(tried, k)}" for k in SIZE_FIELDS if getattr(tried, k) != getattr(spec, k))
            d = {f.name: f.default for f in dataclasses.fields(TaskSpec)}
            note(f"{spec.task}: the default sizes (train {d['train_size']}, validation {d['valid_size']}, test "
                 f"{d['test_size']}) do not fit this data; using {used} (set --train-size / --valid-size / "
                 "--test-size to choose)")
        return tried, data
    return tried, load(tried)
