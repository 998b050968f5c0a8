"""The normalised example schema, :class:`DataError`, record normalisation and validation.

One normalised example is a dict with the keys of ``shared/data`` (see its README)::

    {"id": str, "question": str, "choices": [str, ...], "answer": str,
     "references": [str, ...], "meta": {...}}

Records of the other supported shapes (the original JoLA ``{"instruction", "answer"}`` lines,
LLM-Adapters / Alpaca ``instruction``/``input``/``output``) are normalised to it; every problem
raises :class:`DataError`, whose message names the file and the 1-based line where there is one.

Example:
    >>> from jola_lens.tasks.schema import validate_examples
    >>> validate_examples([{"question": "q", "choices": ["a", "b"], "answer": "answer2"}], "toy")
    ['answer1', 'answer2']
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

from .choices import choices_of, gold_choice_index, label_set

__all__ = ["DataError", "DataNote", "Example", "note", "validate_examples"]


#: One normalised example (the keys of the module docstring).
Example = dict[str, Any]


class DataError(ValueError):
    """Bad task data; the message says what is wrong and where (file and 1-based line if any).

    Example:
        >>> from jola_lens.tasks import load_examples
        >>> try:
        ...     load_examples(["a prompt without an answer"])
        ... except DataError as e:
        ...     print(e)
        <list>: a flat list must alternate [prompt, answer, ...] but has odd length 1

    ``fit``: for data too small for the sizes asked, the sizes that would fit (``{"train_size": 10, ...}``),
    which :func:`jola_lens.tasks.spec.fit_task_data` uses in place of the sizes a user did not set.
    """

    def __init__(self, message: str, fit: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.fit = fit or {}


class DataNote(UserWarning):
    """A one-line note about the data that changed what is used: rows dropped (overlapping the test
    split), de-duplicated, carved into other splits, or prompts cut to fit. Issued with
    :func:`warnings.warn`; ``jola-lens`` prints it as ``jola-lens: note: ...``; silence it with
    ``warnings.simplefilter("ignore", DataNote)``."""


def note(message: str) -> None:
    """Issue ``message`` as a :class:`DataNote`."""
    import warnings

    warnings.warn(message, DataNote, stacklevel=3)


_SCHEMA_KEYS = ("id", "question", "choices", "answer", "references", "meta")


def _where(source: str, index: int, lines: Sequence[int] | None) -> str:
    """``"file, line N"`` when the line is known, else ``"source, example N"`` (1-based)."""
    if lines is not None and index < len(lines):
        return f"{source}, line {lines[index]}"
    return f"{source}, example {index + 1}"


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
    if "question" not in record and "instruction" not in record:
        # the other common shapes: prompt/completion (OpenAI, TRL), input/output, prompt/answer
        for q_key, a_keys in (("prompt", ("completion", "answer", "output")), ("input", ("output", "answer"))):
            if q_key in record:
                a_key = next((k for k in a_keys if k in record), None)
                if a_key is None:
                    raise DataError(f"{where}: has '{q_key}' but no answer field ({' / '.join(a_keys)})")
                record = {**{k: v for k, v in record.items() if k not in (q_key, a_key)},
                          "question": record[q_key], "answer": record[a_key]}
                break
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
    raw_answer = record.get("answer")
    if choices and isinstance(raw_answer, int) and not isinstance(raw_answer, bool):
        # an integer answer with options is a 0-based option index (the Hugging Face datasets convention)
        if not 0 <= raw_answer < len(choices):
            raise DataError(f"{where}: answer index {raw_answer} is out of range for {len(choices)} choices "
                            f"(integer answers are 0-based option indices)")
        answer = f"answer{raw_answer + 1}"
    elif "answer" in record and record["answer"] is not None:
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
    _note_duplicates(examples, source_name, lines)
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


def _note_duplicates(examples: Sequence[Mapping[str, Any]], source_name: str, lines: Sequence[int] | None) -> None:
    """One :class:`DataNote` for questions with two identical options (likelihood ties go to the first of
    them: the real ARC and OpenBookQA files have a few), one for ids that repeat within the source."""
    dup_options = []
    for i, ex in enumerate(examples):
        texts = [" ".join(str(c).split()) for c in ex.get("choices") or []]
        if len(set(texts)) < len(texts):
            dup_options.append(i)
    if dup_options:
        i = dup_options[0]
        texts = [" ".join(str(c).split()) for c in examples[i]["choices"]]
        twice = next(t for t in texts if texts.count(t) > 1)
        note(f"{source_name}: {len(dup_options)} question(s) have two identical options (first: "
             f"{_where(source_name, i, lines).split(', ', 1)[-1]}, {twice!r}); they are kept, and a tie between "
             "the copies is scored as the first of them")
    ids = [ex.get("id") for ex in examples if ex.get("id") is not None]
    distinct = len(set(ids))
    if distinct < len(ids):
        note(f"{source_name}: ids are not unique ({distinct} distinct ids in {len(ids)} rows): splits are kept "
             "apart by question text only")

