"""Collation and length-grouped batches (jola_lens.tasks.batching; the collator factory of jola_lens.compat)."""

from __future__ import annotations

import pytest
import torch

from jola_lens.compat import make_data_collator
from jola_lens.tasks import (
    IGNORE_INDEX,
    DataError,
    TokenizedDataset,
    format_prompt,
    format_target,
    length_grouped_batches,
    tokenize_pair,
)

from .helpers import CharTokenizer

# ---- collator -----------------------------------------------------------------------------------


def test_collator_right_pads_and_never_masks_by_pad_id():
    collate = make_data_collator(CharTokenizer())
    rows = [
        {"input_ids": [10, 11, 12, 3], "labels": [IGNORE_INDEX, IGNORE_INDEX, 12, 3], "length": 4, "id": "a"},
        {"input_ids": [20, 3], "labels": [IGNORE_INDEX, 3]},
        {"input_ids": torch.tensor([30]), "labels": torch.tensor([30])},
    ]
    b = collate(rows)
    assert set(b) == {"input_ids", "attention_mask", "labels"}
    assert all(t.dtype == torch.long and t.shape == (3, 4) for t in b.values())
    assert b["input_ids"].tolist() == [[10, 11, 12, 3], [20, 3, 3, 3], [30, 3, 3, 3]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]
    # the real EOS (== pad id) stays labelled; the pads are -100
    assert b["labels"].tolist() == [[-100, -100, 12, 3], [-100, 3, -100, -100], [30, -100, -100, -100]]


def test_collator_options_and_errors():
    b = make_data_collator(pad_token_id=0, pad_to_multiple_of=8)([{"input_ids": [5, 6, 7]}])
    assert b["input_ids"].shape == (1, 8) and b["labels"][0, :3].tolist() == [5, 6, 7]
    templ = make_data_collator(CharTokenizer(), response_template="R:\n")
    b = templ([{"input_ids": CharTokenizer()("x R:\nR:\nok")["input_ids"]}])
    assert CharTokenizer().decode([t for t in b["labels"][0].tolist() if t != IGNORE_INDEX]) == "ok"
    with pytest.raises(DataError, match="response template was not found"):
        templ([{"input_ids": [5, 6]}])
    with pytest.raises(DataError, match="mlm"):
        make_data_collator(CharTokenizer(), mlm=True)
    with pytest.raises(DataError, match="differ in length"):
        make_data_collator()([{"input_ids": [1, 2], "labels": [1]}])
    assert make_data_collator(CharTokenizer(), instruction_template="x").pad_token_id == 3  # extra kwargs accepted


# ---- length-grouped batches ---------------------------------------------------------------------


@pytest.mark.parametrize("n,batch_size", [(0, 4), (1, 4), (7, 3), (100, 8), (1234, 5)])
def test_length_grouping_covers_every_index_once(n, batch_size):
    g = torch.Generator().manual_seed(n)
    lengths = torch.randint(1, 300, (n,), generator=g).tolist()
    for shuffle in (True, False):
        batches = length_grouped_batches(lengths, batch_size, seed=3, shuffle=shuffle)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n))
        assert all(1 <= len(b) <= batch_size for b in batches)


def test_length_grouping_is_seeded_and_cuts_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(10, 400, (800,), generator=g).tolist()
    a = length_grouped_batches(lengths, 8, seed=1)
    assert a == length_grouped_batches(lengths, 8, seed=1)
    assert a != length_grouped_batches(lengths, 8, seed=2)

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    random_batches = [list(range(i, min(i + 8, 800))) for i in range(0, 800, 8)]
    assert padding(a) < 0.2 * padding(random_batches)
    with pytest.raises(DataError):
        length_grouped_batches(lengths, 0)


# ---- the bundled tokenizer ----------------------------------------------------------------------


@pytest.mark.integration
def test_real_batch_keeps_the_labelled_end_of_turn(smollm, arc_examples):
    tok = smollm.tokenizer
    ds = TokenizedDataset(arc_examples, tok, style="chat", target="label")
    batch = make_data_collator(tok)([ds[i] for i in range(len(ds))])
    assert batch["input_ids"].shape == (len(ds), max(ds.lengths))
    for r, n in enumerate(ds.lengths):
        assert batch["attention_mask"][r].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
        labelled = batch["labels"][r][batch["labels"][r] != IGNORE_INDEX].tolist()
        assert labelled == [t for t in ds[r]["labels"] if t != IGNORE_INDEX]
        assert labelled[-1] == tok.pad_token_id  # pad == eos, still a target


@pytest.mark.integration
def test_response_template_collator_matches_pair_labels(smollm, arc_examples):
    """JoLA's original masking (after "### Response:\\n") labels the same tokens as tokenize_pair."""
    tok = smollm.tokenizer
    collate = make_data_collator(tok, response_template="### Response:\n")
    for ex in arc_examples:
        pair = tokenize_pair(format_prompt(ex, tok, "alpaca"), format_target(ex, tok, "alpaca"), tok)
        batch = collate([{"input_ids": pair["input_ids"]}])
        assert batch["labels"][0].tolist() == pair["labels"]
