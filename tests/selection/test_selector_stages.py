"""The trained selector stages are editors trained by the one Trainer, on the one hook mechanism.

* LoFiT stage 1, DSP, PASS (and JoLA) each train through ``jola_lens.train.Trainer`` with an
  :class:`~jola_lens.editors.Editor` of their own; SMP's scorer and ITI's probes do not (they
  train no edit of the language model).
* A selector that raises in the middle of a forward pass leaves no hook of its own on the model
  and keeps the hooks the user had attached.
* The Trainer's step hooks run once per step, in order, around the optimiser update.
"""

from __future__ import annotations

import pytest
import torch

from jola_lens.editors import Editor
from jola_lens.selection import select
from jola_lens.selection.dsp import DSPHeadLogits
from jola_lens.selection.lofit import LoFiTScalings
from jola_lens.selection.pass_ import PASSGates
from jola_lens.train import TrainConfig, Trainer


def _data(n: int = 12, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(0, 97, (int(torch.randint(4, 9, (1,), generator=g)),), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * (len(ids) - 1) + ids[-1:]})
    return rows


STAGES = {
    "lofit": (LoFiTScalings, dict(epochs=1, batch_size=4)),
    "dsp": (DSPHeadLogits, dict(epochs=1, batch_size=4)),
    "pass": (PASSGates, dict(epochs=2, batch_size=4)),
}


@pytest.fixture
def spy(monkeypatch):
    """Every ``Trainer.train`` call: the editor's class and the steps it ran."""
    calls: list[tuple[type, int]] = []
    real = Trainer.train

    def train(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        calls.append((type(self.editor), result.steps))
        return result

    monkeypatch.setattr(Trainer, "train", train)
    return calls


@pytest.mark.parametrize("name", sorted(STAGES))
def test_trained_selector_stages_run_through_the_trainer(tiny_model, spy, name):
    cls, opts = STAGES[name]
    r = select(name, tiny_model, _data(), k=3, seed=0, **opts)
    assert len(spy) == 1, spy
    editor_cls, steps = spy[0]
    assert editor_cls is cls and issubclass(cls, Editor)
    assert steps == r.record["steps"] > 0 and len(r.record["loss"]) == steps
    assert r.record["stopped"] == "completed"


def test_jola_selector_runs_through_the_trainer(tiny_model, spy):
    r = select("jola", tiny_model, _data(), k=3, seed=0, max_steps=2)
    assert [(c.__name__, s) for c, s in spy] == [("JoLAModel", 2)] and r.record["steps"] == 2


@pytest.mark.parametrize("name, opts", [("smp", dict(meta_steps=2, batch_size=4)), ("iti", {})])
def test_smp_and_iti_train_no_edit_of_the_model(tiny_model, spy, name, opts):
    """SMP meta-trains a CNN on attention images, ITI fits logistic probes: neither uses the Trainer."""
    select(name, tiny_model, _data(), k=3, seed=0, **opts)
    assert spy == []


def _hook_counts(model) -> dict[str, int]:
    counts = {name: len(hp.fwd_hooks) + len(hp.bwd_hooks) for name, hp in model.hook_dict.items()}
    return {name: n for name, n in counts.items() if n}


class _Boom(RuntimeError):
    pass


SELECTORS = {
    "lofit": dict(epochs=2, batch_size=4),
    "dsp": dict(epochs=2, batch_size=4),
    "pass": dict(epochs=2, batch_size=4),
    "jola": dict(max_steps=4),
    "smp": dict(meta_steps=2, batch_size=4),
    "iti": dict(batch_size=4),
}


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_no_hook_is_left_after_a_selector_raises_mid_run(tiny_model, name):
    """A user hook raises on the third forward pass through block 1: the selector's own hooks are
    gone afterwards (forward hooks on hook points and the editor's forward pre-hook), the user's
    hooks stay, and the model answers as before."""
    tokens = torch.randint(0, 97, (2, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = tiny_model(tokens)
    calls = {"n": 0}

    def keep(x, hook):
        return x

    def boom(x, hook):
        calls["n"] += 1
        if calls["n"] == 3:
            raise _Boom("raised mid-run")
        return x

    tiny_model.blocks[0].hook_resid_pre.add_hook(keep)
    tiny_model.blocks[1].hook_resid_pre.add_hook(boom)
    users = _hook_counts(tiny_model)
    pre_hooks = len(tiny_model._forward_pre_hooks)
    flags = [p.requires_grad for p in tiny_model.parameters()]
    with pytest.raises(_Boom):
        select(name, tiny_model, _data(16), k=3, seed=0, **SELECTORS[name])
    assert calls["n"] == 3
    assert _hook_counts(tiny_model) == users == {"blocks.0.hook_resid_pre": 1, "blocks.1.hook_resid_pre": 1}
    assert len(tiny_model._forward_pre_hooks) == pre_hooks
    tiny_model.reset_hooks()
    assert [p.requires_grad for p in tiny_model.parameters()] == flags
    with torch.no_grad():
        assert torch.equal(tiny_model(tokens), before)


class _Recorder(Editor):
    """A one-parameter editor that records the order of the trainer's calls."""

    name = "recorder"

    def __init__(self, model):
        super().__init__(model)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.events: list[tuple[str, int]] = []

    def fwd_hooks(self):
        return [("blocks.0.hook_resid_post", lambda x, hook: x * self.scale)]

    def before_step(self, step):
        self.events.append(("before", step))

    def after_step(self, step):
        assert self.scale.grad is not None  # the update of this step is done
        self.events.append(("after", step))


def test_trainer_calls_the_step_hooks_around_each_update(tiny_model):
    ed = _Recorder(tiny_model)
    seen = []
    result = Trainer(ed, _data(8), None, TrainConfig(epochs=2, batch_size=4, warmup_steps=0), progress=False,
                     callbacks=[lambda s: seen.append(("callback", s["step"]))]).train()
    assert result.steps == 4
    expected = []
    for step in range(1, 5):
        expected += [("before", step), ("after", step)]
    assert ed.events == expected and [s for _, s in seen] == [1, 2, 3, 4]


def test_seed_rng_and_restore_best_defaults_keep_the_old_behaviour(tiny_model):
    """``seed_rng=False`` continues the caller's RNG; ``restore_best=False`` keeps the last step's edits
    where the default restores the last completed epoch's (no validation data, stopped at max_steps)."""
    assert TrainConfig().seed_rng is True and TrainConfig().restore_best is True

    def run(**kw):
        ed = _Recorder(tiny_model)
        torch.manual_seed(123)
        Trainer(ed, _data(8), None, TrainConfig(epochs=2, batch_size=4, max_steps=3, warmup_steps=0, lr=0.1, **kw),
                progress=False).train()
        return float(ed.scale.detach()), torch.rand(())

    kept, after_default = run()
    last, after_continued = run(restore_best=False, seed_rng=False)
    assert kept != last  # the default rolled back to the end of epoch 1 (step 2)
    torch.manual_seed(123)
    assert torch.equal(after_continued, torch.rand(()))  # nothing drew from the global RNG
    torch.manual_seed(TrainConfig().seed)
    assert torch.equal(after_default, torch.rand(()))
