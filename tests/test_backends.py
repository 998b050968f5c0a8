"""The backends (issue 23): the same edit on TransformerLens's HookedTransformer, on its TransformerBridge
and on the plain HF model.

On tiny random checkpoints of every family the hf and bridge backends know (saved by the test, no
downloads): the hook input is the HF output-projection input; with no hooks the logits are the HF
model's own; ``hook_z`` and the logits agree across backends (against the hooked backend where
TransformerLens 3.9 converts the family, else against hf), also with the same JoLA edit attached,
and a few training steps from one seed give the same edits; ``merge()`` equals the hooked-in edit;
scoring and greedy generation (KV cache) agree across backends.
"""

from __future__ import annotations

import pytest
import torch

from jola_lens import JoLAModel
from jola_lens.editors import get_editor
from jola_lens.loading import ModelLoadError, hooked_available, load_model
from jola_lens.testing import TINY_FAMILIES, save_tiny_checkpoint
from jola_lens.train import TrainConfig
from tests.helpers import prompt_answer_rows, randomize

#: the families TransformerLens 3.9's HookedTransformer converts (jola_lens.loading.SUPPORTED_ARCHITECTURES)
HOOKED_FAMILIES = ("llama", "mistral", "qwen2", "gemma", "gemma2")
TOKENS = torch.tensor([[3, 5, 7, 9, 11, 2, 4], [4, 6, 8, 10, 1, 0, 0]])
MASK = torch.tensor([[1] * 7, [1] * 5 + [0, 0]])
REAL = MASK.bool()
#: TransformerLens 4.x (make test-tl4) has no HookedTransformer: the comparisons with it run under 3.9 (make test)
needs_hooked = pytest.mark.skipif(not hooked_available(), reason="TransformerLens 4.x has no HookedTransformer")
#: every backend this TransformerLens has (4.x: no hooked), and the two that wrap the HF model itself
ALL = ["hooked", "bridge", "hf"] if hooked_available() else ["bridge", "hf"]
ON_HF = ["bridge", "hf"]
BOTH = ALL  # the first name of this list, kept for readers of older test ids


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("families")
    return {fam: save_tiny_checkpoint(d / fam, family=fam) for fam in TINY_FAMILIES}


def _max_diff(a, b):
    return (a - b)[REAL].abs().max().item()


@pytest.mark.parametrize("backend", ON_HF)
@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_hf_backend_is_the_hf_model_and_hook_z_is_the_projection_input(checkpoints, family, backend):
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(checkpoints[family]).eval()
    model = load_model(checkpoints[family], backend=backend)
    assert model.cfg.backend == backend and model.cfg.model_type == family
    seen, hooked_z = {}, {}
    proj = model.o_proj(1)
    handle = proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach().clone()))
    try:
        with torch.no_grad():
            logits = model.run_with_hooks(TOKENS, attention_mask=MASK, fwd_hooks=[
                ("blocks.1.attn.hook_z", lambda z, hook: hooked_z.__setitem__("z", z.detach().clone()))])
            want = ref(TOKENS, attention_mask=MASK).logits
    finally:
        handle.remove()
    z = hooked_z["z"]
    assert z.shape == (2, 7, model.cfg.n_heads, model.cfg.d_head)
    assert torch.equal(z.reshape(2, 7, -1), seen["x"])
    assert _max_diff(logits, want) < 1e-5
    # a returned tensor becomes the projection's input
    with torch.no_grad():
        zeroed = model.run_with_hooks(TOKENS, attention_mask=MASK,
                                      fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: z * 0)])
    assert _max_diff(zeroed, logits) > 1e-3


@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_same_edit_same_logits_on_every_backend(checkpoints, family):
    """The reference is the hooked backend where TransformerLens 3.9 converts the family, else hf."""
    backends = [b for b in ALL if b != "hooked" or family in HOOKED_FAMILIES]
    models = [load_model(checkpoints[family], backend=b) for b in backends]
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(2)]
    logits, caches, edited = [], [], []
    for model in models:
        with torch.no_grad():
            out, cache = model.run_with_cache(TOKENS, attention_mask=MASK, names_filter=lambda n: n in names)
        assert sorted(cache.keys()) == names  # the names asked for, on every backend
        logits.append(out)
        caches.append(cache)
        jm = JoLAModel(model).eval()
        randomize(jm)
        with torch.no_grad(), jm.applied():
            edited.append(model(TOKENS, attention_mask=MASK))
    assert _max_diff(edited[0], logits[0]) > 1e-2  # the edit changes the output...
    for b, out, cache, ed in zip(backends[1:], logits[1:], caches[1:], edited[1:]):
        assert _max_diff(out, logits[0]) < 1e-4, b
        assert max(_max_diff(cache[k], caches[0][k]) for k in names) < 1e-5, b
        assert _max_diff(ed, edited[0]) < 1e-4, b  # ...the same way on every backend


@pytest.mark.parametrize("backend", ON_HF)
@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_merge_on_the_hf_backend_equals_the_hooked_edit(checkpoints, family, backend):
    model = load_model(checkpoints[family], backend=backend)
    jm = JoLAModel(model).eval()
    randomize(jm)
    _assert_merge_is_the_edit(model, jm)
    assert model.o_proj(0).weight is not jm.merge().o_proj(0).weight  # a copy: the base model is untouched


def _assert_merge_is_the_edit(model, editor):
    with torch.no_grad():
        with editor.applied():
            edited = model(TOKENS, attention_mask=MASK)
        merged = editor.merge()(TOKENS, attention_mask=MASK)
        plain = model(TOKENS, attention_mask=MASK)
    assert _max_diff(edited, plain) > 1e-2
    assert _max_diff(merged, edited) < 1e-4


@pytest.mark.parametrize("name", ["jola", "lofit", "iti"])
def test_training_from_one_seed_gives_the_same_edits_on_every_backend(checkpoints, name):
    options = {"lofit": {"k": 3, "stage1": {"epochs": 1}}, "iti": {"k": 2}}.get(name, {})
    data = prompt_answer_rows()
    data = [{"input_ids": [t % 37 for t in r["input_ids"]], "labels": [t % 37 if t != -100 else t for t in r["labels"]]}
            for r in data]
    states, logits = [], []
    for backend in ALL:
        model = load_model(checkpoints["llama"], backend=backend)
        torch.manual_seed(0)
        ed = get_editor(model, name, **options)
        ed.fit(data, data[:4], TrainConfig(epochs=2, warmup_steps=0, lr=5e-2), progress=False)
        ed.eval()
        states.append({k: v.detach().clone() for k, v in ed.state_dict().items() if not k.startswith("model.")})
        with torch.no_grad(), ed.applied():
            logits.append(model(TOKENS, attention_mask=MASK))
    assert states[0]
    for b, state, out in zip(ALL[1:], states[1:], logits[1:]):
        assert state.keys() == states[0].keys(), b
        for k in states[0]:
            assert torch.allclose(states[0][k].float(), state[k].float(), atol=1e-4), (b, k)
        assert _max_diff(logits[0], out) < 1e-4, b


@pytest.mark.parametrize("name", ["jola", "iti"])
def test_scoring_and_generation_agree_across_backends(checkpoints, name):
    """Option scoring (with and without the shared-prompt KV cache) and greedy generation: JoLA, and
    ITI, whose edit starts at the last prompt token (the cache's continuation passes are all edited)."""
    from jola_lens.eval import generate_tokens, score_token_continuations

    prompts = [[3, 5, 7], [4, 6, 8, 10, 1]]
    conts = [[[9, 11], [9, 12, 13]], [[2], [5, 6]]]
    scores, texts = [], []
    for backend in ALL:
        model = load_model(checkpoints["llama"], backend=backend)
        torch.manual_seed(0)
        jm = get_editor(model, name, **({"k": 3} if name == "iti" else {})).eval()
        if name == "jola":
            randomize(jm)
        else:  # ITI: steer heads (0, 1) and (1, 2) along a random direction
            jm.shift.copy_(torch.randn(jm.shift.shape, generator=torch.Generator().manual_seed(5)))
            jm.mask[0, 1] = jm.mask[1, 2] = True
            jm.alpha = 3.0
        for share in (True, False):
            scores.append(score_token_continuations(jm, prompts, conts, share_prompt=share))
        texts.append(generate_tokens(jm, prompts, max_new_tokens=6))
    flat = [[s for row in run for s in row] for run in scores]
    for run in flat[1:]:
        assert max(abs(a - b) for a, b in zip(flat[0], run)) < 1e-4
    assert all(t == texts[0] for t in texts[1:]) and all(len(t) == 6 for t in texts[0])


def test_hf_backend_refuses_an_unknown_family_and_a_bad_backend(tmp_path):
    import json

    d = tmp_path / "odd"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    for backend in ON_HF:
        with pytest.raises(ModelLoadError, match=f"model type 'mamba' is not supported by the {backend} backend"):
            load_model(d, backend=backend)
    with pytest.raises(ModelLoadError, match="unknown backend 'tl5'"):
        load_model(d, backend="tl5")


@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_export_round_trip(checkpoints, family, tmp_path):
    """save_merged_hf -> AutoModelForCausalLM.from_pretrained: the same logits and greedy text as the hooked edit."""
    import json

    from transformers import AutoModelForCausalLM

    from jola_lens.backends.export import save_merged_hf
    from jola_lens.eval import generate_tokens

    model = load_model(checkpoints[family], backend="hf")
    jm = JoLAModel(model).eval()
    randomize(jm)
    info = save_merged_hf(jm, tmp_path / "out")
    assert info["max_abs_diff"] < 1e-4
    meta = json.loads((tmp_path / "out" / "config.json").read_text())["jola_lens"]
    assert meta["architecture"] == info["architecture"] and meta["max_abs_diff"] == info["max_abs_diff"]
    if family in ("mistral", "qwen2", "phi3"):
        assert info["architecture"] == "LlamaForCausalLM" and "written as LlamaForCausalLM" in info["note"]
    assert info["added_biases"] == (family not in ("gpt2", "gpt_neox"))  # those two have an o_proj bias
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad(), jm.applied():
        want = model(TOKENS, attention_mask=MASK)
    got = reloaded(TOKENS, attention_mask=MASK).logits
    assert _max_diff(got, want) < 1e-4
    prompt = [3, 5, 7, 9]
    mine = generate_tokens(jm, [prompt], max_new_tokens=8)[0]
    theirs = reloaded.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, eos_token_id=None,
                               pad_token_id=0, min_new_tokens=8)[0, len(prompt):].tolist()
    assert mine and theirs[:len(mine)] == mine  # ours stops at EOS, theirs was told not to


def _train_by_cli(tmp_path, backend):
    """``jola-lens train --backend BACKEND`` on a tiny checkpoint: (checkpoint, run folder); the run records both."""
    import json

    from jola_lens.cli import main
    from jola_lens.testing import write_task

    ckpt, task = save_tiny_checkpoint(tmp_path / "ckpt"), write_task(tmp_path / "task", n_train=40, n_test=10)
    run = tmp_path / "run"
    assert main(["train", "--model", str(ckpt), "--data", str(task), "--backend", backend, "--out", str(run),
                 "--epochs", "1", "--no-progress", "--no-figures", "--no-generation"]) == 0
    meta = json.loads((run / "jola_config.json").read_text())
    assert meta["model_source"] == {"name_or_path": str(ckpt.resolve()), "backend": backend}
    return ckpt, run


@needs_hooked
def test_cli_trains_on_the_hf_backend_and_merges_to_an_hf_checkpoint(tmp_path, capsys):
    """train --backend hf -> merge --format hf (model from the run's record) -> the checkpoint loads on
    both backends (TransformerLens's converter keeps the new biases) with the edited logits."""
    from jola_lens.cli import main
    from jola_lens.editors import load_editor

    ckpt, run = _train_by_cli(tmp_path, "hf")
    assert main(["merge", str(run), "--format", "hf", "--out", str(tmp_path / "exp")]) == 0
    out = capsys.readouterr()
    assert "as a Hugging Face checkpoint (LlamaForCausalLM" in out.out and "attention_bias=True" in out.out
    assert "model from the run's record" in out.err
    edited = []
    for backend in ("hooked", "hf"):
        jm = load_editor(run, load_model(ckpt, backend=backend))
        with torch.no_grad(), jm.applied():
            edited.append(jm.model(TOKENS, attention_mask=MASK))
    assert _max_diff(edited[0], edited[1]) < 1e-4  # an hf-backend run loads onto the hooked backend too
    for backend in ("hooked", "hf"):
        with torch.no_grad():
            merged = load_model(tmp_path / "exp", backend=backend)(TOKENS, attention_mask=MASK)
        assert _max_diff(merged, edited[1]) < 1e-4, backend


def test_the_trainer_trains_the_same_with_gradient_checkpointing(checkpoints):
    """Trainer steps with checkpointing on: the recomputed layers run with the edit hooks attached (a
    backward pass outside the hooks' context broke the recompute), and the edits come out the same."""
    from jola_lens.train import TrainConfig, Trainer, collate

    model = load_model(checkpoints["llama"], backend="hf")
    rows = [{"input_ids": [t % 37 for t in r["input_ids"][:6]], "labels": [-100] * 3 + [t % 37 for t in
             r["input_ids"][3:6]]} for r in prompt_answer_rows(8)]
    batch = collate(rows, 0)
    edits = []
    for on in (False, True):
        if on:
            model.gradient_checkpointing_enable()
        torch.manual_seed(0)
        jm = JoLAModel(model)
        trainer = Trainer(jm, rows, None, TrainConfig(seed=0, batch_size=8), progress=False, pad_id=0)
        jm.train()
        for _ in range(2):
            trainer._train_step(batch)
        edits.append(torch.cat([p.detach().flatten() for p in jm.edit_parameters()]))
    model.gradient_checkpointing_disable()
    assert torch.allclose(edits[0], edits[1], atol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients(checkpoints):
    from jola_lens.train import answer_loss

    model = load_model(checkpoints["llama"], backend="hf")
    rows = prompt_answer_rows(4)
    ids = torch.tensor([[t % 37 for t in r["input_ids"][:6]] for r in rows])
    labels = ids.clone()
    labels[:, :3] = -100
    grads, calls = [], []
    for on in (False, True):
        if on:
            model.gradient_checkpointing_enable()
        torch.manual_seed(0)
        jm = JoLAModel(model).train()  # stochastic gates: the recompute must redraw the same sample
        randomize(jm)
        counter = lambda m, a: calls.append(on)  # noqa: E731
        h = model.o_proj(0).register_forward_pre_hook(counter)
        with jm.applied():
            answer_loss(model, ids, labels, torch.ones_like(ids)).backward()
        h.remove()
        grads.append(torch.cat([p.grad.flatten() for p in jm.edit_parameters()]))
    model.gradient_checkpointing_disable()
    assert calls.count(True) == 2 * calls.count(False)  # layer 0 ran again in the backward pass
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and grads[0].abs().sum() > 0
    assert not any(m.training for m in model.hf.modules())


@pytest.mark.parametrize("backend", BOTH)
def test_bf16_base_with_fp32_edits_trains_and_merges(checkpoints, backend):
    """A bfloat16 base: the edit tensors and gates stay float32 (cast at the hook), training lowers the
    loss, and merge equals the hooked-in edit within bfloat16 rounding (2e-2 on these logits)."""
    from jola_lens.train import answer_loss

    model = load_model(checkpoints["llama"], backend=backend, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    torch.manual_seed(0)
    jm = JoLAModel(model)
    assert all(p.dtype == torch.float32 for p in jm.edit_parameters())
    data = [{"input_ids": [t % 37 for t in r["input_ids"]], "labels": [t % 37 if t != -100 else t for t in r["labels"]]}
            for r in prompt_answer_rows()]
    from jola_lens.train import collate

    batch = collate(data, 0)

    def loss():
        with torch.no_grad(), jm.applied():
            return float(answer_loss(model, batch["input_ids"], batch["labels"], batch["attention_mask"]))

    jm.eval()
    before = loss()
    jm.fit(data, data[:4], TrainConfig(epochs=3, warmup_steps=0, lr=5e-2), progress=False)
    jm.eval()
    assert loss() < before - 0.05
    assert all(p.dtype == torch.float32 for p in jm.edit_parameters())
    with torch.no_grad():
        with jm.applied():
            edited = model(TOKENS, attention_mask=MASK).float()
        merged = jm.merge()(TOKENS, attention_mask=MASK).float()
    assert _max_diff(merged, edited) < 2e-2


@pytest.mark.parametrize(("backend", "family"), [
    pytest.param("hooked", "llama", marks=needs_hooked), ("bridge", "llama"), ("bridge", "gpt2")])
def test_an_editor_on_another_backend_exports_through_its_source(checkpoints, tmp_path, backend, family):
    from transformers import AutoModelForCausalLM

    model = load_model(checkpoints[family], backend=backend)
    jm = JoLAModel(model).eval()
    randomize(jm)
    info = jm.save_merged_hf(tmp_path / "out")
    assert info["max_abs_diff"] < 1e-4
    with torch.no_grad(), jm.applied():
        want = model(TOKENS, attention_mask=MASK)
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "out")(TOKENS, attention_mask=MASK).logits
    assert _max_diff(got, want) < 1e-4


@needs_hooked
def test_a_model_built_by_hand_cannot_be_exported(checkpoints, tmp_path):
    from transformer_lens import HookedTransformer

    from jola_lens.backends.export import ExportError

    bare = JoLAModel(HookedTransformer(load_model(checkpoints["llama"]).cfg))  # no checkpoint to go back to
    with pytest.raises(ExportError, match="not loaded by jola_lens.load_model"):
        bare.save_merged_hf(tmp_path / "bare")


@pytest.mark.parametrize("backend", ON_HF)
@pytest.mark.parametrize("name", ["lora", "bitfit", "red"])
def test_hooked_only_editors_say_so_on_the_hf_backend(checkpoints, name, backend):
    model = load_model(checkpoints["llama"], backend=backend)
    with pytest.raises(ValueError, match=f"TransformerLens-only hook points .* the {backend} backend .* "
                                         "backend='hooked'"):
        get_editor(model, name)


def test_bridge_backend_is_transformer_lens_own_bridge_with_a_working_kv_cache(checkpoints):
    """The editors' hook points are the bridge's; cached decoding (transformers 5 passes the layer cache as
    ``cache=``, the bridge's attention reads ``past_key_values=``) fills the cache and equals the full pass."""
    from transformer_lens.model_bridge import TransformerBridge

    model = load_model(checkpoints["llama"], backend="bridge")
    assert isinstance(model.bridge, TransformerBridge)
    assert model.hook_dict["blocks.1.attn.hook_z"] is model.bridge.blocks[1].attn.hook_z
    assert model.blocks[1].attn.hook_z is model.bridge.blocks[1].attn.hook_z
    ids = TOKENS[:1]

    def cached() -> torch.Tensor:
        cache = model.init_kv_cache(1)
        model(ids[:, :4], past_kv_cache=cache)
        out = model(ids[:, 4:], past_kv_cache=cache)
        assert cache.hf.get_seq_length() == (7 if model._handles else 0)
        return out

    with torch.no_grad():
        full = model(ids)[:, 4:]
        assert (cached() - full).abs().max() < 1e-5
        for h in model._handles:  # without the hand-over the bridge ignores the cache
            h.remove()
        model._handles = []
        assert (cached() - full).abs().max() > 1e-3
        model.rewire()
        assert (cached() - full).abs().max() < 1e-5
    with pytest.raises(NotImplementedError, match="backend='hf'"):
        model.gradient_checkpointing_enable()


def test_cli_trains_on_the_bridge_and_exports(tmp_path, capsys):
    """train --backend bridge records the backend; eval and merge take it from the record; --format tl
    (TransformerLens names, from the hooked backend) is refused for a bridge run with what to do."""
    from transformers import AutoModelForCausalLM

    from jola_lens.cli import main
    from jola_lens.editors import load_editor

    ckpt, run = _train_by_cli(tmp_path, "bridge")
    capsys.readouterr()
    assert main(["merge", str(run), "--out", str(tmp_path / "tl")]) == 2
    assert "on the bridge backend: use --format hf" in capsys.readouterr().err
    assert main(["merge", str(run), "--format", "hf", "--out", str(tmp_path / "exp")]) == 0
    assert "as a Hugging Face checkpoint (LlamaForCausalLM" in capsys.readouterr().out
    jm = load_editor(run, load_model(ckpt, backend="bridge"))
    with torch.no_grad(), jm.applied():
        want = jm.model(TOKENS, attention_mask=MASK)
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "exp")(TOKENS, attention_mask=MASK).logits
    assert _max_diff(got, want) < 1e-4


def test_the_bundled_model_on_every_backend():
    """SmolLM2-135M-Instruct: the same JoLA edit gives the same logits on every backend (1e-4, fp32) and the
    same greedy text."""
    from jola_lens.eval import generate_greedy

    prompts = ["The capital of France is", "Water boils at"]
    out, texts = {}, {}
    for backend in ALL:
        model = load_model("smollm2", backend=backend, verbose=False)
        jm = JoLAModel(model).eval()
        randomize(jm, scale=0.1)
        tokens = model.to_tokens(prompts)
        with torch.no_grad(), jm.applied():
            out[backend] = model(tokens)[:, :3]  # real tokens of both prompts
        texts[backend] = generate_greedy(jm, prompts, max_new_tokens=8)
        del model, jm
    ref = ALL[0]
    for backend in ALL[1:]:
        assert (out[backend] - out[ref]).abs().max() < 1e-4, backend
        assert texts[backend] == texts[ref], backend


def test_jola_lens_backend_sets_what_auto_means(checkpoints, monkeypatch):
    monkeypatch.setenv("JOLA_LENS_BACKEND", "bridge")
    assert load_model(checkpoints["llama"]).cfg.backend == "bridge"
    monkeypatch.setenv("JOLA_LENS_BACKEND", "tl5")
    with pytest.raises(ModelLoadError, match="JOLA_LENS_BACKEND='tl5' is not a backend; choose one of hooked, bridge"):
        load_model(checkpoints["llama"])


@pytest.mark.parametrize("backend", ALL)
def test_lofit_merges_on_every_backend(checkpoints, backend):
    model = load_model(checkpoints["llama"], backend=backend)
    ed = get_editor(model, "lofit", k=3).eval()
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[0, 1] = mask[1, 2] = True
    ed.edit.set_head_mask(mask)
    with torch.no_grad():
        for p in ed.edit_parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(4)))
    _assert_merge_is_the_edit(model, ed)
