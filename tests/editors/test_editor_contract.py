"""The contract every registered editor keeps (JoLA included), on the tiny Llama-shaped model.

Parametrised over ``list_editors()``, so an editor registered later is held to it too: it trains;
training changes only its own tensors; the base weights stay bit-identical; no hook is left
behind (also after an exception inside ``applied()``); save -> ``load_editor`` gives identical
logits in eval mode; ``merge()`` equals the hooked model where the editor supports it.
"""

from __future__ import annotations

import pytest
import torch

from jola_lens.editors import EditorLoadError, get_editor, list_editors, load_editor
from jola_lens.train import TrainConfig
from tests.helpers import prompt_answer_rows

_data = prompt_answer_rows


SMALL = {"lofit": {"k": 3, "stage1": {"epochs": 1}}, "iti": {"k": 2}, "loreft": {"rank": 2}, "lora": {"rank": 2}}
CONFIG = TrainConfig(epochs=2, warmup_steps=0, lr=5e-2)


def _hooks_on(model) -> int:  # TransformerLens's own list and torch's hook dicts
    return (sum(len(hp.fwd_hooks) for hp in model.hook_dict.values())
            + sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()))


def _trained(model, name):
    torch.manual_seed(0)
    ed = get_editor(model, name, **SMALL.get(name, {}))
    data = _data()
    ed.fit(data, data[:4], CONFIG, progress=False)
    return ed.eval()


def test_every_method_is_registered():
    assert list_editors()[:7] == ["jola", "lora", "bitfit", "red", "loreft", "lofit", "iti"]


@pytest.mark.parametrize("name", list_editors())
def test_trains_only_its_own_tensors(tiny_model, tokens, name):
    base = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    base_logits = tiny_model(tokens)
    torch.manual_seed(0)
    ed = get_editor(tiny_model, name, **SMALL.get(name, {}))
    before = ed.edit_state()
    data = _data()
    result = ed.fit(data, data[:4], CONFIG, progress=False)
    assert result.stopped == "completed"
    assert all(torch.equal(base[k], v) for k, v in tiny_model.state_dict().items()), "a base weight changed"
    assert not any(p.requires_grad for p in tiny_model.parameters())
    after = ed.edit_state()
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before), f"{name}: training changed nothing"
    assert _hooks_on(tiny_model) == 0
    assert torch.equal(tiny_model(tokens), base_logits)
    with ed.eval().applied():
        assert not torch.allclose(tiny_model(tokens), base_logits), f"{name}: the edit does not change the output"


@pytest.mark.parametrize("name", list_editors())
def test_no_hook_left_after_an_exception(tiny_model, name):
    ed = get_editor(tiny_model, name, **SMALL.get(name, {}))
    with pytest.raises(RuntimeError, match="boom"):
        with ed.applied():
            with ed.applied():  # nested: attached once
                raise RuntimeError("boom")
    assert _hooks_on(tiny_model) == 0


@pytest.mark.parametrize("name", list_editors())
def test_nested_applied_does_not_apply_twice(tiny_model, tokens, name):
    ed = _trained(tiny_model, name)
    with ed.applied():
        once = tiny_model(tokens)
        n = _hooks_on(tiny_model)
        with ed.applied():
            assert _hooks_on(tiny_model) == n
            twice = ed(tokens)
    torch.testing.assert_close(once, twice, rtol=0, atol=0)


@pytest.mark.parametrize("name", list_editors())
def test_save_load_editor_gives_identical_logits_in_eval_mode(tiny_model, tokens, tmp_path, name):
    ed = _trained(tiny_model, name)
    with ed.applied():
        want = tiny_model(tokens)
    ed.save(tmp_path / "run")
    back = load_editor(tmp_path / "run", tiny_model)
    assert type(back) is type(ed) and not back.training
    with back.applied():
        got1 = tiny_model(tokens)
        got2 = tiny_model(tokens)
    assert torch.equal(got1, want) and torch.equal(got1, got2)
    assert back.n_trainable_parameters() == ed.n_trainable_parameters()
    assert load_editor(tmp_path / "run", tiny_model, is_trainable=True).training


@pytest.mark.parametrize("name", list_editors())
def test_load_editor_checks_the_model_identity(tiny_model, tmp_path, name):
    from transformer_lens import HookedTransformer

    from tests.conftest import tiny_cfg

    get_editor(tiny_model, name, **SMALL.get(name, {})).save(tmp_path)
    other = HookedTransformer(tiny_cfg(n_layers=2))
    with pytest.raises(EditorLoadError, match=r"n_layers: saved 3, this model 2"):
        load_editor(tmp_path, other)


@pytest.mark.parametrize("name", list_editors())
def test_merge_equals_hooked_where_supported(tiny_model, tokens, name):
    ed = _trained(tiny_model, name)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # move every trained tensor away from its (often zero) start
        for p in ed.edit_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    if not ed.supports_merge:
        with pytest.raises(NotImplementedError):
            ed.merge()
        return
    with ed.applied():
        hooked = tiny_model(tokens)
        with pytest.raises(RuntimeError, match="inside applied"):
            ed.merge(inplace=True)
        inside = ed.merge()  # a plain copy even here: the edit once, in the weights, no hooks
    assert _hooks_on(inside) == 0
    torch.testing.assert_close(inside(tokens), hooked, atol=1e-4, rtol=1e-4)
    merged = ed.merge()
    assert _hooks_on(merged) == 0
    torch.testing.assert_close(merged(tokens), hooked, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(merged(tokens), tiny_model(tokens))


@pytest.mark.parametrize("name", list_editors())
def test_summary_names_the_editor_and_its_parameters(tiny_model, name):
    ed = get_editor(tiny_model, name, **SMALL.get(name, {}))
    s = ed.summary()
    assert s["editor"] == name and s["trainable_params"] == ed.n_trainable_parameters()
