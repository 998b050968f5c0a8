"""Head selection: the shared interface, each method's defining property, and edit-after-selection."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from transformer_lens import HookedTransformer

from jola_lens import JoLAConfig, JoLAModel
from jola_lens.selection import (
    SelectionResult,
    edit_on_mask,
    get_selector,
    gumbel_soft_topk,
    list_selectors,
    load_scorer,
    meta_train_smp,
    per_layer_top_fraction,
    register_selector,
    save_scorer,
    select,
    top_k_mask,
)
from jola_lens.selection.base import head_scale_hooks
from jola_lens.selection.iti import fit_probes
from jola_lens.selection.pass_ import almost_sure_counts
from jola_lens.selection.smp import SMPScorer, _pooled, head_scores, representation_kl
from jola_lens.train import TrainConfig, answer_loss, collate
from tests.conftest import tiny_cfg
from tests.helpers import toy_data

# Small budgets so that every selector runs in well under a second on the tiny model.
FAST = {
    "jola": dict(max_steps=4),
    "lofit": dict(epochs=1),
    "dsp": dict(epochs=1),
    "pass": dict(epochs=1),
    "smp": dict(meta_steps=2, batch_size=4),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The CI machine is shared: tiny models run fastest on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- the interface ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_selectors())
def test_every_selector_returns_k_heads(tiny_model, name):
    data = toy_data(16)
    flags = {n: p.requires_grad for n, p in tiny_model.named_parameters()}
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    r = select(name, tiny_model, data, k=5, seed=0, **FAST.get(name, {}))
    n_heads = tiny_model.cfg.n_layers * tiny_model.cfg.n_heads
    assert isinstance(r, SelectionResult) and r.method == name
    assert r.scores.shape == (3, 4) and r.mask.shape == (3, 4) and r.mask.dtype == torch.bool
    assert torch.isfinite(r.scores).all()
    expected = n_heads if name == "all" else 5
    assert r.k == expected and int(r.mask.sum()) == expected
    for key in ("settings", "steps", "seconds", "seed"):
        assert key in r.record, key
    assert r.record["seed"] == 0 and r.record["seconds"] >= 0
    # the frozen model is untouched, and its requires_grad flags are restored
    for n, p in tiny_model.named_parameters():
        assert torch.equal(p, before[n]), n
        assert p.requires_grad == flags[n], n
    # same seed, same choice
    again = select(name, tiny_model, data, k=5, seed=0, **FAST.get(name, {}))
    assert torch.equal(again.mask, r.mask)


def test_select_validates_k(tiny_model):
    with pytest.raises(ValueError):
        select("random", tiny_model, toy_data(4), k=0)
    with pytest.raises(ValueError):
        select("random", tiny_model, toy_data(4), k=13)
    with pytest.raises(KeyError, match="unknown selector"):
        get_selector("nope")


def test_registry_rejects_a_second_function_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        @register_selector("random")
        def other(model, train_data, *, k, seed):  # pragma: no cover
            raise AssertionError


def test_random_differs_across_seeds(tiny_model):
    masks = {tuple(select("random", tiny_model, toy_data(4), k=4, seed=s).mask.flatten().tolist()) for s in range(6)}
    assert len(masks) > 1


def test_top_k_mask_and_per_layer_fraction():
    s = torch.tensor([[0.3, 0.1, 0.9, 0.5], [0.8, float("nan"), 0.2, 0.7]])
    assert top_k_mask(s, 3).tolist() == [[False, False, True, False], [True, False, False, True]]
    assert top_k_mask(s, 0).sum() == 0 and top_k_mask(s, 8).all()
    with pytest.raises(ValueError):
        top_k_mask(s, 9)
    ties = torch.zeros(2, 3)
    assert top_k_mask(ties, 2).tolist() == [[True, True, False], [False, False, False]]
    assert per_layer_top_fraction(s, 0.5).tolist() == [[False, False, True, True], [True, False, False, True]]
    assert per_layer_top_fraction(s, 0.5).sum(1).tolist() == [2, 2]


def test_selection_result_roundtrip(tiny_model, tmp_path):
    r = select("iti", tiny_model, toy_data(20), k=3)
    back = SelectionResult.load(r.save(tmp_path))
    assert torch.equal(back.mask, r.mask) and torch.equal(back.scores, r.scores)
    assert torch.equal(back.record["directions"], r.record["directions"]) and back.k == 3
    assert back.heads() == r.heads()


# ---- JoLA ----------------------------------------------------------------------------------------
def test_jola_without_k_takes_the_open_gates(tiny_model):
    r = select("jola", tiny_model, toy_data(16), k=None, max_steps=3)
    jm_open = r.record["n_open"]
    assert r.k == jm_open == int(r.mask.sum())
    # ranking by P(open) puts every open head before every closed one
    ranked = select("jola", tiny_model, toy_data(16), k=max(jm_open, 1), max_steps=3)
    if jm_open:
        assert torch.equal(ranked.mask, r.mask)


# ---- DSP -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau", [1e3, 1.0, 0.1, 1e-3])
def test_dsp_soft_topk_sums_to_k(dtype, tau):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, generator=g, dtype=dtype)
    for k in (1, 3, 7):
        m = gumbel_soft_topk(logits, k, tau, generator=torch.Generator().manual_seed(k))
        assert m.shape == logits.shape
        assert abs(float(m.sum()) - k) < 1e-4
        assert float(m.min()) >= 0  # entries may exceed 1 at moderate tau (the relaxation, as in DSP)


def test_dsp_soft_topk_tends_to_hard_topk_as_tau_falls():
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.1], [1.1, 0.4, -0.5, 0.9], [0.0, 1.5, -2.0, 0.2]])
    hard = top_k_mask(logits, 4).float()
    gaps = [float((gumbel_soft_topk(logits, 4, tau, gumbel=False) - hard).abs().max())
            for tau in (3.0, 0.3, 0.03, 1e-3)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 1e-4
    # with noise: nearly binary at a small temperature, and still exactly K
    m = gumbel_soft_topk(logits, 4, 1e-4, generator=torch.Generator().manual_seed(0))
    assert float(torch.minimum(m, 1 - m).max()) < 1e-4 and abs(float(m.sum()) - 4) < 1e-4
    # at a huge temperature every head gets K/N
    flat = gumbel_soft_topk(logits, 4, 1e6, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(flat, torch.full_like(flat, 4 / 12), atol=1e-4)


def test_dsp_soft_topk_is_differentiable():
    w = torch.zeros(3, 4, requires_grad=True)
    gumbel_soft_topk(w, 2, 1.0, generator=torch.Generator().manual_seed(0))[0, 0].backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_dsp_keeps_the_heads_that_produce_the_answer():
    model = _answer_head_model(useful=((1, 2), (2, 0)))
    data = _constant_answer_data(32)
    r = select("dsp", model, data, k=2, epochs=10, batch_size=8, tau0=10.0, tau_final=0.01)
    assert set(r.heads()) == {(1, 2), (2, 0)}, r.scores
    assert r.record["tau"][0] == pytest.approx(10.0) and r.record["tau"][-1] < 0.02


def test_dsp_straight_through_runs(tiny_model):
    r = select("dsp", tiny_model, toy_data(16), k=3, epochs=1, ste=True)
    assert r.k == 3 and r.record["settings"]["ste"] is True


# ---- PASS ----------------------------------------------------------------------------------------
def test_pass_reaches_its_almost_sure_targets(tiny_model):
    k = 4
    r = select("pass", tiny_model, toy_data(32), k=k, epochs=100, max_steps=200, batch_size=8)
    la = r.record["log_alpha"]
    assert almost_sure_counts(la) == (12 - k, k)
    assert r.record["targets_met"] and r.record["met_at_step"] is not None
    assert len(r.record["reopened"]) == 3  # clip-and-reopen happened at 2, 3 and 4 times growth_steps
    # lambda grew only while the targets were unmet
    lam = r.record["lambda"]
    assert lam[-1] == pytest.approx(1e-5 * 1000 ** (r.record["unmet_steps"] / r.record["settings"]["growth_steps"]))
    # the selection is exactly the almost-surely open gates
    assert torch.equal(r.mask, la >= 5.0)


def test_pass_reopens_confident_heads():
    from jola_lens.selection.pass_ import _Confidence

    conf = _Confidence(1, 3)
    scores = torch.tensor([[[[1.0, -math.inf], [2.0, 0.5]], [[5.0, -math.inf], [3.0, 4.0]],
                            [[-1.0, -math.inf], [-2.0, -3.0]]]])  # [batch, head, q, k]
    conf.attention_mask = torch.ones(1, 2)
    (hook,) = [fn for _, fn in conf.hooks(1)]
    hook(scores)
    # head means of the per-query max: 1.5, 4.5, -1.5 -> normalised 1/3, 1, 0
    assert torch.allclose(conf.normalised(), torch.tensor([[1 / 3, 1.0, 0.0]]))


# ---- LoFiT ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("planted", [(1, 2), (2, 0)])
def test_lofit_ranks_the_only_useful_head_first(tiny_model, planted):
    """Zero W_O of every head but one: only that head's scaling can change the loss.

    The other heads' A get no task gradient at all, only the L1 pull towards 0, so a correct
    LoFiT ranks the planted head first by a wide margin.
    """
    with torch.no_grad():
        for layer, b in enumerate(tiny_model.blocks):
            for h in range(4):
                if (layer, h) != planted:
                    b.attn.W_O[h].zero_()
    r = select("lofit", tiny_model, toy_data(32), k=1, epochs=3)
    assert r.heads() == [planted]
    others = r.scores.clone()
    others[planted] = 0
    assert float(r.scores[planted]) > 3 * float(others.max())
    assert r.record["steps"] == 12 and len(r.record["loss"]) == 12


# ---- ITI -----------------------------------------------------------------------------------------
def test_iti_probe_is_accurate_on_a_separable_head():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 2
    x = torch.randn(300, 2, 3, 8, generator=g)
    x[:, 1, 2] += 1.5 * (2 * y[:, None] - 1) * torch.linspace(1, 2, 8)  # head (1, 2) separates the classes
    acc, loglik = fit_probes(x[:240], y[:240], x[240:], y[240:])
    assert float(acc[1, 2]) >= 0.98
    others = acc.clone()
    others[1, 2] = 0
    assert float(others.max()) < 0.75
    assert int(loglik.argmax()) == 1 * 3 + 2


def test_iti_on_a_model_where_the_answer_token_is_visible():
    """Correct answers end in token 95, wrong ones in 96, with opposite embeddings; every layer-0
    head attends to its own position (W_K = 20 W_Q; rotary leaves the self dot product alone), so
    its output at the answer token is +-(the token's value) and the probe separates the classes."""
    torch.manual_seed(0)
    model = HookedTransformer(tiny_cfg(n_key_value_heads=None)).eval()
    with torch.no_grad():
        model.embed.W_E[95] = 1.0
        model.embed.W_E[96] = -1.0
        attn = model.blocks[0].attn
        attn.W_K.copy_(20.0 * attn.W_Q)
    g = torch.Generator().manual_seed(0)
    data = []
    for _ in range(40):
        prompt = torch.randint(0, 90, (int(torch.randint(4, 10, (1,), generator=g)),), generator=g).tolist()
        data.append({"input_ids": prompt + [95], "labels": [-100] * len(prompt) + [95], "wrong_answers": [[96]]})
    r = select("iti", model, data, k=4)
    assert float(r.scores[0].min()) >= 0.9 and float(r.scores[0].max()) == 1.0, r.scores
    assert r.mask[0].all()
    assert r.record["negatives"] == "wrong_answers" and r.record["n_probe_examples"] == 80
    assert r.record["n_train"] == 64 and r.record["n_val"] == 16
    assert r.record["directions"].shape == (3, 4, 8) and r.record["projection_std"].shape == (3, 4)


def test_iti_contrastive_rows_format_wrong_answers_like_the_gold_one():
    from jola_lens.selection import contrastive_rows

    class Chars:
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[ord(c) for c in t] for t in texts]}

    ex = {"id": "0", "question": "Q?", "choices": ["ab", "cd", "ef"], "answer": "answer2"}
    row = contrastive_rows([ex], Chars(), style="cloze", target="choice_text")[0]
    gold = [t for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100]
    assert "".join(map(chr, gold)) == " cd"
    assert ["".join(map(chr, w)) for w in row["wrong_answers"]] == [" ab", " ef"]
    row = contrastive_rows([ex], Chars(), style="alpaca", target="label")[0]
    assert ["".join(map(chr, w)) for w in row["wrong_answers"]] == ["answer1", "answer3"]


# ---- SMP -----------------------------------------------------------------------------------------
def test_smp_scorer_save_load_gives_identical_scores(tiny_model, tmp_path):
    data = toy_data(12)
    scorer, _ = meta_train_smp(tiny_model, {"a": data[:6], "b": data[6:]}, steps=3, batch_size=3, size=32)
    save_scorer(scorer, tmp_path, {"note": "test"})
    assert {p.name for p in tmp_path.iterdir()} == {"scorer.safetensors", "scorer.json"}
    back = load_scorer(tmp_path)
    assert back.config() == scorer.config() and back.meta["note"] == "test"
    assert torch.equal(head_scores(scorer, tiny_model, data), head_scores(back, tiny_model, data))
    r1 = select("smp", tiny_model, data, k=3, scorer=scorer)
    r2 = select("smp", tiny_model, data, k=3, scorer=tmp_path)
    assert torch.equal(r1.scores, r2.scores) and torch.equal(r1.mask, r2.mask)
    assert select("smp", tiny_model, data, k=None, scorer=tmp_path).mask.sum(1).tolist() == [2, 2, 2]


def test_smp_scorer_shape_checks():
    with pytest.raises(ValueError):
        SMPScorer(size=48)
    assert SMPScorer(size=32).eval()(torch.rand(5, 2, 32, 32)).shape == (5,)
    with torch.no_grad():
        out = SMPScorer(size=64, mask_channel=False).eval()(torch.rand(2, 1, 64, 64))
    assert float(out.min()) >= 0 and float(out.max()) <= 2


def _smp_toy_model() -> HookedTransformer:
    """One layer, four heads. Head 1 has a peaked attention pattern and is the only one that writes
    to the residual stream; heads 0, 2 and 3 attend uniformly and write nothing. Its output is kept
    small, so the representation KL shrinks monotonically as head 1 is restored (the straight-through
    gradient then points the right way)."""
    torch.manual_seed(0)
    model = HookedTransformer(tiny_cfg(n_layers=1, n_heads=4, n_key_value_heads=None)).eval()
    with torch.no_grad():
        for h in range(4):
            if h == 1:
                model.blocks[0].attn.W_Q[h] *= 3.0
                model.blocks[0].attn.W_O[h] *= 0.1
            else:
                model.blocks[0].attn.W_Q[h].zero_()
                model.blocks[0].attn.W_O[h].zero_()
    return model


def _expected_meta_loss(model, scorer, batch, scores_data) -> float:
    """The meta-loss averaged exactly over the policy's masks (one layer: 2 of 4 heads kept).

    Draws with replacement until two distinct heads: P({a, b}) = p_a p_b / (1 - p_a) + p_a p_b / (1 - p_b).
    """
    p = head_scores(scorer, model, scores_data)[0]
    p = p / p.sum()
    with torch.no_grad():
        ref = _pooled(model, batch["input_ids"], batch["attention_mask"])
        total = 0.0
        for a, b in itertools.combinations(range(4), 2):
            mask = torch.zeros(1, 4)
            mask[0, [a, b]] = 1.0
            with model.hooks(fwd_hooks=head_scale_hooks(model, lambda layer: mask[layer])):
                kl = 10.0 * representation_kl(ref, _pooled(model, batch["input_ids"], batch["attention_mask"]))
            total += float(kl) * float(p[a] * p[b] / (1 - p[a]) + p[a] * p[b] / (1 - p[b]))
    return total


def test_smp_meta_training_reduces_its_loss():
    model = _smp_toy_model()
    data = toy_data(48)
    held_out = collate(data[32:], 0)
    torch.manual_seed(0)
    scorer = SMPScorer(size=32)
    before = _expected_meta_loss(model, scorer, held_out, data[32:])
    # SMP's own SGD at lr 2e-2 needs thousands of steps; Adam shows the same objective improving in 100
    scorer, history = meta_train_smp(model, {"a": data[:16], "b": data[16:32]}, steps=100, batch_size=8,
                                     scorer=scorer, optimizer="adam", lr=1e-3)
    after = _expected_meta_loss(model, scorer, held_out, data[32:])
    assert after < 0.7 * before, (before, after)
    s = head_scores(scorer, model, data[32:])[0]
    assert int(s.argmax()) == 1 and float(s[1]) > float(s[[0, 2, 3]].max()) + 0.3
    assert len(history["loss"]) == 100 and history["settings"]["optimizer"] == "adam"


def test_smp_batchnorm_recalibration_makes_eval_scores_follow_training(tiny_model):
    """Without recalibration the running variance (initialised at 1) dwarfs the tiny activations
    of the N(0, 0.01)-initialised convs, and every head gets the same eval-mode score."""
    data = toy_data(16)
    plain, _ = meta_train_smp(tiny_model, {"a": data}, steps=3, batch_size=4, size=32, recalibration_batches=0)
    recal, _ = meta_train_smp(tiny_model, {"a": data}, steps=3, batch_size=4, size=32, recalibration_batches=4)
    spread = lambda sc: float(head_scores(sc, tiny_model, data).std())  # noqa: E731
    assert spread(recal) > 10 * spread(plain)


# ---- edit after selection ---------------------------------------------------------------------------
def test_edit_on_mask_trains_only_the_masked_heads(tiny_model):
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[0, 1] = mask[2, 3] = True
    base = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    torch.manual_seed(7)
    init = JoLAModel(tiny_model, JoLAConfig(gate_mode="none"))
    torch.manual_seed(7)
    jm, result = edit_on_mask(tiny_model, mask, toy_data(16), toy_data(4, seed=1),
                              TrainConfig(epochs=2, batch_size=4, warmup_steps=1, lr=5e-2), return_result=True)
    assert result.steps == 8
    assert jm.config.gate_mode == "none" and torch.equal(jm.edits["attn"].mask, mask)
    for n, p in tiny_model.named_parameters():
        assert torch.equal(p, base[n]), n
        assert not p.requires_grad, n
    e, e0 = jm.edits["attn"], init.edits["attn"]
    for kind in ("a", "m"):
        moved = (getattr(e, kind) - getattr(e0, kind)).abs().sum(-1) > 0
        assert torch.equal(moved, mask), kind
    # one more backward pass: gradients live only on the masked heads
    jm.train()
    b = collate(toy_data(4), 0)
    with jm.applied():
        loss = answer_loss(tiny_model, b["input_ids"], b["labels"], b["attention_mask"])
    loss.backward()
    for kind in ("a", "m"):
        g = getattr(e, kind).grad.abs().sum(-1)
        assert torch.equal(g > 0, mask), kind
    assert all(p.grad is None for p in tiny_model.parameters())


def test_edit_on_mask_ignores_gates_and_penalty(tiny_model):
    mask = top_k_mask(torch.arange(12.0).reshape(3, 4), 2)
    jm = edit_on_mask(tiny_model, mask, toy_data(8), None, TrainConfig(epochs=1, batch_size=4, penalty="paper"),
                      jola_config=JoLAConfig(gate_mode="two"))
    assert jm.config.gate_mode == "none" and not list(jm.edits["attn"].gate_modules())
    assert jm.n_trainable_parameters() == 2 * 2 * 8


# ---- helpers ----------------------------------------------------------------------------------------
ANSWER = 42


def _answer_head_model(useful: tuple[tuple[int, int], ...]) -> HookedTransformer:
    """A tiny model (no key/value sharing) where only the ``useful`` heads write to the residual
    stream, and each writes a large constant push towards token ``ANSWER``: its value is a
    constant (W_V = 0, b_V = e_0, so z = e_0 whatever it attends to) and W_O maps e_0 to the
    unembedding direction of ``ANSWER``. Removing a useful head raises the answer loss."""
    torch.manual_seed(0)
    model = HookedTransformer(tiny_cfg(n_key_value_heads=None)).eval()
    u = model.W_U[:, ANSWER].detach()
    with torch.no_grad():
        for layer, b in enumerate(model.blocks):
            for h in range(model.cfg.n_heads):
                b.attn.W_O[h].zero_()
                if (layer, h) in useful:
                    b.attn.W_V[h].zero_()
                    b.attn.b_V[h].zero_()
                    b.attn.b_V[h, 0] = 1.0
                    b.attn.W_O[h, 0] = 3.0 * u / u.norm()
    return model


def _constant_answer_data(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        prompt = torch.randint(0, 97, (int(torch.randint(4, 10, (1,), generator=g)),), generator=g).tolist()
        out.append({"input_ids": prompt + [ANSWER], "labels": [-100] * len(prompt) + [ANSWER]})
    return out
