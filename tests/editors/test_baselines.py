"""Baselines on the tiny Llama-shaped model: frozen base, correct hook placement, prompt positions."""

from __future__ import annotations

import copy

import pytest
import torch

from jola_lens.baselines import BASELINES, BitFit, LoRA, LoReFT, PromptPositions, make_baseline
from jola_lens.baselines.steering import ITISteering
from jola_lens.eval import generate_tokens, score_token_continuations
from jola_lens.train import TrainConfig, answer_loss
from tests.helpers import prompt_answer_rows

_data = prompt_answer_rows


def _small_options(name: str) -> dict:
    return {"lofit": {"k": 3, "stage1": {"epochs": 1}}, "iti": {"k": 2}, "loreft": {"rank": 2},
            "lora": {"rank": 2}}.get(name, {})


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_trains_without_touching_base_weights(tiny_model, tokens, name):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    base_logits = tiny_model(tokens)
    bl = make_baseline(name, tiny_model, **_small_options(name))
    edit_before = {k: v.clone() for k, v in bl.edit_state().items()}
    data = _data()
    result = bl.fit(data, data[:4], TrainConfig(epochs=2, warmup_steps=0, lr=5e-2), progress=False)
    assert result.stopped == "completed"
    after = tiny_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a base weight changed"
    assert not any(p.requires_grad for p in tiny_model.parameters())
    assert torch.equal(tiny_model(tokens), base_logits)  # no hook left behind
    changed = [k for k, v in bl.edit_state().items() if not torch.equal(v, edit_before[k])]
    assert changed, f"{name}: fit changed none of its edit tensors"
    with bl.applied():
        edited = tiny_model(tokens)
    assert not torch.allclose(edited, base_logits), f"{name}: the trained edit does not change the output"


@pytest.mark.parametrize("name", ["bitfit", "red", "lora"])
def test_zero_initialised_baselines_start_at_the_base_model(tiny_model, tokens, name):
    bl = make_baseline(name, tiny_model)
    with bl.applied():
        out = tiny_model(tokens)
    torch.testing.assert_close(out, tiny_model(tokens))


def test_bitfit_offsets_equal_trained_biases(tiny_model, tokens):
    bf = BitFit(tiny_model)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in bf.edit_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    ref = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for i, b in enumerate(ref.blocks):
            b.attn.b_Q += bf.b_Q[i]
            b.attn._b_K += bf.b_K[i]
            b.attn._b_V += bf.b_V[i]
            b.attn.b_O += bf.b_O[i]
            b.mlp.b_in += bf.b_in[i]
            b.mlp.b_out += bf.b_out[i]
    with bf.applied():
        hooked = tiny_model(tokens)
    torch.testing.assert_close(hooked, ref(tokens), atol=1e-5, rtol=1e-5)


def test_lora_hooks_equal_merged_weights(tiny_model, tokens):
    lora = LoRA(tiny_model, rank=2)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        lora.B_q.copy_(torch.randn(lora.B_q.shape, generator=g) * 0.2)
        lora.B_v.copy_(torch.randn(lora.B_v.shape, generator=g) * 0.2)
    ref = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for layer, b in enumerate(ref.blocks):
            w = lora.merged_weights(layer)
            b.attn.W_Q.copy_(w["W_Q"])
            b.attn._W_V.copy_(w["W_V"])
    with lora.applied():
        hooked = tiny_model(tokens)
    torch.testing.assert_close(hooked, ref(tokens), atol=1e-5, rtol=1e-5)


def test_prompt_positions_masks():
    pp = PromptPositions()
    pp.attention_mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])  # left-padded prompts
    m = pp.first_last(2, 7, first=1, last=2, device=torch.device("cpu"))
    assert m.tolist() == [[0, 0, 1, 0, 0, 1, 1], [1, 0, 0, 0, 0, 1, 1]]
    pp.attention_mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])  # right-padded training row
    pp.observe_labels(torch.tensor([[-100, -100, -100, 5, 6, -100, -100]]))
    assert pp.first_last(1, 7, 1, 1, torch.device("cpu")).tolist() == [[1, 0, 1, 0, 0, 0, 0]]
    assert pp.from_last_prompt_token(1, 7, torch.device("cpu")).tolist() == [[0, 0, 1, 1, 1, 0, 0]]
    pp.observe_labels(None)
    pp.continuation = True
    assert pp.first_last(1, 3, 1, 1, torch.device("cpu")).sum() == 0
    assert pp.from_last_prompt_token(1, 3, torch.device("cpu")).tolist() == [[1, 1, 1]]


def _trained_loss_rows(bl, prompt, cont):
    """Log-prob of ``cont`` after ``prompt`` as the trainer sees it (one pass, labels observed)."""
    ids = torch.tensor([prompt + cont])
    labels = torch.tensor([[-100] * len(prompt) + cont])
    bl.observe_batch({"labels": labels})
    try:
        with bl.applied(), torch.no_grad():
            loss = answer_loss(bl.model, ids, labels, torch.ones_like(ids), reduction="sum")
    finally:
        bl.observe_batch(None)
    return -float(loss)


@pytest.mark.parametrize("which", ["loreft", "iti"])
def test_position_dependent_edits_score_the_same_in_training_and_evaluation(tiny_model, which):
    if which == "loreft":
        bl = LoReFT(tiny_model, rank=2, first=1, last=2)
        with torch.no_grad():
            for iv in bl.interventions:
                iv.source.weight.mul_(5.0)
    else:
        bl = ITISteering(tiny_model, k=3, alpha=8.0)
        with torch.no_grad():
            bl.mask[0, :3] = True
            bl.shift.normal_(0, 1.0)
            bl.shift.mul_(bl.mask[..., None])
    # options that differ early (shared-prompt path), share all but the last token (fast path),
    # and a single continuation: all must run the prompt alone first
    prompts = [[5, 6, 7, 8, 9], [11, 12, 13], [14, 15, 16, 17]]
    conts = [[[20, 21, 22], [30]], [[40, 41], [40, 52]], [[60, 61]]]
    scores = score_token_continuations(bl, prompts, conts, batch_size=4)
    base = score_token_continuations(tiny_model, prompts, conts, batch_size=4)
    for i, p in enumerate(prompts):
        for j, c in enumerate(conts[i]):
            assert abs(scores[i][j] - _trained_loss_rows(bl, p, c)) < 1e-4
    assert max(abs(a - b) for r, q in zip(scores, base) for a, b in zip(r, q)) > 1e-3  # the edit matters


def _rows_with_wrong_answers(n: int = 12, seed: int = 1) -> list[dict]:
    rows = _data(n, seed)
    for i, r in enumerate(rows):
        r["wrong_answers"] = [[7 + (i + 1) % 3, 3], [7 + (i + 2) % 3, 3]]
    return rows


def test_iti_option_accuracy_scores_rows_as_the_test_set_is(tiny_model):
    bl = ITISteering(tiny_model, k=3, alpha=8.0)
    with torch.no_grad():
        bl.mask[0, :3] = True
        bl.shift.normal_(0, 1.0)
        bl.shift.mul_(bl.mask[..., None])
    rows = _rows_with_wrong_answers()
    hits = []
    for r in rows:
        start = r["labels"].index(next(x for x in r["labels"] if x != -100))
        prompt, gold = r["input_ids"][:start], r["input_ids"][start:]
        scores = [_trained_loss_rows(bl, prompt, c) for c in [gold] + r["wrong_answers"]]
        hits.append(max(range(len(scores)), key=scores.__getitem__) == 0)
    assert 0 < sum(hits) < len(rows)  # the check below can tell right from wrong
    assert bl.option_accuracy(rows) == pytest.approx(sum(hits) / len(rows))


def test_iti_alpha_is_chosen_by_validation_accuracy_then_loss(tiny_model, monkeypatch):
    from jola_lens.train import JoLATrainer

    accuracy = {0.0: 0.3, 1.0: 0.6, 2.5: 0.6, 5.0: 0.4}
    loss = {0.0: 1.0, 1.0: 0.9, 2.5: 0.8, 5.0: 0.1}  # the lowest loss has neither the best accuracy
    bl = ITISteering(tiny_model, k=2, alphas=list(accuracy))
    monkeypatch.setattr(ITISteering, "option_accuracy", lambda self, rows, batch_size=8: accuracy[self.alpha])
    monkeypatch.setattr(JoLATrainer, "validation_loss", lambda self: loss[bl.alpha])
    rows = _rows_with_wrong_answers()
    bl.fit(rows, rows[:6], progress=False)
    assert bl.alpha == 2.5  # best accuracy (tied with 1.0), then lower loss
    assert bl.settings["alpha_criterion"] == "valid_accuracy"
    assert [h["valid_accuracy"] for h in bl.settings["alpha_search"]] == list(accuracy.values())
    plain = [dict(r, wrong_answers=[]) for r in rows[:6]]  # no options to score: fall back to the loss
    bl.fit(rows, plain, progress=False)
    assert bl.alpha == 5.0 and bl.settings["alpha_criterion"] == "valid_loss"


def test_loreft_leaves_generated_tokens_alone(tiny_model):
    bl = LoReFT(tiny_model, rank=2, first=0, last=1)
    seen = []
    orig = bl.positions.first_last

    def spy(*a, **k):
        m = orig(*a, **k)
        seen.append((bl.positions.continuation, int(m.sum())))
        return m

    bl.positions.first_last = spy
    generate_tokens(bl, [[5, 6, 7], [8, 9]], max_new_tokens=3)
    assert seen and all(n == 0 for cont, n in seen if cont)
    assert any(n > 0 for cont, n in seen if not cont)
    with pytest.raises(ValueError, match="beam"):
        generate_tokens(bl, [[5, 6, 7]], max_new_tokens=2, num_beams=2)


def test_baseline_save_and_load_roundtrip(tiny_model, tokens, tmp_path):
    a = make_baseline("red", tiny_model)
    with torch.no_grad():
        a.scale.mul_(1.5)
    a.save(tmp_path / "red")
    b = make_baseline("red", tiny_model).load_edits(tmp_path / "red")
    with a.applied():
        x = tiny_model(tokens)
    with b.applied():
        y = tiny_model(tokens)
    assert torch.equal(x, y)
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("nope", tiny_model)
