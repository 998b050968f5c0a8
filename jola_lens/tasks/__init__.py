"""Task data for JoLA: loading, label sets, prompts, answer-only tokenisation, batching, splits.

The modules, in the order data flows through them:

* :mod:`~jola_lens.tasks.io`: :func:`load_examples` reads JSON-lines files in our schema, the
  original JoLA ``{"instruction", "answer"}`` JSON lines, LLM-Adapters JSON arrays, Python lists,
  split folders and (online) Hugging Face datasets; :func:`resolve_task_dir` finds a task folder;
  :data:`DEMO_DATA` is the bundled ARC-Easy sample;
* :mod:`~jola_lens.tasks.schema`: the normalised example (``id``, ``question``, ``choices``,
  ``answer``, ``references``, ``meta``), :class:`DataError` (its message names the file and the
  1-based line where there is one) and :func:`validate_examples`;
* :mod:`~jola_lens.tasks.choices`: options, label sets, gold indices, question stems;
* :mod:`~jola_lens.tasks.prompts`: the prompt styles (:data:`PromptFormat`,
  :data:`DEFAULT_PROMPT_STYLE`), prompts, targets and the option continuation;
* :mod:`~jola_lens.tasks.tokenize`: prompt and target tokenised **separately**, so the loss covers
  exactly the target tokens (the answer, plus the chat end-of-turn marker for ``style="chat"``)
  and the prompt tokens are the ones the model sees at generation time;
* :mod:`~jola_lens.tasks.batching`: the collator and length-grouped batches;
* :mod:`~jola_lens.tasks.splits`: seeded, disjoint train / validation / test splits and :func:`load_task`.

The original ``jola`` package's ``JoLADataset`` and ``make_data_collator`` are in :mod:`jola_lens.compat`.

Example:
    >>> from jola_lens.tasks import load_examples, label_set, format_prompt, format_target
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

from .choices import TASK_LABELS, choices_of, gold_choice_index, label_set, parse_choices, question_stem
from .io import DEMO_DATA, load_examples, resolve_task_dir
from .prompts import (
    ALPACA_TEMPLATE,
    CLOZE_TEMPLATE,
    DEFAULT_PROMPT_STYLE,
    PROMPT_STYLES,
    QA_TEMPLATE,
    RESPONSE_TEMPLATE,
    TARGETS,
    PromptFormat,
    answer_lead,
    end_of_turn,
    format_prompt,
    format_target,
    option_continuation,
)
from .schema import DataError, DataNote, Example, validate_examples
from .splits import SeenExamples, TaskData, load_task, make_splits, sample_subset

# The tokenising and batching names need torch: they load on first use (PEP 562), so reading and checking
# data (``load_task``, ``load_examples``, ``DataError``) stays torch-free and fast.
_LAZY = {"DataCollator": "batching", "length_grouped_batches": "batching", "IGNORE_INDEX": "tokenize",
         "TokenizedDataset": "tokenize", "tokenize_examples": "tokenize", "tokenize_pair": "tokenize"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ALPACA_TEMPLATE",
    "CLOZE_TEMPLATE",
    "DEFAULT_PROMPT_STYLE",
    "DEMO_DATA",
    "IGNORE_INDEX",
    "PROMPT_STYLES",
    "QA_TEMPLATE",
    "RESPONSE_TEMPLATE",
    "TARGETS",
    "TASK_LABELS",
    "DataCollator",
    "DataError",
    "DataNote",
    "Example",
    "PromptFormat",
    "SeenExamples",
    "TaskData",
    "TokenizedDataset",
    "answer_lead",
    "choices_of",
    "end_of_turn",
    "format_prompt",
    "format_target",
    "gold_choice_index",
    "label_set",
    "length_grouped_batches",
    "load_examples",
    "load_task",
    "make_splits",
    "option_continuation",
    "parse_choices",
    "question_stem",
    "resolve_task_dir",
    "sample_subset",
    "tokenize_examples",
    "tokenize_pair",
    "validate_examples",
]
