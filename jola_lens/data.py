"""Task data for JoLA: loading, label sets, prompts, answer-only tokenisation, batching, splits.

One normalised example is a dict with the keys of ``shared/data`` (see its README)::

    {"id": str, "question": str, "choices": [str, ...], "answer": str,
     "references": [str, ...], "meta": {...}}

``load_examples`` reads that JSON-lines schema, the original JoLA ``{"instruction", "answer"}``
JSON lines, LLM-Adapters JSON arrays, Python lists, split folders and (online) Hugging Face
datasets. Every problem with the input raises :class:`DataError`, whose message names the file
and the 1-based line where there is one.

Training pairs are built as ``prompt`` + ``target`` and tokenised **separately**, so the loss
covers exactly the target tokens (the answer, plus the chat end-of-turn marker for
``style="chat"``), and the prompt tokens are the ones the model sees at generation time.

Example:
    >>> from jola_lens.data import load_examples, label_set, format_prompt, format_target
    >>> exs = load_examples(["Is water wet? Answer format: true/false", "true",
    ...                      "Is fire cold? Answer format: true/false", "false"])
    >>> [e["answer"] for e in exs], label_set(exs)
    (['true', 'false'], ['true', 'false'])
    >>> format_prompt(exs[0], None, style="alpaca").splitlines()[1:3]
    [' ### Instruction:', 'Is water wet? Answer format: true/false']
    >>> format_target(exs[0], None, style="alpaca")
    'true'
"""

from __future__ import annotations

import bisect
import hashlib
import json
import operator
import os
import random
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

__all__ = [
    "ALPACA_TEMPLATE",
    "CLOZE_TEMPLATE",
    "IGNORE_INDEX",
    "PROMPT_STYLES",
    "RESPONSE_TEMPLATE",
    "TARGETS",
    "TASK_LABELS",
    "DataCollator",
    "DataError",
    "JoLADataset",
    "TaskData",
    "TokenizedDataset",
    "choices_of",
    "end_of_turn",
    "format_prompt",
    "format_target",
    "gold_choice_index",
    "label_set",
    "length_grouped_batches",
    "load_examples",
    "load_task",
    "make_data_collator",
    "make_splits",
    "parse_choices",
    "question_stem",
    "sample_subset",
    "tokenize_examples",
    "tokenize_pair",
    "validate_examples",
]

Example = dict[str, Any]

#: Label value that the loss ignores (PyTorch's ``cross_entropy`` default).
IGNORE_INDEX = -100

#: JoLA's Alpaca no-input template, with its exact whitespace (note the space before ``###``).
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n ### Instruction:\n{instruction}\n\n### Response:\n"
)
#: The response marker of the Alpaca template (JoLA's ``response_template``).
RESPONSE_TEMPLATE = "### Response:\n"
#: A plain question/answer prompt for base models and log-likelihood scoring.
CLOZE_TEMPLATE = "Question: {stem}\nAnswer:"
QA_TEMPLATE = "Question: {stem}\nOptions: {options}\nAnswer:"

PROMPT_STYLES = ("chat", "alpaca", "cloze", "qa")
TARGETS = ("label", "choice_text")

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

_SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train.jsonl", "train.json"),
    "validation": ("validation.jsonl", "valid.jsonl", "valid.json", "validation.json", "dev.jsonl", "dev.json"),
    "test": ("test.jsonl", "test.json"),
}
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
                  "dev": "validation", "test": "test"}
_TASK_ALIASES = {"arce": "ARC-Easy", "arcc": "ARC-Challenge", "obqa": "openbookqa", "e2e": "e2e_nlg",
                 "commongen": "common_gen"}


class DataError(ValueError):
    """Bad task data; the message says what is wrong and where (file and 1-based line if any).

    Example:
        >>> try:
        ...     load_examples(["a prompt without an answer"])
        ... except DataError as e:
        ...     print(e)
        <list>: a flat list must alternate [prompt, answer, ...] but has odd length 1
    """


# ---- reading files -------------------------------------------------------------------------------


def _where(source: str, index: int, lines: Sequence[int] | None) -> str:
    """``"file, line N"`` when the line is known, else ``"source, example N"`` (1-based)."""
    if lines is not None and index < len(lines):
        return f"{source}, line {lines[index]}"
    return f"{source}, example {index + 1}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None


def _read_json_lines(path: Path, text: str) -> list[tuple[int, Any]]:
    """(line number, parsed object) for every non-blank line.

    Splits on ``"\\n"`` only: U+2028 and friends are legal inside JSON strings.
    """
    records = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            records.append((lineno, json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {lineno}: invalid JSON ({e.msg}, column {e.colno})") from None
    return records


def _read_json_array(path: Path, text: str) -> list[tuple[int, Any]]:
    """(line number where it starts, parsed object) for every element of a top-level JSON array."""
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_at(offset: int) -> int:
        return bisect.bisect_left(newlines, offset) + 1

    def skip_ws(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    decoder = json.JSONDecoder()
    i = skip_ws(text.index("[") + 1)
    records: list[tuple[int, Any]] = []
    if text[i : i + 1] == "]":
        return records
    while True:
        if i >= len(text):
            raise DataError(f"{path}, line {line_at(i)}: the JSON array is not closed")
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None
        records.append((line_at(i), obj))
        i = skip_ws(end)
        c = text[i : i + 1]
        if c == ",":
            i = skip_ws(i + 1)
            continue
        if c == "]":
            break
        raise DataError(f"{path}, line {line_at(i)}: expected ',' or ']' in the JSON array")
    rest = skip_ws(i + 1)
    if rest < len(text):
        raise DataError(f"{path}, line {line_at(rest)}: extra data after the JSON array")
    return records


def _read_records(path: Path) -> list[tuple[int, Any]]:
    """Raw records of a ``.jsonl``/``.json`` file: JSON lines, or one JSON array of objects."""
    text = _read_text(path)
    if text.lstrip()[:1] == "[":
        return _read_json_array(path, text)
    return _read_json_lines(path, text)


# ---- normalising records -------------------------------------------------------------------------

_SCHEMA_KEYS = ("id", "question", "choices", "answer", "references", "meta")


def _as_text(value: Any, name: str, where: str) -> str:
    if isinstance(value, bool):  # LLM-Adapters BoolQ labels are the strings true/false
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{name}' must be a string, got {type(value).__name__}")
    return value


def _str_list(value: Any, name: str, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: field '{name}' must be a list of strings")
    return list(value)


def _normalise(record: Any, *, where: str, default_id: str) -> Example:
    """One record of any supported shape -> our schema (raises DataError naming ``where``)."""
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "question" in record:  # our schema
        question = _as_text(record["question"], "question", where)
        extra = {k: v for k, v in record.items() if k not in _SCHEMA_KEYS}
        meta = record.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise DataError(f"{where}: field 'meta' must be an object")
        meta = {**extra, **meta}
        choices = _str_list(record.get("choices"), "choices", where)
    elif "instruction" in record:  # JoLA JSON lines / LLM-Adapters arrays / Alpaca-style
        question = _as_text(record["instruction"], "instruction", where)
        inp = record.get("input")
        if isinstance(inp, str) and inp.strip():
            question = f"{question}\n\n{inp}"
        meta = {k: v for k, v in record.items() if k not in ("instruction", "answer", "id")}
        choices = []
    else:
        raise DataError(f"{where}: missing field 'question' (or 'instruction')")
    if "answer" in record and record["answer"] is not None:
        answer = _as_text(record["answer"], "answer", where)
    elif "instruction" in record and isinstance(record.get("output"), str):
        answer = record["output"]  # Alpaca-style data without a separate label
    else:
        raise DataError(f"{where}: missing field 'answer'")
    if not question.strip():
        raise DataError(f"{where}: field 'question' is empty")
    if not answer.strip():
        raise DataError(f"{where}: field 'answer' is empty")
    references = record.get("references")
    references = _str_list(references, "references", where) if references is not None else ([] if choices else [answer])
    ident = record.get("id")
    ident = default_id if ident is None else _as_text(ident, "id", where)
    return {
        "id": ident,
        "question": question,
        "choices": choices,
        "answer": answer,
        "references": references,
        "meta": dict(meta),
    }


def _content_id(tag: str, index: int, record: Any) -> str:
    digest = hashlib.sha1(repr(record).encode("utf-8", "replace")).hexdigest()[:8]
    return f"{tag}-{index}-{digest}"


def _from_records(
    records: Sequence[tuple[int | None, Any]], source: str, tag: str
) -> tuple[list[Example], list[int] | None]:
    lines = [ln for ln, _ in records] if records and records[0][0] is not None else None
    examples = []
    for i, (_, rec) in enumerate(records):
        where = _where(source, i, lines)
        examples.append(_normalise(rec, where=where, default_id=_content_id(tag, i, rec)))
    return examples, lines


def _from_list(items: Sequence[Any]) -> list[Example]:
    source = "<list>"
    if items and all(isinstance(x, str) for x in items):  # the README's [prompt, answer, ...]
        if len(items) % 2:
            raise DataError(
                f"{source}: a flat list must alternate [prompt, answer, ...] but has odd length {len(items)}"
            )
        records = [{"question": items[i], "answer": items[i + 1]} for i in range(0, len(items), 2)]
    elif all(isinstance(x, Mapping) for x in items):
        records = list(items)
    else:
        raise DataError(f"{source}: expected a list of dicts or a flat list of strings [prompt, answer, ...]")
    examples, _ = _from_records([(None, r) for r in records], source, "list")
    return examples


def _split_file(folder: Path, split: str | None) -> Path | None:
    """The file of ``split`` (``train``/``valid``/``validation``/``test``...) in ``folder``, if any."""
    key = _SPLIT_ALIASES.get((split or "").lower())
    if key is None:
        return None
    for name in _SPLIT_FILES[key]:
        if (folder / name).is_file():
            return folder / name
    return None


def _available_splits(folder: Path) -> list[str]:
    return [k for k in _SPLIT_FILES if _split_file(folder, k) is not None]


def _looks_like_path(source: str) -> bool:
    return source.endswith((".json", ".jsonl")) or source.startswith((".", "/", "~"))


def _from_hub(name: str, split: str | None) -> tuple[list[Example], str]:
    """Load ``name`` with :func:`datasets.load_dataset`; any failure becomes a one-line DataError."""
    source = f"{name}[{split}]" if split else name
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, unknown name, bad split, missing script...
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (offline mode is on: use a local file or folder)" if offline else ""
        raise DataError(
            f"{name!r} is not a local file or folder, and loading it from the Hugging Face hub "
            f"failed{hint}: {type(e).__name__}: {reason}"
        ) from None
    if not hasattr(ds, "features"):  # a DatasetDict: no split was given
        names = sorted(ds.keys())
        if len(names) != 1:
            raise DataError(f"{name}: choose a split with split=... (one of {', '.join(names)})")
        source, ds = f"{name}[{names[0]}]", ds[names[0]]
    records = [(None, row) for row in ds]
    examples, _ = _from_records(records, source, name.replace("/", "_"))
    return examples, source


def load_examples(source: Any, split: str | None = None, *, task: str | None = None) -> list[Example]:
    """Load task examples from a file, folder, Python list or Hugging Face dataset, normalised.

    Args:
        source: one of
            * a ``.jsonl``/``.json`` file in our schema, JoLA's ``{"instruction","answer"}``
              JSON lines, or an LLM-Adapters JSON array (``instruction``/``input``/``output``/``answer``);
            * a folder holding ``train.jsonl``/``validation.jsonl``/``test.jsonl`` or JoLA's
              ``train.json``/``valid.json``/``test.json`` (``split`` chooses the file);
            * a list of dicts (any of those shapes) or a flat list ``[prompt, answer, ...]``;
            * a ``datasets.Dataset``; otherwise a Hugging Face dataset name.
        split: the split of a folder or hub dataset (``train``, ``valid``/``validation``, ``test``).
        task: a task name from :data:`TASK_LABELS` pinning the label set to check answers
            against (default: inferred from the data, see :func:`label_set`).

    The original formats carry no ``choices`` (``choices == []``); the option texts are
    recovered from the question by :func:`choices_of` when needed. An ``input`` field is
    appended to the instruction after a blank line. A missing ``id`` becomes
    ``"<file stem>-<index>-<hash>"``.

    Raises:
        DataError: malformed JSON, a missing or mistyped field, an empty split, an answer
            outside the label set (file and line named), or an unreachable hub dataset.

    Example:
        >>> import json, pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> rows = [{"instruction": "Q1 Answer format: true/false", "answer": "true"},
        ...         {"instruction": "Q2 Answer format: true/false", "answer": "false"}]
        >>> _ = (d / "train.json").write_text("\\n".join(json.dumps(r) for r in rows))
        >>> exs = load_examples(d, "train")
        >>> exs[1]["question"], exs[1]["answer"], exs[1]["choices"]
        ('Q2 Answer format: true/false', 'false', [])
    """
    lines: list[int] | None = None
    if isinstance(source, (list, tuple)):
        name = "<list>"
        examples = _from_list(source)
    elif hasattr(source, "features") and hasattr(source, "__iter__"):  # a datasets.Dataset
        name = "<dataset>"
        examples, _ = _from_records([(None, r) for r in source], name, "dataset")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            folder = path
            path = _split_file(folder, split)
            if path is None:
                have = ", ".join(_available_splits(folder)) or "none"
                raise DataError(
                    f"{folder}: no file for split {split!r} (splits found: {have}; expected names like "
                    "train.jsonl, validation.jsonl, test.jsonl or JoLA's train.json, valid.json, test.json)"
                )
        if path.is_file():
            name = str(path)
            examples, lines = _from_records(_read_records(path), name, path.stem)
        elif path.exists() or _looks_like_path(str(source)):
            raise DataError(f"{path}: no such file or folder")
        else:
            examples, name = _from_hub(str(source), split)
    else:
        raise DataError(f"cannot load examples from a {type(source).__name__}")
    if not examples:
        raise DataError(f"{name}: no examples (empty split)")
    validate_examples(examples, name, task=task, lines=lines)
    return examples


# ---- choices, labels, stems ----------------------------------------------------------------------

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


def validate_examples(
    examples: Sequence[Mapping[str, Any]],
    source_name: str,
    *,
    task: str | None = None,
    lines: Sequence[int] | None = None,
) -> list[str] | None:
    """Check that every gold answer is in the task's label set; return that set.

    Also checks that a label points at an existing option (``answer5`` with four choices).
    ``lines`` are the 1-based line numbers of the examples in ``source_name`` (as
    :func:`load_examples` passes them); without them errors name the 1-based example number.

    Raises:
        DataError: the first offending example, e.g. ``"train.jsonl, line 7: answer 'answer9' ..."``.

    Example:
        >>> exs = [{"question": "q", "choices": ["a", "b"], "answer": a} for a in ("answer1", "maybe")]
        >>> try:
        ...     validate_examples(exs, "toy.jsonl", lines=[1, 2])
        ... except DataError as e:
        ...     print(e)
        toy.jsonl, line 2: answer 'maybe' is not in the label set (answer1, answer2)
    """
    for i, ex in enumerate(examples):
        for key in ("question", "answer"):
            if not isinstance(ex.get(key), str):
                raise DataError(f"{_where(source_name, i, lines)}: field '{key}' must be a string")
    labels = label_set(examples, task=task)
    if labels is None:
        return None
    allowed = set(labels)
    for i, ex in enumerate(examples):
        answer = ex["answer"]
        if answer not in allowed:
            raise DataError(
                f"{_where(source_name, i, lines)}: answer {answer!r} is not in the label set ({', '.join(labels)})"
            )
        n = len(choices_of(ex))
        if n and gold_choice_index(ex) is None:
            raise DataError(f"{_where(source_name, i, lines)}: answer {answer!r} names none of the {n} choices")
    return labels


# ---- prompts and targets -------------------------------------------------------------------------

_SENTINEL = "JOLASENTINEL4821"


def end_of_turn(tokenizer: Any) -> str:
    """The text a chat template writes after an assistant message (``"<|im_end|>"`` for SmolLM2).

    Found by rendering a user + assistant exchange whose reply is a sentinel and taking what
    follows the sentinel up to the first newline; falls back to ``tokenizer.eos_token`` (or ``""``).

    Example:
        >>> class Toy:  # a stand-in with a ChatML-like template
        ...     eos_token = "</s>"
        ...     def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        ...         return "".join(f"<{m['role']}>{m['content']}<end>\\n" for m in messages)
        >>> end_of_turn(Toy())
        '<end>'
    """
    fallback = getattr(tokenizer, "eos_token", None) or ""
    if not hasattr(tokenizer, "apply_chat_template"):
        return fallback
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": _SENTINEL}], tokenize=False
        )
    except Exception:  # no template, or a template that rejects this exchange
        return fallback
    i = text.rfind(_SENTINEL)
    if i < 0:
        return fallback
    eot = text[i + len(_SENTINEL) :].split("\n", 1)[0]
    return eot if eot.strip() else fallback


def _check_style(style: str) -> None:
    if style not in PROMPT_STYLES:
        raise DataError(f"unknown prompt style {style!r}: use one of {', '.join(PROMPT_STYLES)}")


def format_prompt(example: Mapping[str, Any], tokenizer: Any = None, style: str = "chat") -> str:
    """The prompt text for ``example`` (the part that gets no loss).

    * ``"chat"``: the tokenizer's chat template with one user turn (the question) and the
      generation prompt; needs a tokenizer with a chat template;
    * ``"alpaca"``: :data:`ALPACA_TEMPLATE`, JoLA's exact prompt (``tokenizer`` unused);
    * ``"cloze"``: ``"Question: {stem}\\nAnswer:"`` with :func:`question_stem` (``tokenizer`` unused);
    * ``"qa"``: the cloze prompt with the options listed (``"Question: {stem}\\nOptions: a; b\\nAnswer:"``),
      meant for ``target="choice_text"``: the model answers with the option's text.

    Example:
        >>> ex = {"question": "Please choose the correct answer to the question: Sky colour?\\n\\n"
        ...       "Answer1: blue Answer2: green\\n\\nAnswer format: answer1/answer2"}
        >>> format_prompt(ex, style="cloze")
        'Question: Sky colour?\\nAnswer:'
        >>> format_prompt(ex, style="alpaca").endswith("answer1/answer2\\n\\n### Response:\\n")
        True

    With a real tokenizer (SmolLM2 adds its default system prompt)::

        format_prompt(ex, model.tokenizer, "chat")
        # '<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n'
    """
    _check_style(style)
    question = example["question"]
    if style == "alpaca":
        return ALPACA_TEMPLATE.format(instruction=question)
    if style == "cloze":
        return CLOZE_TEMPLATE.format(stem=question_stem(example))
    if style == "qa":
        options = "; ".join(c.strip() for c in choices_of(example))
        if not options:
            return CLOZE_TEMPLATE.format(stem=question_stem(example))
        return QA_TEMPLATE.format(stem=question_stem(example), options=options)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise DataError("style='chat' needs a tokenizer with a chat template (use style='alpaca' for base models)")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


def _target_text(example: Mapping[str, Any], target: str) -> str:
    if target not in TARGETS:
        raise DataError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
    if target == "label" or not _is_multiple_choice(example):
        return example["answer"]
    index = gold_choice_index(example)
    if index is None:
        raise DataError(f"example {example.get('id')!r}: answer {example['answer']!r} names no choice")
    return choices_of(example)[index].strip()


def format_target(
    example: Mapping[str, Any],
    tokenizer: Any = None,
    style: str = "chat",
    target: str = "label",
    *,
    add_eos: bool = False,
) -> str:
    """The text the loss is computed on.

    ``target="label"`` is the gold label (``"answer2"``, ``"true"``, ``"C"``, or the answer
    of a generation example); ``"choice_text"`` is the text of the gold option (stripped;
    the answer for generation examples). Style
    ``"chat"`` appends :func:`end_of_turn`; ``"cloze"`` puts a space before the text;
    ``"alpaca"`` appends nothing (as JoLA's code). ``add_eos`` appends ``tokenizer.eos_token``
    for ``"alpaca"``/``"cloze"``.

    Example:
        >>> ex = {"question": "q", "choices": ["blue", "green"], "answer": "answer1"}
        >>> format_target(ex, None, "alpaca"), format_target(ex, None, "cloze", "choice_text")
        ('answer1', ' blue')

    With SmolLM2's tokenizer::

        format_target(ex, model.tokenizer, "chat")        # 'answer1<|im_end|>'
    """
    _check_style(style)
    text = _target_text(example, target)
    if style == "chat":
        return text + end_of_turn(tokenizer)
    if style in ("cloze", "qa") and not text[:1].isspace():
        text = " " + text
    if add_eos:
        eos = getattr(tokenizer, "eos_token", None)
        if not eos:
            raise DataError("add_eos=True needs a tokenizer with an eos_token")
        text += eos
    return text


# ---- tokenisation --------------------------------------------------------------------------------


def _encode_many(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _bos(tokenizer: Any, prepend_bos: bool) -> list[int]:
    if not prepend_bos:
        return []
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise DataError("prepend_bos=True but the tokenizer has no bos_token_id")
    return [int(bos)]


def _assemble(prompt_ids: list[int], target_ids: list[int], bos: list[int], max_length: int) -> dict[str, list[int]]:
    if not target_ids:
        raise DataError("the target is empty after tokenisation")
    room = max_length - len(bos) - len(target_ids)
    if room < 0:
        raise DataError(
            f"the target alone is {len(target_ids)} tokens{' (+1 BOS)' if bos else ''}, "
            f"more than max_length={max_length}"
        )
    if len(prompt_ids) > room:  # keep the end of the prompt: it holds the question and the reply marker
        prompt_ids = prompt_ids[len(prompt_ids) - room :]
    context = bos + prompt_ids
    return {"input_ids": context + target_ids, "labels": [IGNORE_INDEX] * len(context) + list(target_ids)}


def tokenize_pair(
    prompt: str, target: str, tokenizer: Any, *, max_length: int = 400, prepend_bos: bool = False
) -> dict[str, list[int]]:
    """Token ids of ``prompt + target`` with labels on the target tokens only.

    Prompt and target are tokenised separately (``add_special_tokens=False``), so the prompt
    tokens equal those of the prompt alone at generation time. A too-long prompt loses
    tokens on the left (after the BOS if ``prepend_bos``); the target is never cut.

    Raises:
        DataError: the target alone (plus BOS) is longer than ``max_length``, or is empty.

    Example:
        >>> class Chars:  # a stand-in tokenizer: one id per character
        ...     bos_token_id = 0
        ...     def __call__(self, texts, add_special_tokens=False):
        ...         return {"input_ids": [[ord(c) for c in t] for t in texts]}
        >>> tokenize_pair("Q:", "yes", Chars(), prepend_bos=True)
        {'input_ids': [0, 81, 58, 121, 101, 115], 'labels': [-100, -100, -100, 121, 101, 115]}
        >>> tokenize_pair("long prompt", "ok", Chars(), max_length=4)["input_ids"]
        [112, 116, 111, 107]
    """
    prompt_ids, target_ids = _encode_many(tokenizer, [prompt, target])
    return _assemble(prompt_ids, target_ids, _bos(tokenizer, prepend_bos), max_length)


def tokenize_examples(
    examples: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    *,
    style: str = "chat",
    target: str = "label",
    max_length: int = 400,
    prepend_bos: bool = False,
    add_eos: bool = False,
) -> list[dict[str, Any]]:
    """Tokenise examples once for training: ``id``, ``input_ids``, ``labels``, ``length`` each.

    Uses :func:`format_prompt`, :func:`format_target` and the rules of :func:`tokenize_pair`
    (batched). Warns once if any prompt had to be truncated.

    Example (SmolLM2)::

        rows = tokenize_examples(exs, model.tokenizer, style="chat", target="label")
        rows[0]["length"], sum(l != -100 for l in rows[0]["labels"])   # (..., 3): "answer", "2", "<|im_end|>"
    """
    prompts = [format_prompt(ex, tokenizer, style) for ex in examples]
    targets = [format_target(ex, tokenizer, style, target, add_eos=add_eos) for ex in examples]
    if not prompts:
        return []
    prompt_ids = _encode_many(tokenizer, prompts)
    target_ids = _encode_many(tokenizer, targets)
    bos = _bos(tokenizer, prepend_bos)
    rows, truncated = [], 0
    for ex, p, t in zip(examples, prompt_ids, target_ids):
        try:
            pair = _assemble(p, t, bos, max_length)
        except DataError as e:
            raise DataError(f"example {ex.get('id')!r}: {e}") from None
        truncated += len(pair["input_ids"]) < len(bos) + len(p) + len(t)
        rows.append({"id": ex.get("id"), **pair, "length": len(pair["input_ids"])})
    if truncated:
        warnings.warn(f"{truncated} of {len(rows)} prompts were cut on the left to fit max_length={max_length}")
    return rows


class TokenizedDataset(torch.utils.data.Dataset):
    """A map-style dataset of :func:`tokenize_examples` rows (tokenised once, at construction).

    Example (SmolLM2)::

        ds = TokenizedDataset(exs, model.tokenizer, style="chat")
        batches = length_grouped_batches(ds.lengths, batch_size=8, seed=0)
        batch = make_data_collator(model.tokenizer)([ds[i] for i in batches[0]])
    """

    def __init__(self, examples: Sequence[Mapping[str, Any]], tokenizer: Any, **kwargs: Any) -> None:
        self.rows = tokenize_examples(examples, tokenizer, **kwargs)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    @property
    def lengths(self) -> list[int]:
        """Token count of every row (for :func:`length_grouped_batches`)."""
        return [r["length"] for r in self.rows]


# ---- collation and batching ----------------------------------------------------------------------


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


def make_data_collator(
    tokenizer: Any = None,
    pad_token_id: int | None = None,
    response_template: str | Sequence[int] | None = None,
    mlm: bool = False,
    **kwargs: Any,
) -> DataCollator:
    """A :class:`DataCollator` (the original ``jola.make_data_collator`` name and keywords).

    Args:
        tokenizer: gives the pad id (``pad_token_id``, else ``eos_token_id``) and encodes
            ``response_template``.
        pad_token_id: the pad id to write (its value never affects masks or labels); default 0
            without a tokenizer.
        response_template: only for rows without ``labels``: tokens up to and including
            its last occurrence get label -100 (JoLA used ``"### Response:\\n"``).
        mlm: must be False (JoLA trains causal LMs).
        kwargs: ``pad_to_multiple_of`` is honoured; other keywords of the original
            (e.g. ``instruction_template``) are accepted and ignored.

    Example:
        >>> collate = make_data_collator(pad_token_id=2)
        >>> b = collate([{"input_ids": [5, 6, 2], "labels": [-100, 6, 2]}, {"input_ids": [7], "labels": [7]}])
        >>> b["input_ids"].tolist(), b["attention_mask"].tolist(), b["labels"].tolist()
        ([[5, 6, 2], [7, 2, 2]], [[1, 1, 1], [1, 0, 0]], [[-100, 6, 2], [7, -100, -100]])
    """
    if mlm:
        raise DataError("mlm=True is not supported: JoLA trains causal language models")
    if pad_token_id is None and tokenizer is not None:
        pad_token_id = getattr(tokenizer, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "eos_token_id", None)
    template_ids: list[int] | None = None
    if response_template is not None:
        if isinstance(response_template, str):
            if tokenizer is None:
                raise DataError("a string response_template needs a tokenizer to encode it")
            template_ids = _encode_many(tokenizer, [response_template])[0]
        else:
            template_ids = [int(t) for t in response_template]
    return DataCollator(
        pad_token_id=int(pad_token_id or 0),
        response_template_ids=template_ids,
        pad_to_multiple_of=kwargs.get("pad_to_multiple_of"),
    )


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


# ---- splits --------------------------------------------------------------------------------------


def sample_subset(examples: Sequence[Example], n: int | None, seed: int = 0) -> list[Example]:
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


class _Seen:
    """Ids and whitespace-normalised question texts of a set of examples."""

    def __init__(self, examples: Iterable[Mapping[str, Any]] = ()) -> None:
        self.ids: set[str] = set()
        self.texts: set[str] = set()
        self.add(examples)

    def add(self, examples: Iterable[Mapping[str, Any]]) -> None:
        for ex in examples:
            self.ids.add(ex["id"])
            self.texts.add(_text_key(ex["question"]))

    def __contains__(self, ex: Mapping[str, Any]) -> bool:
        return ex["id"] in self.ids or _text_key(ex["question"]) in self.texts


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
    seen_test = _Seen(test)
    pool = [ex for ex in examples_train if ex not in seen_test]
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
    seen_train = _Seen(train)
    if examples_valid is not None:
        candidates = [ex for ex in examples_valid if ex not in seen_train and ex not in seen_test]
        valid = sample_subset(candidates, valid_size, seed)
    else:
        rest = [i for i in order[n_train:] if pool[i] not in seen_train]
        valid = [pool[i] for i in sorted(rest[:valid_size])]
    if valid_size > 0 and not valid:
        raise DataError(
            f"the validation split is empty: {len(train)} training examples left none for validation "
            "(lower train_size or give a validation split)"
        )
    return TaskData(train=train, valid=valid, test=test)


def _default_data_roots() -> list[Path]:
    roots = []
    env = os.environ.get("JOLA_LENS_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path.cwd() / "data")
    roots.append(Path(__file__).resolve().parents[2] / "shared" / "data")  # the development layout
    return roots


def _resolve_task_dir(name_or_dir: str | os.PathLike, data_root: str | os.PathLike | None) -> Path:
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    roots = [Path(data_root).expanduser()] if data_root is not None else _default_data_roots()
    name = str(name_or_dir)
    wanted = _TASK_ALIASES.get(_task_key(name), name)
    for root in roots:
        if (root / wanted).is_dir():
            return root / wanted
        if root.is_dir():  # case-, dash- and underscore-insensitive match of a top-level folder
            for child in sorted(root.iterdir()):
                if child.is_dir() and _task_key(child.name) == _task_key(wanted):
                    return child
    raise DataError(
        f"task {name!r} not found: no such folder, nor under {', '.join(map(str, roots))} "
        "(pass a folder path or data_root=..., or set JOLA_LENS_DATA)"
    )


def _task_for_labels(folder: Path) -> str | None:
    """The :data:`TASK_LABELS` name of a task folder (``mmlu_pro/<domain>`` -> ``mmlu_pro``), if any."""
    for name in (folder.name, folder.parent.name):
        canonical = _TASK_ALIASES.get(_task_key(name), name)
        if _task_key(canonical) in TASK_LABELS:
            return canonical
    return None


def load_task(
    name_or_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    train_size: int | None = 200,
    valid_size: int = 200,
    test_size: int | None = None,
    seed: int = 42,
    test_seed: int = 0,
) -> TaskData:
    """Load a task folder (``train.jsonl``, ``test.jsonl``, optional ``validation.jsonl``) as splits.

    ``name_or_dir`` is a folder, or a folder name under ``data_root`` (default: ``$JOLA_LENS_DATA``,
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
    folder = _resolve_task_dir(name_or_dir, data_root)
    task = _task_for_labels(folder)
    files = {split: _split_file(folder, split) for split in _SPLIT_FILES}
    loaded = {split: load_examples(f, task=task) for split, f in files.items() if f is not None}
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
        used = _Seen(data.train + data.valid)
        data.test = [ex for ex in test_split if ex not in used]
        if not data.test:
            raise DataError(f"{folder}: no test examples left after carving train and validation")
    data.test = sample_subset(data.test, test_size, test_seed)
    data.name = folder.name if folder.parent.name != "mmlu_pro" else f"mmlu_pro/{folder.name}"
    data.labels = label_set(data.train + data.test, task=task)
    return data


# ---- the original package's dataset class --------------------------------------------------------


class JoLADataset:
    """Compatibility with the original ``jola.JoLADataset`` (normalised example lists, not HF Datasets).

    ``train_size`` examples of train (and of valid) are sampled with ``random.Random(seed)``
    (the original used the unseeded global ``random``); ``train_size`` 0 or ``None`` keeps all.

    Example:
        >>> ds = JoLADataset(from_list=True, train_list=["2+2?", "4", "3+3?", "6"], train_size=1)
        >>> [e["answer"] for e in ds.data_from_list()["train"]]
        ['4']
    """

    def __init__(
        self,
        from_list: bool = False,
        data_path: str | os.PathLike | None = None,
        train_size: int | None = 200,
        train_list: Sequence[Any] | None = None,
        *,
        seed: int = 42,
    ) -> None:
        self.from_list = from_list
        self.data_path = data_path
        self.train_size = train_size
        self.train_list = train_list
        self.seed = seed

    def _sample(self, examples: list[Example]) -> list[Example]:
        return sample_subset(examples, self.train_size or None, self.seed)

    def data_from_file(self) -> dict[str, list[Example]]:
        """``{"train", "valid", "test"}`` from ``data_path`` (only the splits that exist; train required)."""
        if self.data_path is None or not Path(self.data_path).is_dir():
            raise DataError(f"data_path {self.data_path!r} is not a folder")
        folder = Path(self.data_path)
        out: dict[str, list[Example]] = {}
        for key in ("train", "valid", "test"):
            f = _split_file(folder, key)
            if f is not None:
                out[key] = load_examples(f)
        if "train" not in out:
            have = ", ".join(_available_splits(folder)) or "none"
            raise DataError(f"{folder}: no train split (expected train.json or train.jsonl; found: {have})")
        out["train"] = self._sample(out["train"])
        if "valid" in out:
            out["valid"] = self._sample(out["valid"])
        return out

    def data_from_list(self) -> dict[str, list[Example]]:
        """``{"train": ...}`` from ``train_list``: a list of dicts or a flat ``[prompt, answer, ...]`` list."""
        if self.train_list is None:
            raise DataError("JoLADataset.data_from_list needs train_list")
        return {"train": self._sample(load_examples(list(self.train_list)))}
