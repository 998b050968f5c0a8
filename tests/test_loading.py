"""Local HF checkpoints of each supported family load with exact hook_z semantics (tiny random models)."""

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from jola_lens import ModelLoadError, load_model
from jola_lens.loading import hf_config_to_tl


def _tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    vocab = {f"t{i}": i for i in range(vocab_size - 2)}
    vocab["<unk>"] = vocab_size - 2
    vocab["<eos>"] = vocab_size - 1
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")


FAMILIES = {
    "llama": dict(model_type="llama", rope_theta=50000.0),
    "mistral": dict(model_type="mistral", sliding_window=None),
    "qwen2": dict(model_type="qwen2"),
    "gemma": dict(model_type="gemma", head_dim=8, hidden_activation="gelu_pytorch_tanh"),
    "gemma2": dict(model_type="gemma2", head_dim=8, hidden_activation="gelu_pytorch_tanh",
                   query_pre_attn_scalar=8, sliding_window=16),
}


def _save_tiny(tmp_path, family: str):
    extra = dict(FAMILIES[family])
    model_type = extra.pop("model_type")
    cfg = AutoConfig.for_model(
        model_type,
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=family.startswith("gemma"),
        **extra,
    )
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():  # random norms/biases so that a wrong conversion shows
        for n, p in hf.named_parameters():
            if "norm" in n or n.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    d = tmp_path / family
    hf.save_pretrained(d)
    _tokenizer(64).save_pretrained(d)
    return hf, d


@pytest.mark.parametrize("family", list(FAMILIES))
def test_local_checkpoint_parity(tmp_path, family):
    hf, d = _save_tiny(tmp_path, family)
    model = load_model(d)
    assert model.cfg.original_architecture == hf.config.architectures[0]
    tokens = torch.randint(0, 62, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(tokens).logits
        out = model(tokens)
    assert (out - ref).abs().max() < 1e-4, family
    # hook_z is the per-head input of o_proj in the HF model
    captured = {}
    h = hf.model.layers[1].self_attn.o_proj.register_forward_pre_hook(lambda m, a: captured.setdefault("z", a[0]))
    with torch.no_grad():
        hf(tokens)
        _, cache = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_z")
    h.remove()
    z = cache["blocks.1.attn.hook_z"].flatten(-2)
    assert (z - captured["z"]).abs().max() < 1e-5


def test_rope_theta_is_read_from_config(tmp_path):
    hf, d = _save_tiny(tmp_path, "llama")
    assert load_model(d).cfg.rotary_base == 50000.0


def test_llama3_rope_scaling_is_mapped():
    cfg = AutoConfig.for_model(
        "llama", hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
        vocab_size=64, max_position_embeddings=256,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    )
    cfg.architectures = ["LlamaForCausalLM"]
    d = hf_config_to_tl(cfg, tokenizer_prepends_bos=True)
    assert d["rotary_base"] == 500000.0 and d["use_NTK_by_parts_rope"] and d["NTK_by_parts_factor"] == 8.0


def test_unsupported_architecture(tmp_path):
    d = tmp_path / "gpt2ish"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    _tokenizer(64).save_pretrained(d)
    with pytest.raises(ModelLoadError, match="not supported"):
        load_model(d)


def test_unknown_name_and_offline_hub_fail_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not an existing checkpoint directory"):
        load_model("no-such-model-anywhere")
    with pytest.raises(ModelLoadError, match=r"could not load 'gpt2'.*not reachable"):
        load_model("gpt2")


def test_gguf_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(tmp_path / "nothing.gguf")


def _owned_cache(tmp_path):
    """A tiny checkpoint marked as one of our own caches (as a dequantised GGUF is)."""
    from jola_lens.loading import safetensors_digest

    _, d = _save_tiny(tmp_path, "llama")
    digests = {f.name: safetensors_digest(f) for f in d.glob("*.safetensors")}
    (d / "jola_lens_cache.json").write_text(json.dumps({"source": "tiny", "format": 1, "digests": digests}))
    return d


def _flip(path, offset=-5):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_converted_cache_is_rebuilt_with_a_note(tmp_path, capsys, damage):
    d = _owned_cache(tmp_path)
    first = load_model(d, kernel_layout=False)  # converts and writes tl_state_float32.safetensors + its digest
    cache = d / "tl_state_float32.safetensors"
    assert cache.is_file() and (d / "tl_state_float32.digest.json").is_file()
    if damage == "flip":
        _flip(cache)
    else:
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    capsys.readouterr()
    again = load_model(d, kernel_layout=False)
    err = capsys.readouterr().err
    ours = [x for x in err.splitlines() if "[jola_lens]" in x]  # (transformers adds its loading bars)
    assert len(ours) == 1 and "converted-model cache" in ours[0] and "rebuilding it" in ours[0]
    for (n, p), (_, q) in zip(first.named_parameters(), again.named_parameters()):
        assert torch.equal(p, q), n
    capsys.readouterr()
    load_model(d, kernel_layout=False)  # rebuilt: the next load is quiet
    assert "damaged" not in capsys.readouterr().err


def test_the_cache_is_read_straight_into_the_models_own_weights(tmp_path):
    # tensor by tensor into each parameter's own memory (no file map kept behind the weights), with the
    # same digest as safetensors_digest and the same values as safetensors' own reader
    from safetensors.torch import load_file

    from jola_lens.loading import _read_tl_cache_into, safetensors_digest

    d = _owned_cache(tmp_path)
    first = load_model(d, kernel_layout=False)  # converts and writes the cache
    cache = d / "tl_state_float32.safetensors"
    fresh = load_model(d, kernel_layout=False)  # read from the cache
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
        assert _read_tl_cache_into(fresh, cache) == safetensors_digest(cache)
    stored = load_file(str(cache))
    for name, t in fresh.state_dict().items():
        assert torch.equal(t, stored[name]), name
    for (n, p), (_, q) in zip(first.named_parameters(), fresh.named_parameters()):
        assert torch.equal(p, q), n
    storages = {p.untyped_storage().data_ptr() for p in fresh.parameters()}
    assert len(storages) == len(list(fresh.parameters()))


def test_a_damaged_own_checkpoint_is_rebuilt_by_its_maker(tmp_path, capsys):
    from jola_lens.loading import _load_cached

    made = []

    def make():
        d = tmp_path / "llama"
        if not (d / "jola_lens_cache.json").is_file():
            made.append(_owned_cache(tmp_path))
        return d

    make()
    _flip(tmp_path / "llama" / "model.safetensors")  # the dequantised HF weights themselves
    m = _load_cached(make, "cpu", torch.float32, "tiny")
    assert len(made) == 2 and "rebuilding it" in capsys.readouterr().err
    assert m.cfg.n_layers == 2


def test_a_damaged_own_checkpoint_given_by_path_is_one_clear_error(tmp_path):
    d = _owned_cache(tmp_path)
    _flip(d / "model.safetensors")
    with pytest.raises(ModelLoadError, match="damaged converted-model cache"):
        load_model(d)
