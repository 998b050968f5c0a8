import math

import pytest
import torch
import torch.nn.functional as F

from jola_lens import JoLAModel
from jola_lens.schedule import GateSchedule, gate_penalty
from jola_lens.train import GateLog, JoLATrainer, TrainConfig, answer_loss, collate
from tests.helpers import toy_data


def test_schedules_at_known_steps():
    assert math.isclose(GateSchedule("expon").value(1), 0.1 * math.exp(-0.01))
    assert math.isclose(GateSchedule("expon").value(100), 0.1 * math.exp(-1))
    assert math.isclose(GateSchedule("linear", total_steps=50).value(25), 0.2 * 0.5)
    assert math.isclose(GateSchedule("cyclic").value(5), 1.0)  # sin(pi/2)
    assert math.isclose(GateSchedule("cyclic").value(15), 0.0, abs_tol=1e-12)
    assert GateSchedule("constant", 0.3).value(999) == 0.3
    s = GateSchedule("perform")
    s.observe(10.0)  # below the initial 50: lambda grows
    assert math.isclose(s.value(1), 0.11)
    s.observe(12.0)
    assert math.isclose(s.value(2), 0.10)
    with pytest.raises(ValueError):
        GateSchedule("nope")
    with pytest.raises(ValueError):
        GateSchedule("constant")


def test_penalty_forms():
    pa = torch.full((2, 4), 0.5)
    pm = torch.full((2, 4), 0.25)
    assert math.isclose(float(gate_penalty({"a": pa, "m": pm}, 0.01, "paper", 4)), 0.01 * (4 + 2), rel_tol=1e-6)
    code = float(gate_penalty({"a": pa, "m": pm}, 0.1, "jola_code", 4))
    assert math.isclose(code, 0.1 * 0.5 / 4 + 0.9 * 0.25 / 4, rel_tol=1e-6)
    assert float(gate_penalty({"a": pa}, 0.0, "jola_code", 4)) == 0.0


def test_answer_loss_matches_full_logits(tiny_model):
    b = collate(toy_data(4), pad_id=0)
    full = tiny_model(b["input_ids"], attention_mask=b["attention_mask"])
    tgt = b["labels"][:, 1:]
    ref = F.cross_entropy(full[:, :-1].reshape(-1, full.shape[-1]), tgt.reshape(-1), ignore_index=-100)
    ours = answer_loss(tiny_model, b["input_ids"], b["labels"], b["attention_mask"])
    assert torch.allclose(ours, ref, atol=1e-5)


def _train(model, cfg, **kw):
    torch.manual_seed(123)
    jm = JoLAModel(model)
    trainer = JoLATrainer(jm, toy_data(24), toy_data(8, seed=1), cfg, progress=False, pad_id=0, **kw)
    return jm, trainer, trainer.train()


def test_training_lowers_loss_and_logs_gates(tiny_model):
    cfg = TrainConfig(epochs=4, batch_size=4, warmup_steps=2, lr=5e-2, patience=0)
    jm0 = JoLAModel(tiny_model)
    before = JoLATrainer(jm0, toy_data(24), toy_data(8, seed=1), cfg, progress=False, pad_id=0).validation_loss()
    jm, trainer, result = _train(tiny_model, cfg)
    assert result.steps == 24 and result.stopped == "completed"
    assert result.best_valid_loss < before
    log = trainer.gate_log
    assert log.steps == list(range(1, 25))
    assert log.tensor("a.value").shape == (24, 3, 4)
    rows = log.records()
    assert len(rows) == 24 * 2 * 3 * 4 and {"step", "layer", "head", "kind", "value", "deterministic",
                                            "prob_open", "lambda"} <= set(rows[0])
    # the logged value is the gate the forward pass used: a sample, not the deterministic value
    assert not torch.equal(log.tensor("a.value"), log.tensor("a.deterministic"))


def test_same_seed_same_edits(tiny_model):
    cfg = TrainConfig(epochs=2, batch_size=4, warmup_steps=1)
    a, _, _ = _train(tiny_model, cfg)
    b, _, _ = _train(tiny_model, cfg)
    for (n, p), (_, q) in zip(a.named_edit_parameters(), b.named_edit_parameters()):
        assert torch.equal(p, q), n


def test_resume_equals_uninterrupted(tiny_model, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=4, warmup_steps=2, patience=0)
    full, _, _ = _train(tiny_model, cfg)

    calls = {"n": 0}

    def interrupt(stats):
        calls["n"] += 1
        if calls["n"] == 8:  # mid-epoch 2
            raise KeyboardInterrupt

    part, trainer, res = _train(tiny_model, cfg, out_dir=tmp_path, callbacks=[interrupt])
    assert res.stopped == "interrupted" and (tmp_path / "checkpoint" / "latest.json").is_file()
    torch.manual_seed(999)  # resume must not depend on the ambient RNG
    resumed = JoLAModel(tiny_model)
    t2 = JoLATrainer(resumed, toy_data(24), toy_data(8, seed=1), cfg, progress=False, pad_id=0)
    res2 = t2.train(resume_from=tmp_path / "checkpoint")
    assert res2.steps == 18
    for (n, p), (_, q) in zip(full.named_edit_parameters(), resumed.named_edit_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_nan_stops_and_keeps_last_good_edits(tiny_model):
    cfg = TrainConfig(epochs=2, batch_size=4, warmup_steps=1)
    jm = JoLAModel(tiny_model)
    trainer = JoLATrainer(jm, toy_data(24), None, cfg, progress=False, pad_id=0)

    def poison(stats):
        if stats["step"] == 3:
            with torch.no_grad():
                tiny_model.embed.W_E.fill_(float("nan"))

    trainer.callbacks = [poison]
    snapshot = {}
    orig = trainer._train_step

    def spy(batch):
        snapshot.update(jm.edit_state())
        return orig(batch)

    trainer._train_step = spy
    res = trainer.train()
    assert res.stopped == "diverged" and res.steps == 3
    for k, v in jm.edit_state().items():
        assert torch.equal(v, snapshot[k]) and torch.isfinite(v).all(), k


def test_early_stopping_restores_best(tiny_model):
    cfg = TrainConfig(epochs=30, batch_size=4, warmup_steps=1, lr=0.5, patience=2)
    jm, trainer, res = _train(tiny_model, cfg)
    assert res.stopped == "early_stopping" and res.best_epoch is not None
    assert math.isclose(trainer.validation_loss(), res.best_valid_loss, rel_tol=1e-5)


def test_gate_log_roundtrip(tiny_model, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=8, warmup_steps=1)
    _, trainer, _ = _train(tiny_model, cfg)
    trainer.gate_log.save(tmp_path)
    log = GateLog.load(tmp_path)
    assert log.steps == trainer.gate_log.steps
    assert torch.equal(log.tensor("m.prob_open"), trainer.gate_log.tensor("m.prob_open"))


def test_bad_train_config():
    for bad in [dict(penalty="x"), dict(gate_schedule="x"), dict(batch_size=0), dict(lr=0.0)]:
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_gate_lr_group(tiny_model):
    jm = JoLAModel(tiny_model)
    t = JoLATrainer(jm, toy_data(8), None, TrainConfig(gate_lr=0.3), progress=False, pad_id=0)
    lrs = sorted(g["lr"] for g in t.optimizer.param_groups)
    assert len(lrs) == 2


@pytest.mark.parametrize("field,value", [("lr", float("nan")), ("lr", float("inf")), ("gate_lr", float("nan")),
                                         ("gate_lambda", float("nan")), ("gate_lambda", -1.0),
                                         ("max_grad_norm", float("inf")), ("weight_decay", -0.1),
                                         ("warmup_steps", -1), ("lr", 0.0)])
def test_non_finite_or_negative_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field if field != "lr" or value != 0.0 else "learning rates"):
        TrainConfig(**{field: value})
