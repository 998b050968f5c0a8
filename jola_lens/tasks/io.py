"""Reading task data: JSON-lines / JSON-array files, split folders, Python lists, hub datasets, task folders.

:func:`load_examples` reads one split into normalised examples (see :mod:`jola_lens.tasks.schema`);
:func:`resolve_task_dir` finds a task folder by name under the data roots (``$JOLA_LENS_DATA``,
``./data``, ``../shared/data`` beside the repository). :data:`DEMO_DATA` is the ARC-Easy sample
shipped with the package.

Example:
    >>> from jola_lens.tasks.io import DEMO_DATA, load_examples
    >>> sorted(p.name for p in DEMO_DATA.glob("*.jsonl"))
    ['test.jsonl', 'train.jsonl', 'valid.jsonl']
    >>> len(load_examples(DEMO_DATA, "valid"))
    200
"""

from __future__ import annotations

import bisect
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from .choices import TASK_LABELS, _task_key
from .schema import DataError, Example, _content_id, _normalise, _where, validate_examples

__all__ = ["DEMO_DATA", "load_examples", "resolve_task_dir"]

#: The ARC-Easy sample shipped with the package (``train``/``valid``/``test.jsonl``: 200/200/300).
DEMO_DATA = Path(__file__).resolve().parent.parent / "assets" / "arc_easy"

_SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train.jsonl", "train.json"),
    "validation": ("validation.jsonl", "valid.jsonl", "valid.json", "validation.json", "dev.jsonl", "dev.json"),
    "test": ("test.jsonl", "test.json"),
}
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
                  "dev": "validation", "test": "test"}
_TASK_ALIASES = {"arce": "ARC-Easy", "arcc": "ARC-Challenge", "obqa": "openbookqa", "e2e": "e2e_nlg",
                 "commongen": "common_gen"}


# ---- reading files -------------------------------------------------------------------------------


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


def _read_csv(path: Path, text: str) -> list[tuple[int, Any]]:
    """Rows of a CSV / TSV file with a header line, as dicts, with their 1-based line numbers.

    A ``choices`` cell is a JSON list (``["a", "b"]``) or texts separated by ``|``; an ``answer``
    cell of digits, in a row with choices and naming none of them, is a 0-based option index.
    """
    import csv
    import io

    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    if not reader.fieldnames:
        raise DataError(f"{path}: a CSV file needs a header line naming its columns")
    rows = []
    start = 2
    for row in reader:
        line = start
        start = reader.line_num + 1
        if None in row:
            raise DataError(f"{path}, line {line}: more cells than the header has columns")
        rows.append((line, {k: v for k, v in row.items() if k is not None and v not in (None, "")}))
    return rows


def _csv_cells(rec: dict[str, Any], where: str) -> dict[str, Any]:
    """A CSV row (named by our fields) with its ``choices`` cell split and a digit answer made an index."""
    rec = dict(rec)
    cell = rec.get("choices")
    if isinstance(cell, str):
        if cell.strip().startswith("["):
            try:
                rec["choices"] = json.loads(cell)
            except ValueError:
                raise DataError(f"{where}: the choices cell is not a JSON list") from None
        else:
            rec["choices"] = [c.strip() for c in cell.split("|")]
    ans = rec.get("answer")
    if isinstance(ans, str) and ans.strip().isdigit() and rec.get("choices") and ans not in rec["choices"]:
        rec["answer"] = int(ans)
    return _answer_text_to_label(rec)


def _answer_text_to_label(rec: Any) -> Any:
    """Your data (a CSV, or fields given): an answer that is one of the row's option texts becomes that
    option's label (``answerN``). Not for the benchmark files, whose label sets are fixed by task (BoolQ's
    answers are the texts true / false)."""
    if not isinstance(rec, Mapping):
        return rec
    choices, ans = rec.get("choices"), rec.get("answer")
    if isinstance(choices, list) and isinstance(ans, str) and not ans.lower().startswith("answer"):
        stripped = [str(c).strip() for c in choices]
        if ans.strip() in stripped:
            return {**rec, "answer": f"answer{stripped.index(ans.strip()) + 1}"}
    return rec


def _read_records(path: Path) -> list[tuple[int, Any]]:
    """Raw records of a ``.jsonl``/``.json`` file (JSON lines, or one JSON array of objects) or of a
    ``.csv`` / ``.tsv`` file with a header line."""
    text = _read_text(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return _read_csv(path, text)
    if text.lstrip()[:1] == "[":
        return _read_json_array(path, text)
    return _read_json_lines(path, text)


# ---- records -> examples ----------------------------------------------------------------------


_FIELD_NAMES = ("question", "answer", "choices", "id")


def _rename(rec: Any, fields: Mapping[str, str] | None, where: str) -> Any:
    """``rec`` with the user's column names (``fields``: our name -> theirs) turned into ours."""
    if not fields or not isinstance(rec, Mapping):
        return rec
    out = {k: v for k, v in rec.items() if k not in fields.values()}
    for ours, theirs in fields.items():
        if theirs in rec:
            out[ours] = rec[theirs]
        elif ours in ("question", "answer"):
            have = ", ".join(sorted(map(str, rec))) or "none"
            raise DataError(f"{where}: no field {theirs!r} (given as the {ours} field; fields here: {have})")
    return out


def _from_records(
    records: Sequence[tuple[int | None, Any]], source: str, tag: str, fields: Mapping[str, str] | None = None,
    csv_cells: bool = False,
) -> tuple[list[Example], list[int] | None]:
    lines = [ln for ln, _ in records] if records and records[0][0] is not None else None
    examples = []
    for i, (_, rec) in enumerate(records):
        where = _where(source, i, lines)
        rec = _rename(rec, fields, where)
        if csv_cells:
            rec = _csv_cells(rec, where)
        elif fields:
            rec = _answer_text_to_label(rec)
        examples.append(_normalise(rec, where=where, default_id=_content_id(tag, i, rec)))
    return examples, lines


def _from_list(items: Sequence[Any], fields: Mapping[str, str] | None = None) -> list[Example]:
    source = "<list>"
    if items and all(isinstance(x, str) for x in items):  # the README's [prompt, answer, ...]
        if len(items) % 2:
            raise DataError(
                f"{source}: a flat list must alternate [prompt, answer, ...] but has odd length {len(items)}"
            )
        records = [{"question": items[i], "answer": items[i + 1]} for i in range(0, len(items), 2)]
    elif items and all(isinstance(x, (tuple, list)) for x in items):  # [(prompt, answer), ...]
        bad = next((i for i, x in enumerate(items) if len(x) != 2), None)
        if bad is not None:
            raise DataError(f"{source}, example {bad + 1}: a pair must be (prompt, answer), "
                            f"got {len(items[bad])} items")
        records = [{"question": q, "answer": a} for q, a in items]
    elif all(isinstance(x, Mapping) for x in items):
        records = list(items)
    else:
        raise DataError(f"{source}: expected a list of dicts, of (prompt, answer) pairs, or a flat list of strings "
                        "[prompt, answer, ...]")
    examples, _ = _from_records([(None, r) for r in records], source, "list", fields)
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


def load_examples(source: Any, split: str | None = None, *, task: str | None = None,
                  fields: Mapping[str, str] | None = None) -> list[Example]:
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
        fields: your field (column) names for ours, e.g. ``{"question": "text", "answer": "label",
            "choices": "options"}``. Without it ``question``/``answer``, ``prompt``/``completion``,
            ``input``/``output`` and ``instruction``/``answer`` are recognised.

    Answers are texts, labels (``answer2``) or, with choices, 0-based option indices (``1``). A CSV
    or TSV file needs a header line; its ``choices`` cell is a JSON list or texts separated by ``|``.

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
    if isinstance(source, Mapping) and source and all(hasattr(v, "features") for v in source.values()):
        names = sorted(source)  # a datasets.DatasetDict
        want = {"valid": "validation"}.get(split, split) if split else (names[0] if len(names) == 1 else None)
        if want not in source:
            raise DataError(f"<DatasetDict>: choose a split with split=... (one of {', '.join(names)})"
                            + (f"; {split!r} is not one" if split else ""))
        source = source[want]
    if isinstance(source, (list, tuple)):
        name = "<list>"
        examples = _from_list(source, fields)
    elif hasattr(source, "features") and hasattr(source, "__iter__"):  # a datasets.Dataset
        name = "<dataset>"
        examples, _ = _from_records([(None, r) for r in source], name, "dataset", fields)
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
            examples, lines = _from_records(_read_records(path), name, path.stem, fields,
                                            csv_cells=path.suffix.lower() in (".csv", ".tsv"))
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


# ---- task folders ------------------------------------------------------------------------------


def _default_data_roots() -> list[Path]:
    roots = []
    env = os.environ.get("JOLA_LENS_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path.cwd() / "data")
    roots.append(Path(__file__).resolve().parents[3] / "shared" / "data")  # the development layout
    return roots


def resolve_task_dir(name_or_dir: str | os.PathLike, data_root: str | os.PathLike | None = None) -> Path:
    """The folder of a task: ``name_or_dir`` itself if it is a folder, else a folder of that name under a data root.

    The roots are ``data_root`` alone when given, else ``$JOLA_LENS_DATA``, ``./data`` and
    ``../shared/data`` beside the repository, in that order. Names match case-, ``-`` and
    ``_``-insensitively, and the short names ``arce``, ``arcc``, ``obqa``, ``e2e``, ``commongen``
    are understood (``"arc_easy"`` finds ``ARC-Easy``).

    Raises:
        DataError: no such folder under any root.

    Example:
        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "ARC-Easy").mkdir()
        >>> resolve_task_dir("arc_easy", root).name, resolve_task_dir("arce", root).name
        ('ARC-Easy', 'ARC-Easy')
        >>> resolve_task_dir(root / "ARC-Easy") == root / "ARC-Easy"
        True
    """
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


#: The first release's private name of :func:`resolve_task_dir`.
_resolve_task_dir = resolve_task_dir


def _task_for_labels(folder: Path) -> str | None:
    """The :data:`TASK_LABELS` name of a task folder (``mmlu_pro/<domain>`` -> ``mmlu_pro``), if any."""
    for name in (folder.name, folder.parent.name):
        canonical = _TASK_ALIASES.get(_task_key(name), name)
        if _task_key(canonical) in TASK_LABELS:
            return canonical
    return None
