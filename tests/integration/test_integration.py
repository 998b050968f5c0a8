"""The bundled SmolLM2-135M-Instruct: TL-vs-HF parity, and JoLA edits on the real model."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from jola_lens import JoLAModel
from jola_lens.loading import bundled_checkpoint_dir
from tests.helpers import randomize

pytestmark = pytest.mark.integration

PROMPTS = [
    "The capital of France is",
    "Question: Which gas do plants take in for photosynthesis?\nAnswer:",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea, there lived",
]


@pytest.fixture(scope="module")
def hf_model():
    return AutoModelForCausalLM.from_pretrained(str(bundled_checkpoint_dir(verbose=False)), dtype=torch.float32).eval()


def test_bundled_shapes(smollm):
    c = smollm.cfg
    assert (c.n_layers, c.n_heads, c.d_head, c.n_key_value_heads, c.d_model, c.d_vocab) == (30, 9, 64, 3, 576, 49152)
    assert c.rotary_base == 100000.0 and not c.default_prepend_bos
    assert JoLAModel(smollm).n_trainable_parameters() == 35_100


def test_parity_with_hf(smollm, hf_model):
    tok = smollm.tokenizer
    for p in PROMPTS:
        ids = tok(p, return_tensors="pt").input_ids
        with torch.inference_mode():
            ours, ref = smollm(ids), hf_model(ids).logits
        assert (ours - ref).abs().max() < 1e-3, p
        assert torch.equal(ours.argmax(-1), ref.argmax(-1)), p


def test_parity_left_padded_batch(smollm, hf_model):
    tok = smollm.tokenizer
    seqs = [tok(p).input_ids for p in PROMPTS]
    n = max(map(len, seqs))
    pad = tok.pad_token_id
    tokens = torch.tensor([[pad] * (n - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (n - len(s)) + [1] * len(s) for s in seqs])
    with torch.inference_mode():
        ours = smollm(tokens, attention_mask=mask, padding_side="left")
        ref = hf_model(tokens, attention_mask=mask).logits
        for i, s in enumerate(seqs):
            alone = hf_model(torch.tensor([s])).logits[0]
            got = ours[i, n - len(s):]
            assert (got - alone).abs().max() < 1e-3
            assert torch.equal(got.argmax(-1), alone.argmax(-1))
            assert (ours[i, -1] - ref[i, -1]).abs().max() < 1e-3


def test_merge_equals_hooked_on_bundled(smollm):
    tok = smollm.tokenizer
    ids = tok(PROMPTS[1], return_tensors="pt").input_ids
    jm = JoLAModel(smollm).eval()
    randomize(jm, scale=0.05, gate_value=0.5)
    with torch.inference_mode():
        hooked = jm(ids)
        merged_model = jm.merge()
        merged = merged_model(ids)
        base = smollm(ids)
    assert (merged - hooked).abs().max() < 1e-4
    assert (hooked - base).abs().max() > 1e-2
    kw = dict(max_new_tokens=10, do_sample=False, verbose=False, stop_at_eos=False, use_past_kv_cache=True)
    assert torch.equal(jm.generate(ids, **kw), merged_model.generate(ids, **kw))
