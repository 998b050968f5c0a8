"""Kept for old imports: ``jola_lens.data`` is now the package :mod:`jola_lens.tasks`.

Every name this module had (public, and the private ones other code imported) is re-exported
from where it lives now: :mod:`jola_lens.tasks` (``io``, ``schema``, ``choices``, ``prompts``,
``tokenize``, ``batching``, ``splits``) and, for the original ``jola`` package's
``JoLADataset`` and ``make_data_collator``, :mod:`jola_lens.compat`. New code should import
from those.

Example:
    >>> from jola_lens import data, tasks
    >>> data.load_examples is tasks.load_examples and data._Seen is tasks.SeenExamples
    True
"""

# ruff: noqa: F401  (this module only re-exports)
from __future__ import annotations

from .compat import JoLADataset, make_data_collator
from .tasks.batching import DataCollator, _as_ids, _find_last, length_grouped_batches
from .tasks.choices import (
    _FORMAT_RE,
    _INDEXED_RE,
    _LETTERS,
    _OPTIONS_START_RE,
    _STEM_END_RE,
    _STEM_PREFIX_RE,
    TASK_LABELS,
    _answer_format,
    _is_multiple_choice,
    _label_kind,
    _sequential_options,
    _task_key,
    choices_of,
    gold_choice_index,
    label_set,
    parse_choices,
    question_stem,
)
from .tasks.io import (
    _SPLIT_ALIASES,
    _SPLIT_FILES,
    _TASK_ALIASES,
    _available_splits,
    _default_data_roots,
    _from_hub,
    _from_list,
    _from_records,
    _looks_like_path,
    _read_json_array,
    _read_json_lines,
    _read_records,
    _read_text,
    _resolve_task_dir,
    _split_file,
    _task_for_labels,
    load_examples,
)
from .tasks.prompts import (
    _SENTINEL,
    ALPACA_TEMPLATE,
    CLOZE_TEMPLATE,
    PROMPT_STYLES,
    QA_TEMPLATE,
    RESPONSE_TEMPLATE,
    TARGETS,
    _check_style,
    _target_text,
    end_of_turn,
    format_prompt,
    format_target,
)
from .tasks.schema import (
    _SCHEMA_KEYS,
    DataError,
    Example,
    _as_text,
    _content_id,
    _normalise,
    _str_list,
    _where,
    validate_examples,
)
from .tasks.splits import TaskData, _Seen, _text_key, load_task, make_splits, sample_subset
from .tasks.tokenize import (
    IGNORE_INDEX,
    TokenizedDataset,
    _assemble,
    _bos,
    _encode_many,
    tokenize_examples,
    tokenize_pair,
)

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
