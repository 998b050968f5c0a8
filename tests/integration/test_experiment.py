import json

import pytest

from jola_lens.cli import main
from jola_lens.experiment import TaskSpec, group_references, load_task_data, parse_choice_text

REQUIRED = {"task", "n_train", "n_test", "seed", "scoring", "zero_shot", "jola", "majority_label_acc",
            "open_gates", "train_seconds"}


def test_parse_choice_text():
    choices = ["red", "red and blue", "green", "a leaf"]
    assert parse_choice_text("green", choices) == 2
    assert parse_choice_text(" Green.\nmore text", choices) == 2
    assert parse_choice_text("red and blue are colours", choices) == 1  # longest option that fits
    assert parse_choice_text("A leaf!", choices) == 3
    assert parse_choice_text("purple", choices) is None
    assert parse_choice_text("", choices) is None


def test_group_references():
    rows = [{"id": "1", "question": "q1", "answer": "a", "references": ["a"]},
            {"id": "2", "question": "q1", "answer": "b", "references": ["b"]},
            {"id": "3", "question": "q2", "answer": "c", "references": []}]
    g = group_references(rows)
    assert [(x["id"], x["references"]) for x in g] == [("1", ["a", "b"]), ("3", ["c"])]


def test_bundled_demo_data_is_disjoint_and_fixed():
    td = load_task_data(TaskSpec(task="demo"))
    assert (len(td.train), len(td.valid), len(td.test)) == (200, 200, 300)
    qs = [set(e["question"] for e in split) for split in (td.train, td.valid, td.test)]
    assert not (qs[0] & qs[1]) and not (qs[0] & qs[2]) and not (qs[1] & qs[2])
    again = load_task_data(TaskSpec(task="demo"))
    assert [e["id"] for e in again.test] == [e["id"] for e in td.test]


@pytest.mark.integration
def test_demo_small_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--train-size", "16", "--test-size", "12", "--epochs", "1",
               "--no-progress"])
    assert rc == 0
    r = json.loads((out / "results.json").read_text())
    assert REQUIRED <= set(r)
    for which in ("zero_shot", "jola"):
        assert {"likelihood_acc", "generation_acc"} <= set(r[which])
        assert 0.0 <= r[which]["likelihood_acc"] <= 1.0
    assert r["n_train"] == 16 and r["n_test"] == 12
    assert set(r["open_gates"]) == {"additive", "multiplicative", "total"}
    assert (out / "edits.safetensors").is_file() and (out / "predictions_jola.jsonl").is_file()
    assert any(p.endswith("gate_trajectories.html") for p in r["figures"])
    text = capsys.readouterr().out
    assert "zero-shot" in text and "JoLA" in text and "open gates" in text


@pytest.mark.integration
@pytest.mark.parametrize("target", ["label", "choice_text"])
def test_evaluate_task_rows_add_up_to_the_accuracy(smollm, target):
    from jola_lens.experiment import evaluate_task

    spec = TaskSpec(task="demo", train_size=8, valid_size=4, test_size=12, target=target)
    td = load_task_data(spec)
    out = evaluate_task(smollm, td, spec, generation=False, progress=False, return_rows=True)
    rows = out["rows"]
    assert [r["id"] for r in rows] == [e["id"] for e in td.test]
    assert sum(r["likelihood_correct"] for r in rows) / len(rows) == pytest.approx(out["likelihood_acc"])
    if target == "label":  # a label string, right exactly when it equals the gold label
        assert all(r["likelihood_correct"] == (r["likelihood_pred"] == r["gold"]) for r in rows)
    else:  # an option index, plus the length-normalised pick
        assert all(isinstance(r["likelihood_pred"], int) and "likelihood_norm_pred" in r for r in rows)
    assert "rows" not in evaluate_task(smollm, td, spec, generation=False, progress=False)
