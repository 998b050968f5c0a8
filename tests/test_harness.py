"""lm-evaluation-harness scores an exported edit (issue 23): its ``acc`` / ``acc_norm`` equal jola_lens's own.

The bundled model and its ARC-Easy sample (16 test questions, to keep the suite short): the harness's
``hf`` model loads (a) the bundled checkpoint and (b) the checkpoint ``save_merged_hf`` wrote from a
JoLA edit, over the task YAML ``jola-lens lm-eval-task`` writes; per question, its right/wrong equals
jola_lens's likelihood pick (zero-shot, and with the edit hooked in), and so do the accuracies.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("lm_eval", reason="lm-evaluation-harness is in the dev extra (make install installs it)")

N = 16


def _harness(pretrained, include_path, task):
    import lm_eval
    from lm_eval.tasks import TaskManager

    res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={pretrained},dtype=float32", tasks=[task],
                                  task_manager=TaskManager(include_path=str(include_path)), device="cpu",
                                  batch_size=8, log_samples=True)
    samples = sorted(res["samples"][task], key=lambda s: s["doc_id"])
    r = res["results"][task]
    return r["acc,none"], r["acc_norm,none"], [int(s["acc"]) for s in samples], [int(s["acc_norm"]) for s in samples]


def test_harness_scores_the_export_as_jola_lens_does(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from jola_lens import JoLAModel, load_model
    from jola_lens.backends.export import save_merged_hf
    from jola_lens.cli import main
    from jola_lens.eval.harness import harness_rows
    from jola_lens.eval.scoring import choice_likelihood_predict
    from jola_lens.loading import bundled_checkpoint_dir
    from jola_lens.tasks.spec import TaskSpec, load_task_data

    assert main(["lm-eval-task", "--out", str(tmp_path / "task"), "--test-size", str(N)]) == 0
    assert "--tasks jola_demo" in capsys.readouterr().out
    spec = TaskSpec(task="demo", test_size=N, valid_size=0)
    model = load_model(backend="hf")
    rows = harness_rows(load_task_data(spec), spec, model.tokenizer)
    gold = [r["gold"] for r in rows]

    def ours(target):
        p = choice_likelihood_predict(target, [r["prompt"] for r in rows], [r["choices"] for r in rows], batch_size=8)
        acc, norm = [int(a == g) for a, g in zip(p.acc, gold)], [int(a == g) for a, g in zip(p.acc_norm, gold)]
        return sum(acc) / N, sum(norm) / N, acc, norm

    jm = JoLAModel(model).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a small edit on a few heads of the last layers
        e = jm.edits["attn"]
        e.a.copy_(torch.randn(e.a.shape, generator=g) * 0.3)
        e.m.copy_(torch.randn(e.m.shape, generator=g) * 0.3)
        for gate in (e.gate_a, e.gate_m):
            gate.log_alpha.fill_(-10.0)
            gate.log_alpha[-8:, :3] = 5.0
    info = save_merged_hf(jm, tmp_path / "export")
    assert info["max_abs_diff"] < 1e-3

    zero_ours, zero_theirs = ours(model), _harness(bundled_checkpoint_dir(), tmp_path / "task", "jola_demo")
    edit_ours, edit_theirs = ours(jm), _harness(tmp_path / "export", tmp_path / "task", "jola_demo")
    for mine, theirs in ((zero_ours, zero_theirs), (edit_ours, edit_theirs)):
        assert mine[:2] == pytest.approx(theirs[:2])  # acc, acc_norm
        assert mine[2:] == theirs[2:]  # and question by question
    assert zero_ours[2] != edit_ours[2]  # the edit changes some answers, and the harness sees the same changes
