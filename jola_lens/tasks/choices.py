"""Options, label sets, gold indices and question stems of multiple-choice examples.

The data carries the options in two ways: a ``choices`` list (our schema) or written into the
question (LLM-Adapters' ``Answer1: ... Answer2: ...``, MMLU-Pro's ``(A) ...`` lines, or a bare
``Answer format: true/false``). :func:`choices_of` reads either.

Example:
    >>> from jola_lens.tasks.choices import choices_of, gold_choice_index, label_set
    >>> ex = {"question": "Sky?\\n\\nAnswer1: blue Answer2: red\\n\\nAnswer format: answer1/answer2",
    ...       "choices": [], "answer": "answer1"}
    >>> choices_of(ex), gold_choice_index(ex), label_set([ex])
    (['blue', 'red'], 0, ['answer1', 'answer2'])
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, Mapping, Sequence

__all__ = ["TASK_LABELS", "choices_of", "gold_choice_index", "label_set", "parse_choices", "question_stem"]


_LETTERS = [chr(ord("A") + i) for i in range(10)]  # MMLU-Pro: A..J


#: Label sets of the tasks JoLA reports (as in LLM-Adapters); keys are lower case without ``-``/``_``.
TASK_LABELS: dict[str, list[str]] = {
    "boolq": ["true", "false"],
    "piqa": ["solution1", "solution2"],
    "socialiqa": [f"answer{k}" for k in range(1, 6)],
    "siqa": [f"answer{k}" for k in range(1, 6)],
    "hellaswag": [f"ending{k}" for k in range(1, 5)],
    "winogrande": ["option1", "option2"],
    "arceasy": [f"answer{k}" for k in range(1, 6)],
    "arcchallenge": [f"answer{k}" for k in range(1, 6)],
    "openbookqa": [f"answer{k}" for k in range(1, 6)],
    "obqa": [f"answer{k}" for k in range(1, 6)],
    "mmlupro": list(_LETTERS),
}


_FORMAT_RE = re.compile(r"Answer format:\s*(\S+)\s*$")
_INDEXED_RE = re.compile(r"([a-z]+)(\d+)")
_OPTIONS_START_RE = re.compile(r"(?:^|\n)([A-Z][a-z]+)1: ")
_STEM_END_RE = re.compile(r"\n\s*\n\s*(?:[A-Z][a-z]+1: |\(A\) |Answer format:)")
_STEM_PREFIX_RE = re.compile(r"^Please (?:choose|answer)[^:\n]*:\s*")


def _answer_format(question: str) -> list[str]:
    """The labels of a trailing ``Answer format: a/b/c`` line, or ``[]``."""
    m = _FORMAT_RE.search(question)
    return m.group(1).split("/") if m else []


def _sequential_options(text: str, marker: Callable[[int], re.Pattern[str]]) -> list[str]:
    """Texts after ``marker(1)``, ``marker(2)``, ... matched in order; ``[]`` if fewer than two."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while (m := marker(len(spans) + 1).search(text, pos)) is not None:
        spans.append((m.start(), m.end()))
        pos = m.end()
    if len(spans) < 2:
        return []
    ends = [start for start, _ in spans[1:]] + [len(text)]
    return [text[begin:end].strip() for (_, begin), end in zip(spans, ends)]


def parse_choices(question: str) -> list[str]:
    """Option texts written in an LLM-Adapters or MMLU-Pro style question (``[]`` if none).

    Understands ``Answer1: ... Answer2: ...`` (also ``Solution``/``Ending``/``Option``),
    ``(A) ...`` lines, and a bare ``Answer format: true/false``.

    Example:
        >>> parse_choices("Please choose the correct answer to the question: 2+2?\\n\\n"
        ...               "Answer1: three Answer2: four\\n\\nAnswer format: answer1/answer2")
        ['three', 'four']
        >>> parse_choices("Pick one.\\n\\n(A) red\\n(B) blue\\n\\nAnswer format: A/B")
        ['red', 'blue']
    """
    m_fmt = _FORMAT_RE.search(question)
    body = question[: m_fmt.start()] if m_fmt else question
    m = _OPTIONS_START_RE.search(body)
    if m:
        prefix = re.escape(m.group(1))
        opts = _sequential_options(body[m.start(1) :], lambda k: re.compile(rf"(?:^|\s){prefix}{k}: "))
        if opts:
            return opts
    opts = _sequential_options(body, lambda k: re.compile(rf"(?:^|\n)\({chr(ord('A') + k - 1)}\) "))
    if opts:
        return opts
    return ["true", "false"] if _answer_format(question) == ["true", "false"] else []


def choices_of(example: Mapping[str, Any]) -> list[str]:
    """The example's option texts: ``choices`` if given, else parsed from the question.

    Example:
        >>> choices_of({"question": "Q?\\n\\nAnswer format: true/false", "choices": []})
        ['true', 'false']
    """
    return list(example.get("choices") or []) or parse_choices(example["question"])


def _is_multiple_choice(example: Mapping[str, Any]) -> bool:
    return bool(choices_of(example) or _answer_format(example["question"]))


def _label_kind(answer: str) -> tuple[str, str]:
    if answer in ("true", "false"):
        return ("bool", "")
    m = _INDEXED_RE.fullmatch(answer)
    if m:
        return ("indexed", m.group(1))
    if len(answer) == 1 and answer in _LETTERS:
        return ("letter", "")
    return ("other", "")


def _task_key(task: str) -> str:
    return re.sub(r"[-_ ]", "", task.lower())


def label_set(examples: Sequence[Mapping[str, Any]], *, task: str | None = None) -> list[str] | None:
    """The task's label strings (as in LLM-Adapters), or ``None`` for generation data.

    * ``task`` in :data:`TASK_LABELS` (e.g. ``"boolq"``, ``"ARC-Easy"``, ``"mmlu_pro"``) fixes the set;
    * otherwise, for multiple-choice data (``choices`` non-empty, or options / an
      ``Answer format:`` line in the question), the most common answer shape decides:
      ``answer1..answerN`` (any ``prefixK``; N = the most options of any example),
      ``true``/``false``, or the letters ``A``..``J`` (MMLU-Pro);
    * data with no options at all is generation data: ``None``.

    Example:
        >>> label_set([{"question": "q", "choices": ["x", "y", "z"], "answer": "answer3"}])
        ['answer1', 'answer2', 'answer3']
        >>> label_set([{"question": "q", "choices": ["x", "y"], "answer": "B"}])[-1]
        'J'
        >>> label_set([{"question": "Write a poem.", "choices": [], "answer": "Roses..."}]) is None
        True
    """
    if task is not None and _task_key(task) in TASK_LABELS:
        return list(TASK_LABELS[_task_key(task)])
    if task is not None and _task_key(task).startswith("mmlupro"):
        return list(_LETTERS)
    if not any(_is_multiple_choice(ex) for ex in examples):
        return None
    kinds = Counter(_label_kind(ex["answer"]) for ex in examples)
    ranked = [k for k, _ in kinds.most_common() if k[0] != "other"]
    if not ranked:
        return None
    kind, prefix = ranked[0]
    if kind == "bool":
        return ["true", "false"]
    if kind == "letter":
        return list(_LETTERS)
    n = max(max(len(choices_of(ex)), len(_answer_format(ex["question"]))) for ex in examples)
    return [f"{prefix}{k}" for k in range(1, n + 1)]


def gold_choice_index(example: Mapping[str, Any]) -> int | None:
    """0-based index of the gold option (``answer3`` -> 2, ``C`` -> 2, ``false`` -> 1), else ``None``.

    ``None`` for generation data and for answers that name no existing option.

    Example:
        >>> gold_choice_index({"question": "q", "choices": ["a", "b", "c"], "answer": "answer3"})
        2
        >>> gold_choice_index({"question": "q", "choices": ["true", "false"], "answer": "false"})
        1
        >>> gold_choice_index({"question": "Write.", "choices": [], "answer": "text"}) is None
        True
    """
    if not _is_multiple_choice(example):
        return None
    answer = example["answer"]
    choices = choices_of(example)
    kind, _ = _label_kind(answer)
    if kind == "indexed":
        index = int(_INDEXED_RE.fullmatch(answer).group(2)) - 1  # type: ignore[union-attr]
    elif kind == "letter":
        index = ord(answer) - ord("A")
    elif answer in choices:
        index = choices.index(answer)
    else:
        return None
    if index < 0 or (choices and index >= len(choices)):
        return None
    return index


def question_stem(example: Mapping[str, Any]) -> str:
    """The bare question: the LLM-Adapters instruction prefix and the option block removed.

    Falls back to the whole question (stripped) when it has no recognised structure.

    Example:
        >>> question_stem({"question": "Please choose the correct answer to the question: "
        ...                "Which is a mammal?\\n\\nAnswer1: shark Answer2: whale\\n\\n"
        ...                "Answer format: answer1/answer2"})
        'Which is a mammal?'
        >>> question_stem({"question": "  Name a colour. "})
        'Name a colour.'
    """
    q = example["question"]
    start = 0
    m = _STEM_PREFIX_RE.search(q)
    if m:
        start = m.end()
    end = _STEM_END_RE.search(q, start)
    stem = q[start : end.start() if end else len(q)].strip()
    return stem or q.strip()
