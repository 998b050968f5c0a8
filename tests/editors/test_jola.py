import json

import pytest
import torch
import yaml
from transformer_lens import HookedTransformer

from jola_lens import JoLAConfig, JoLALoadError, JoLAModel
from jola_lens.edits import hook_name
from tests.conftest import tiny_cfg
from tests.helpers import randomize


def test_only_edits_require_grad_and_count(tiny_model):
    jm = JoLAModel(tiny_model)
    trainable = [n for n, p in jm.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("edits.") for n in trainable)
    assert not tiny_model.unembed.W_U.requires_grad and not tiny_model.embed.W_E.requires_grad
    c = tiny_model.cfg
    assert jm.n_trainable_parameters() == c.n_layers * c.n_heads * (2 * c.d_head + 2)


@pytest.mark.parametrize(
    "cfg,expected",
    [
        (JoLAConfig(edit="additive"), 3 * 4 * (8 + 1)),
        (JoLAConfig(gate_mode="shared"), 3 * 4 * (16 + 1)),
        (JoLAConfig(gate_mode="none"), 3 * 4 * 16),
        (JoLAConfig(layers=[1]), 1 * 4 * (16 + 2)),
    ],
)
def test_parameter_count_variants(tiny_model, cfg, expected):
    assert JoLAModel(tiny_model, cfg).n_trainable_parameters() == expected


def test_identity_edits_are_bit_identical(tiny_model, tokens):
    base = tiny_model(tokens)
    jm = JoLAModel(tiny_model, JoLAConfig(init_std=0.0)).eval()
    assert torch.equal(jm(tokens), base)  # zero vectors, gates ~0.5
    jm2 = JoLAModel(tiny_model).eval()
    randomize(jm2, gate_value=-20.0)  # closed gates, non-zero vectors
    assert torch.equal(jm2(tokens), base)
    randomize(jm2)
    assert (jm2(tokens) - base).abs().max() > 1e-2


def test_gradient_reaches_every_edit_param_and_no_base_param(tiny_model, tokens):
    jm = JoLAModel(tiny_model, JoLAConfig(sites=("attn", "mlp"))).train()
    randomize(jm, scale=0.1, gate_value=1.0)
    torch.manual_seed(0)
    loss = jm(tokens, return_type="loss")
    loss.backward()
    for n, p in jm.named_edit_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    assert all(p.grad is None for p in tiny_model.parameters())


def test_one_gate_sample_per_forward_shared_across_layers(tiny_model, tokens):
    jm = JoLAModel(tiny_model).train()
    e = jm.edits["attn"]
    seen = []
    orig = e.apply

    def spy(z, layer):
        out = orig(z, layer)
        seen.append(e._current["a"].detach().clone())
        return out

    e.apply = spy
    jm(tokens)
    first = list(seen)
    assert len(first) == 3 and all(torch.equal(first[0], s) for s in first)
    seen.clear()
    jm(tokens)
    assert not torch.equal(first[0], seen[0])  # a new sample on the next pass
    assert torch.equal(e.last_gates["a"], seen[0])  # the log sees what the pass used


def test_hooks_removed_after_context_even_on_exception(tiny_model, tokens):
    jm = JoLAModel(tiny_model)
    user_calls = []
    tiny_model.blocks[0].attn.hook_z.add_hook(lambda x, hook: user_calls.append(1))
    with pytest.raises(RuntimeError):
        with jm.applied():
            assert len(tiny_model.blocks[0].attn.hook_z.fwd_hooks) == 2
            raise RuntimeError("boom")
    for layer in range(3):
        hp = tiny_model.hook_dict[hook_name("attn", layer)]
        assert len(hp.fwd_hooks) == (1 if layer == 0 else 0)
    tiny_model(tokens)
    assert user_calls == [1]  # the user's own hook survives
    tiny_model.reset_hooks()


def test_merge_equals_hooked(tiny_model, tokens):
    for sites in [("attn",), ("mlp",), ("attn", "mlp")]:
        jm = JoLAModel(tiny_model, JoLAConfig(sites=sites)).eval()
        randomize(jm, gate_value=0.5)
        hooked = jm(tokens)
        merged = jm.merge()
        assert isinstance(merged, HookedTransformer)
        assert (merged(tokens) - hooked).abs().max() < 1e-4, sites
        assert torch.equal(tiny_model(tokens), tiny_model(tokens))
        assert (tiny_model(tokens) - hooked).abs().max() > 1e-3  # base untouched by merge


def test_merge_equals_hooked_in_generation_with_kv_cache(tiny_model, tokens):
    jm = JoLAModel(tiny_model).eval()
    randomize(jm)
    merged = jm.merge()
    kw = dict(max_new_tokens=8, do_sample=False, verbose=False, stop_at_eos=False)
    for cache in (True, False):
        a = jm.generate(tokens[:, :5], use_past_kv_cache=cache, **kw)
        b = merged.generate(tokens[:, :5], use_past_kv_cache=cache, **kw)
        assert torch.equal(a, b)
    base = tiny_model.generate(tokens[:, :5], use_past_kv_cache=True, **kw)
    assert not torch.equal(base, a)


def test_save_load_roundtrip_exact(tiny_model, tokens, tmp_path):
    jm = JoLAModel(tiny_model, JoLAConfig(layers=[0, 2], gate_mode="two")).eval()
    randomize(jm)
    jm.save(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "jola_config.json").read_text())
    assert meta["model"]["n_heads"] == 4 and meta["jola_config"]["layers"] == [0, 2]
    jm2 = JoLAModel.load(tmp_path / "run", tiny_model).eval()
    assert torch.equal(jm(tokens), jm2(tokens))


def test_load_onto_other_shape_fails_clearly(tiny_model, tmp_path):
    JoLAModel(tiny_model).save(tmp_path)
    other = HookedTransformer(tiny_cfg(n_heads=8, n_key_value_heads=4, d_head=4, rotary_dim=4))
    with pytest.raises(JoLALoadError, match=r"n_heads: saved 4, this model 8"):
        JoLAModel.load(tmp_path, other)


def test_corrupted_files_fail_clearly(tiny_model, tmp_path):
    JoLAModel(tiny_model).save(tmp_path)
    data = (tmp_path / "edits.safetensors").read_bytes()
    (tmp_path / "edits.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(JoLALoadError, match="corrupted"):
        JoLAModel.load(tmp_path, tiny_model)
    (tmp_path / "jola_config.json").write_text("{not json")
    with pytest.raises(JoLALoadError, match="not a valid JoLA config"):
        JoLAModel.load(tmp_path, tiny_model)
    with pytest.raises(JoLALoadError, match="not found"):
        JoLAModel.load(tmp_path / "missing", tiny_model)


def test_head_mask_restricts_edits(tiny_model, tokens):
    jm = JoLAModel(tiny_model, JoLAConfig(gate_mode="none")).eval()
    randomize(jm)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[1, 2] = True
    jm.set_head_mask(mask)
    assert jm.open_mask().sum() == 1 and jm.open_mask()[1, 2]
    rows = jm.active_heads()
    assert [(r["layer"], r["head"]) for r in rows] == [(1, 2)]
    with pytest.raises(ValueError):
        jm.set_head_mask(torch.ones(2, 2, dtype=torch.bool))


def test_active_heads_and_counts(tiny_model):
    jm = JoLAModel(tiny_model)
    with torch.no_grad():
        e = jm.edits["attn"]
        e.gate_a.log_alpha.fill_(-10)
        e.gate_m.log_alpha.fill_(-10)
        e.gate_a.log_alpha[2, 1] = 5.0
        e.gate_m.log_alpha[0, 3] = 5.0
    rows = jm.active_heads()
    assert {(r["layer"], r["head"]) for r in rows} == {(2, 1), (0, 3)}
    assert jm.open_gate_counts() == {"additive": 1, "multiplicative": 1, "total": 2}


def test_config_roundtrip_and_validation(tmp_path):
    cfg = JoLAConfig(layers=[3, 1], edit="multiplicative", gate_mode="shared", sites=("attn", "mlp"))
    assert cfg.layers == [1, 3]
    d = cfg.to_dict()
    assert JoLAConfig.from_dict(json.loads(json.dumps(d))) == cfg
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(d))
    assert JoLAConfig.from_dict(yaml.safe_load(p.read_text())) == cfg
    for bad in [dict(edit="x"), dict(gate_mode="x"), dict(sites=("resid",)), dict(layers=[]), dict(layers=[-1])]:
        with pytest.raises(ValueError):
            JoLAConfig(**bad)
    with pytest.raises(ValueError, match="unknown JoLAConfig fields"):
        JoLAConfig.from_dict({"lr": 1})


def test_layers_out_of_range(tiny_model):
    with pytest.raises(ValueError, match="do not exist"):
        JoLAModel(tiny_model, JoLAConfig(layers=[5]))


def test_compat_names(tiny_model):
    d = JoLAConfig.get_jola_config(default=True)
    assert d["training_config"]["learning_rate"] == 5e-3 and d["jola_config"]["gate_scheduler"] == "expon"
    jm = JoLAModel(tiny_model)
    params = jm.unfreeze_jola_params()
    assert len(params) == 4 and all(p.requires_grad for p in params)
