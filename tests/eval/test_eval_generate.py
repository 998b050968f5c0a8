"""Generation (jola_lens.eval.generate): batched == unbatched == naive, EOS and stop strings, beam search."""

from __future__ import annotations

import pytest
import torch

from jola_lens import JoLAModel
from jola_lens.eval import generate_greedy, generate_tokens
from tests.helpers import randomize

from .helpers import GEN_PROMPTS, chat, naive_greedy, no_hooks_left


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


def test_finished_rows_leave_the_batch(tiny_model):
    """A row that stopped is dropped from the batch and its KV cache: later steps run only the others,
    and every row's tokens stay those of its own one-row run."""
    free = generate_tokens(tiny_model, GEN_PROMPTS, max_new_tokens=6)
    eos = free[1][0]
    widths = []
    tiny_model.hook_embed.add_hook(lambda x, hook: widths.append(x.shape[0]))
    try:
        out = generate_tokens(tiny_model, GEN_PROMPTS, max_new_tokens=6, eos_token_ids=[eos], batch_size=4)
    finally:
        tiny_model.reset_hooks()
    single = [generate_tokens(tiny_model, [p], max_new_tokens=6, eos_token_ids=[eos])[0] for p in GEN_PROMPTS]
    assert out == single
    assert widths[0] == 4 and widths[1] < 4  # prompt pass of 4 rows; row 1 stopped after its first token
    assert widths == sorted(widths, reverse=True)


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
    from jola_lens.eval.generate import _truncate_at_stop

    text = "\n\n The Eagle is a pub.\nMore text"
    assert _truncate_at_stop(text, ["\n"]) == ""
    lead = len(text) - len(text.lstrip())
    assert _truncate_at_stop(text, ["\n"], lead) == "\n\n The Eagle is a pub."
    assert _truncate_at_stop("no stop here", ["\n"], 0) == "no stop here"


# ---- the bundled SmolLM2 ------------------------------------------------------------------------


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
