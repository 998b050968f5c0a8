"""Answer-only tokenisation (jola_lens.tasks.tokenize): stand-in tokenizer, then the bundled one."""

from __future__ import annotations

import pytest

from jola_lens.tasks import (
    IGNORE_INDEX,
    DataError,
    TokenizedDataset,
    end_of_turn,
    format_prompt,
    format_target,
    tokenize_examples,
    tokenize_pair,
)

from .helpers import CharTokenizer, ours

# ---- stand-in tokenizer -------------------------------------------------------------------------


def test_tokenize_pair_masks_the_prompt():
    out = tokenize_pair("Q: x\n", "yes", CharTokenizer())
    assert out["input_ids"] == [ord(c) for c in "Q: x\nyes"]
    assert out["labels"] == [IGNORE_INDEX] * 5 + [ord(c) for c in "yes"]
    bos = tokenize_pair("Q", "a", CharTokenizer(), prepend_bos=True)
    assert bos == {"input_ids": [1, ord("Q"), ord("a")], "labels": [IGNORE_INDEX, IGNORE_INDEX, ord("a")]}


def test_tokenize_pair_truncates_the_prompt_from_the_left_only():
    out = tokenize_pair("abcdefgh", "XYZ", CharTokenizer(), max_length=6, prepend_bos=True)
    assert CharTokenizer().decode(out["input_ids"][1:]) == "ghXYZ" and out["input_ids"][0] == 1
    assert out["labels"][-3:] == [ord(c) for c in "XYZ"] and out["labels"][:3] == [IGNORE_INDEX] * 3
    assert tokenize_pair("abc", "XYZ", CharTokenizer(), max_length=3)["input_ids"] == [ord(c) for c in "XYZ"]
    with pytest.raises(DataError, match="target alone is 4 tokens"):
        tokenize_pair("abc", "WXYZ", CharTokenizer(), max_length=3)
    with pytest.raises(DataError, match=r"\+1 BOS"):
        tokenize_pair("abc", "XYZ", CharTokenizer(), max_length=3, prepend_bos=True)


def test_tokenize_examples_and_dataset():
    exs = [ours(0), ours(1, "answer3")]
    rows = tokenize_examples(exs, CharTokenizer(), style="alpaca", target="choice_text")
    assert [r["id"] for r in rows] == ["ex-0", "ex-1"]
    for r, text in zip(rows, ("whale", "trout")):
        assert r["length"] == len(r["input_ids"]) == len(r["labels"])
        assert CharTokenizer().decode([t for t in r["labels"] if t != IGNORE_INDEX]) == text
    ds = TokenizedDataset(exs, CharTokenizer(), style="cloze", target="label")
    assert len(ds) == 2 and ds.lengths == [r["length"] for r in ds.rows]
    with pytest.warns(UserWarning, match="2 of 2 prompts were cut"):
        tokenize_examples(exs, CharTokenizer(), style="alpaca", max_length=20)
    with pytest.raises(DataError, match="example 'ex-0'.*target alone"):
        tokenize_examples(exs, CharTokenizer(), style="alpaca", max_length=5)


# ---- the bundled tokenizer: only the answer (and end-of-turn) is labelled -----------------------


@pytest.mark.integration
@pytest.mark.parametrize("style", ["chat", "alpaca", "cloze"])
@pytest.mark.parametrize("target", ["label", "choice_text"])
def test_only_target_tokens_are_labelled_on_real_examples(smollm, arc_examples, style, target):
    tok = smollm.tokenizer
    rows = tokenize_examples(arc_examples, tok, style=style, target=target)
    for ex, row in zip(arc_examples, rows):
        prompt = format_prompt(ex, tok, style)
        text = format_target(ex, tok, style, target)
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        labels = row["labels"]
        assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
        assert IGNORE_INDEX not in labels[n_prompt:]
        assert row["input_ids"][:n_prompt] == tok(prompt, add_special_tokens=False)["input_ids"]
        assert tok.decode(labels[n_prompt:]) == text
        if style == "chat":
            assert text.endswith("<|im_end|>") and labels[-1] == tok.eos_token_id == tok.pad_token_id
        if target == "label":
            expected = {"chat": f"{ex['answer']}<|im_end|>", "alpaca": ex["answer"], "cloze": f" {ex['answer']}"}
            assert text == expected[style]


@pytest.mark.integration
def test_chat_prompt_and_end_of_turn_from_the_real_template(smollm, arc_examples):
    tok = smollm.tokenizer
    assert end_of_turn(tok) == "<|im_end|>"
    prompt = format_prompt(arc_examples[0], tok, "chat")
    assert prompt.endswith(f"<|im_start|>user\n{arc_examples[0]['question']}<|im_end|>\n<|im_start|>assistant\n")
    row = tokenize_pair(prompt, format_target(arc_examples[0], tok, "chat"), tok)
    digit = arc_examples[0]["answer"][-1]
    assert [tok.decode([t]) for t in row["labels"] if t != IGNORE_INDEX] == ["answer", digit, "<|im_end|>"]
