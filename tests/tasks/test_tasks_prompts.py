"""Prompts, targets, the prompt styles and the option continuation (jola_lens.tasks.prompts)."""

from __future__ import annotations

import inspect
from typing import get_args

import pytest

from jola_lens.tasks import (
    ALPACA_TEMPLATE,
    DEFAULT_PROMPT_STYLE,
    PROMPT_STYLES,
    DataError,
    PromptFormat,
    answer_lead,
    end_of_turn,
    format_prompt,
    format_target,
    option_continuation,
)

from .helpers import CharTokenizer, ours


def test_alpaca_prompt_is_jolas_exact_template():
    ex = ours(0)
    expected = (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n ### Instruction:\n" + ex["question"] + "\n\n### Response:\n"
    )
    assert format_prompt(ex, None, "alpaca") == expected == ALPACA_TEMPLATE.format(instruction=ex["question"])
    assert format_target(ex, None, "alpaca") == "answer2"  # no EOS, as the original code
    assert format_target(ex, CharTokenizer(), "alpaca", add_eos=True) == "answer2|"


def test_cloze_prompt_and_targets():
    ex = ours(0)
    assert format_prompt(ex, None, "cloze") == "Question: Which is a mammal 0?\nAnswer:"
    assert format_target(ex, None, "cloze", "choice_text") == " whale"
    assert format_target(ex, None, "cloze", "label") == " answer2"
    assert format_target(ex, None, "alpaca", "choice_text") == "whale"
    gen = {"question": "Describe a cat.", "choices": [], "answer": "Furry."}
    assert format_target(gen, None, "cloze", "choice_text") == " Furry."


class ToyChat:
    eos_token = "</s>"
    chat_template = "toy"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<{m['role']}>{m['content']}<eot>\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


def test_chat_style_with_a_toy_template():
    ex = ours(0)
    assert end_of_turn(ToyChat()) == "<eot>"
    assert format_prompt(ex, ToyChat(), "chat") == f"<user>{ex['question']}<eot>\n<assistant>"
    assert format_target(ex, ToyChat(), "chat") == "answer2<eot>"
    assert end_of_turn(CharTokenizer()) == "|"  # no chat template: falls back to the EOS


def test_bad_style_target_and_missing_template():
    with pytest.raises(DataError, match="unknown prompt style"):
        format_prompt(ours(0), None, "nonsense")
    with pytest.raises(DataError, match="unknown target"):
        format_target(ours(0), None, "alpaca", "letter")
    with pytest.raises(DataError, match="chat template"):
        format_prompt(ours(0), CharTokenizer(), "chat")


# ---- one prompt format --------------------------------------------------------------------------


def test_one_default_prompt_style_everywhere():
    from jola_lens.experiment import TaskSpec
    from jola_lens.selection import contrastive_rows
    from jola_lens.tasks import tokenize_examples

    assert PROMPT_STYLES == get_args(PromptFormat) == ("chat", "alpaca", "cloze", "qa", "verbatim")
    assert DEFAULT_PROMPT_STYLE == "cloze" == TaskSpec().style
    for fn in (format_prompt, format_target, tokenize_examples, contrastive_rows):
        assert inspect.signature(fn).parameters["style"].default == DEFAULT_PROMPT_STYLE, fn.__name__
    assert format_prompt(ours(0)) == format_prompt(ours(0), None, DEFAULT_PROMPT_STYLE)


@pytest.mark.parametrize("style", ["chat", "alpaca", "cloze", "qa"])
def test_option_continuation_is_the_choice_text_target(style):
    ex = ours(0)  # gold option 2: "whale"
    expected = {"chat": "whale", "alpaca": "whale", "cloze": " whale", "qa": " whale"}[style]
    assert option_continuation(" whale ", style) == expected == answer_lead(style) + "whale"
    if style != "chat":  # the chat target also ends with the end-of-turn marker
        assert format_target(ex, None, style, "choice_text") == option_continuation(ex["choices"][1], style)
    with pytest.raises(DataError, match="unknown prompt style"):
        option_continuation("whale", "nonsense")
