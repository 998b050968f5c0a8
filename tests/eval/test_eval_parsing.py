"""Answer parsers (jola_lens.eval.parsing)."""

from __future__ import annotations

import pytest

from jola_lens.eval import auto_parser, parse_choice_text, parse_label, parse_mmlu_letter

from .helpers import ARC_LABELS


@pytest.mark.parametrize(
    "text,labels,expected",
    [
        ("the correct answer is answer3", ARC_LABELS, "answer3"),
        ("Answer2: Most ecosystems are found on land", ARC_LABELS, "answer2"),
        ("ANSWER4.", ARC_LABELS, "answer4"),
        ("answer12 is what I think", ["answer1", "answer2"], None),
        ("answer12 then answer1", ["answer1", "answer12"], "answer12"),
        ("answer1, not answer2", ARC_LABELS, "answer1"),
        ("myanswer1", ARC_LABELS, None),
        ("answer_1", ARC_LABELS, None),
        ("The statement is False.", ["true", "false"], "false"),
        ("untrue", ["true", "false"], None),
        ("", ARC_LABELS, None),
        ("I don't know", ARC_LABELS, None),
    ],
)
def test_parse_label(text, labels, expected):
    assert parse_label(text, labels) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Answer: C", "C"),
        ("answer: (d)", "D"),
        ("The answer is (B)", "B"),
        ("The correct answer is E.", "E"),
        ("After thinking. The final answer is J", "J"),
        ("C. some text", "C"),
        ("(H) cross section of an anther", "H"),
        ("B) foo", "B"),
        ("G", "G"),
        ("  F\nbecause ...", "F"),
        ("Correct option: **I**", "I"),
        ("Because of that, (D) is right", "D"),
        ("A person would pick the leaf", None),
        ("I think this is hard", None),
        ("Light reactions make ATP", None),
        ("The answer is K", None),
        ("", None),
    ],
)
def test_parse_mmlu_letter(text, expected):
    assert parse_mmlu_letter(text) == expected


def test_parse_mmlu_letter_respects_letter_set():
    assert parse_mmlu_letter("Answer: E", letters="ABCD") is None
    assert parse_mmlu_letter("Answer: D", letters="ABCD") == "D"


def test_auto_parser_and_parse_choice_text():
    assert auto_parser(list("ABCD"))("Answer: (c)") == "C"
    assert auto_parser(ARC_LABELS)("I think Answer3.") == "answer3"
    assert parse_choice_text("Blue.", ["red", "blue"]) == 1 and parse_choice_text("", ["red"]) is None
