"""Prompt formats, training targets and the option continuation: one definition of each.

A prompt style (:data:`PromptFormat`) decides the prompt text (:func:`format_prompt`), the target
text the loss is computed on (:func:`format_target`) and how an option's text follows the prompt
when it is scored (:func:`option_continuation`). :data:`DEFAULT_PROMPT_STYLE` is the default of
every function (and of :class:`jola_lens.experiment.TaskSpec`) that takes a style.

Example:
    >>> from jola_lens.tasks.prompts import format_prompt, format_target, option_continuation
    >>> ex = {"question": "Sky colour?", "choices": ["blue", "green"], "answer": "answer1"}
    >>> format_prompt(ex), format_target(ex, target="choice_text"), option_continuation(" blue ", "cloze")
    ('Question: Sky colour?\\nAnswer:', ' blue', ' blue')
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, get_args

from .choices import _is_multiple_choice, choices_of, gold_choice_index, question_stem
from .schema import DataError

__all__ = [
    "ALPACA_TEMPLATE",
    "CLOZE_TEMPLATE",
    "DEFAULT_PROMPT_STYLE",
    "PROMPT_STYLES",
    "QA_TEMPLATE",
    "RESPONSE_TEMPLATE",
    "TARGETS",
    "PromptFormat",
    "answer_lead",
    "end_of_turn",
    "format_prompt",
    "format_target",
    "option_continuation",
]


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

#: A prompt style: ``"chat"`` (the tokenizer's chat template), ``"alpaca"`` (JoLA's prompt),
#: ``"cloze"`` (``Question: ...\nAnswer:``), ``"qa"`` (cloze with the options listed) or ``"verbatim"``
#: (the question text exactly as given, the answer after one space).
PromptFormat = Literal["chat", "alpaca", "cloze", "qa", "verbatim"]
#: Every prompt style, in the order of :data:`PromptFormat`.
PROMPT_STYLES: tuple[str, ...] = get_args(PromptFormat)
#: The default style of every function that takes one, and of ``TaskSpec.style``.
DEFAULT_PROMPT_STYLE: PromptFormat = "cloze"
#: The styles whose answer text follows the prompt after a space (the prompt ends with ``Answer:``).
_SPACED_STYLES = ("cloze", "qa", "verbatim")

TARGETS = ("label", "choice_text")

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


def answer_lead(style: str) -> str:
    """What separates a prompt of ``style`` from its answer text: ``" "`` for ``cloze``/``qa``, else ``""``.

    The cloze and qa prompts end with ``Answer:``, so the answer starts a new word; the Alpaca
    template and a chat template's assistant header end with a newline. :func:`format_target`
    and :func:`option_continuation` both use this rule.

    Raises:
        DataError: ``style`` is not one of :data:`PROMPT_STYLES`.

    Example:
        >>> answer_lead("cloze"), answer_lead("qa"), answer_lead("alpaca"), answer_lead("chat")
        (' ', ' ', '', '')
    """
    _check_style(style)
    return " " if style in _SPACED_STYLES else ""


def option_continuation(choice: str, style: str) -> str:
    """An option's text as it is scored after a prompt of ``style``: stripped, after :func:`answer_lead`.

    This is the continuation that option-text likelihood scoring appends to the prompt (the
    same text, chat end-of-turn aside, as the ``target="choice_text"`` training target).

    Example:
        >>> option_continuation("  a whale ", "cloze"), option_continuation("a whale", "chat")
        (' a whale', 'a whale')
    """
    return answer_lead(style) + choice.strip()


def format_prompt(
    example: Mapping[str, Any], tokenizer: Any = None, style: str = DEFAULT_PROMPT_STYLE
) -> str:
    """The prompt text for ``example`` (the part that gets no loss); ``style`` is a :data:`PromptFormat`.

    * ``"chat"``: the tokenizer's chat template with one user turn (the question) and the
      generation prompt; needs a tokenizer with a chat template;
    * ``"alpaca"``: :data:`ALPACA_TEMPLATE`, JoLA's exact prompt (``tokenizer`` unused);
    * ``"cloze"``: ``"Question: {stem}\\nAnswer:"`` with :func:`question_stem` (``tokenizer`` unused);
    * ``"qa"``: the cloze prompt with the options listed (``"Question: {stem}\\nOptions: a; b\\nAnswer:"``),
      meant for ``target="choice_text"``: the model answers with the option's text;
    * ``"verbatim"``: the question text exactly as given (your own prompt); the answer follows after
      one space.

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
    if style == "verbatim":
        return question
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
    style: str = DEFAULT_PROMPT_STYLE,
    target: str = "label",
    *,
    add_eos: bool = False,
) -> str:
    """The text the loss is computed on.

    ``target="label"`` is the gold label (``"answer2"``, ``"true"``, ``"C"``, or the answer
    of a generation example); ``"choice_text"`` is the text of the gold option (stripped;
    the answer for generation examples). Style
    ``"chat"`` appends :func:`end_of_turn`; ``"cloze"`` and ``"qa"`` put a space before the text
    (:func:`answer_lead`);
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
    if not text[:1].isspace():
        text = answer_lead(style) + text
    if add_eos:
        eos = getattr(tokenizer, "eos_token", None)
        if not eos:
            raise DataError("add_eos=True needs a tokenizer with an eos_token")
        text += eos
    return text
