"""Likelihood scoring (jola_lens.eval.scoring): fast == slow == naive, batching, errors, the bundled model."""

from __future__ import annotations

import pytest

from jola_lens import eval as ev
from jola_lens.eval import encode_continuations, score_continuations, score_token_continuations, shares_all_but_last

from .helpers import CONTS, PROMPTS, arc_examples, chat, naive_score


def test_shares_all_but_last():
    assert shares_all_but_last(CONTS[0]) and shares_all_but_last(CONTS[1])
    assert not shares_all_but_last(CONTS[2]) and not shares_all_but_last(CONTS[3])
    assert not shares_all_but_last([]) and not shares_all_but_last([[1], []])


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_fast_equals_slow_equals_naive_tiny(tiny_model, batch_size):
    fast = score_token_continuations(tiny_model, PROMPTS, CONTS, batch_size=batch_size)
    slow = score_token_continuations(tiny_model, PROMPTS, CONTS, batch_size=batch_size, fast_path=False)
    rows = score_token_continuations(tiny_model, PROMPTS, CONTS, batch_size=batch_size, fast_path=False,
                                     share_prompt=False)
    for i, (p, cs) in enumerate(zip(PROMPTS, CONTS)):
        for j, c in enumerate(cs):
            ref = naive_score(tiny_model, p, c)
            assert abs(fast[i][j] - ref) < 1e-4, (i, j, fast[i][j], ref)
            assert abs(slow[i][j] - ref) < 1e-4, (i, j, slow[i][j], ref)
            assert abs(rows[i][j] - ref) < 1e-4, (i, j, rows[i][j], ref)
            assert fast[i][j] < 0
    # the scores are not all alike (a bug that returned one row's score everywhere would pass above)
    assert len({round(x, 4) for row in fast for x in row}) == sum(len(c) for c in CONTS)


def test_fast_path_runs_one_row_per_prompt(tiny_model):
    rows = []
    tiny_model.hook_embed.add_hook(lambda x, hook: rows.append(x.shape[0]))
    try:
        score_token_continuations(tiny_model, PROMPTS[:2], CONTS[:2], batch_size=8)
        assert sum(rows) == 2  # prompts 0 and 1, one row each
        rows.clear()
        score_token_continuations(tiny_model, PROMPTS[:2], CONTS[:2], batch_size=8, fast_path=False,
                                  share_prompt=False)
        assert sum(rows) == 7  # 3 + 4 continuations
        rows.clear()
        # sharing the prompt: one pass over the 2 prompts into a KV cache, then the 7 continuations
        # (prompts 3 and 7 tokens long: length_batches puts them in separate batches; prompt 1's
        # single-token continuations are read off the prompt pass and need no second pass)
        score_token_continuations(tiny_model, PROMPTS[:2], CONTS[:2], batch_size=8, fast_path=False)
        assert sorted(rows) == [1, 1, 3]
        rows.clear()
        score_token_continuations(tiny_model, [PROMPTS[1], PROMPTS[3]], [CONTS[1], CONTS[3]], batch_size=8,
                                  fast_path=False)
        # 7 and 4 tokens: one batch of prompts, then only the 2 continuations that need a pass (the 4
        # single-token ones are read off the prompt pass, and no longer ride along as padding)
        assert rows == [2, 2]
        rows.clear()
        # continuations of 9 and 2 tokens run in separate passes on the cached prompt (no row padded to
        # more than twice its length), and score as one row per continuation does
        conts = [[[1, 2, 3, 4, 5, 6, 7, 8, 9], [4, 5], [6, 7, 8, 9, 10, 11, 12]]]
        got = score_token_continuations(tiny_model, [PROMPTS[0]], conts, fast_path=False)
        assert rows == [1, 2, 1]
        rows.clear()
        want = score_token_continuations(tiny_model, [PROMPTS[0]], conts, fast_path=False, share_prompt=False)
        assert max(abs(a - b) for a, b in zip(got[0], want[0])) < 1e-4
    finally:
        tiny_model.reset_hooks()


def test_shared_prompt_matches_naive_with_mixed_lengths(tiny_model):
    """Option texts of different lengths (1 to 4 tokens), prompts of different lengths, odd batch sizes."""
    prompts = [[1, 2, 3, 4, 5], [6], [7, 8, 9]]
    conts = [[[3], [4, 5, 6, 7], [8, 9]], [[1, 2], [5], [2, 2, 2]], [[9, 9, 9, 9], [1]]]
    for bs in (1, 2, 5):
        got = score_token_continuations(tiny_model, prompts, conts, batch_size=bs)
        for i, (p, cs) in enumerate(zip(prompts, conts)):
            for j, c in enumerate(cs):
                ref = naive_score(tiny_model, p, c)
                assert abs(got[i][j] - ref) < 1e-4, (bs, i, j, got[i][j], ref)


def test_padding_does_not_leak(tiny_model):
    """A short prompt scored next to a long one (right padding) equals scoring it alone."""
    alone = score_token_continuations(tiny_model, [PROMPTS[2]], [CONTS[2]])
    together = score_token_continuations(tiny_model, PROMPTS, CONTS, batch_size=4)
    assert max(abs(a - b) for a, b in zip(alone[0], together[2])) < 1e-5


def test_scoring_input_errors(tiny_model):
    with pytest.raises(ValueError, match="empty"):
        score_token_continuations(tiny_model, [[1, 2]], [[[3], []]])
    with pytest.raises(ValueError, match="empty"):
        score_token_continuations(tiny_model, [[]], [[[3]]])
    with pytest.raises(ValueError, match="2 prompts"):
        score_token_continuations(tiny_model, [[1], [2]], [[[3]]])
    with pytest.raises(ValueError, match="context"):
        score_token_continuations(tiny_model, [list(range(2, 70))], [[[3]]])
    assert score_token_continuations(tiny_model, [[1, 2]], [[]]) == [[]]


def test_choice_likelihood_acc_norm(tiny_tok):
    prompts = ["Q: a?\nA:"]
    choices = [["ab", "abcdefgh"]]
    out = ev.choice_likelihood_predict(tiny_tok, prompts, choices)
    s = score_continuations(tiny_tok, prompts, choices)[0]
    assert out.scores[0] == s and out.char_lengths == [[2, 8]]
    assert out.acc == [int(s[1] > s[0])] and out.acc_norm == [int(s[1] / 8 > s[0] / 2)]


# ---- the bundled SmolLM2 ------------------------------------------------------------------------


@pytest.mark.integration
def test_label_tokenisation_after_chat_prompt(smollm, shared_data):
    tok = smollm.tokenizer
    ex = arc_examples(shared_data, 1)[0]
    labels = [f"answer{k}" for k in range(1, 6)]
    p, c = encode_continuations(tok, [chat(tok, ex["question"])], [labels])
    assert p[0] == tok(chat(tok, ex["question"]), add_special_tokens=False)["input_ids"]
    assert [tok.convert_ids_to_tokens(x) for x in c[0]] == [["answer", str(k)] for k in range(1, 6)]
    assert shares_all_but_last(c[0])
    _, tf = encode_continuations(tok, [chat(tok, "Is it?")], [["true", "false"]])
    assert [len(x) for x in tf[0]] == [1, 1]
    # answer12 is not a single-token variant of answer1
    _, c12 = encode_continuations(tok, [chat(tok, "x")], [["answer1", "answer12"]])
    assert not shares_all_but_last(c12[0])


@pytest.mark.integration
def test_fast_equals_slow_on_bundled_model(smollm):
    tok = smollm.tokenizer
    prompts = [
        chat(tok, "Which is a mammal? Answer1: shark Answer2: whale Answer3: trout\n"
                  "Answer format: answer1/answer2/answer3"),
        chat(tok, "Is water wet? Answer format: true/false"),
        chat(tok, "Pick one. Answer1: up Answer2: down\nAnswer format: answer1/answer2"),
    ]
    conts = [["answer1", "answer2", "answer3"], ["true", "false"], ["answer1", "answer2", "the answer is answer1"]]
    fast = score_continuations(smollm, prompts, conts, batch_size=3)
    slow = score_continuations(smollm, prompts, conts, batch_size=2, fast_path=False)
    p_ids, c_ids = encode_continuations(tok, prompts, conts)
    for i in range(len(prompts)):
        for j in range(len(conts[i])):
            ref = naive_score(smollm, p_ids[i], c_ids[i][j])
            assert abs(fast[i][j] - ref) < 1e-4 and abs(slow[i][j] - ref) < 1e-4, (i, j, fast[i][j], slow[i][j], ref)
    assert len({round(x, 3) for row in fast for x in row}) == 8
