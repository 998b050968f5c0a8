"""The analysis studies end to end on the bundled model with tiny settings (integration).

These prove the studies run, write their tables and re-use finished runs; the numbers at these
sizes mean nothing and are only checked for range.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
from pathlib import Path

import pytest
import torch

from analysis import ablations, compare_selection, data_size, figures, main_table
from analysis.compare_selection import spearman
from jola_lens.plots import jaccard

TINY = ["--train-size", "16", "--valid-size", "8", "--test-size", "10", "--epochs", "1", "--no-progress"]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_spearman_and_jaccard():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert spearman(a, a * 10) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([0.0, 0.0, 5.0])) == pytest.approx(1.0)
    m1 = torch.tensor([True, True, False, False])
    m2 = torch.tensor([True, False, True, False])
    assert jaccard(m1, m2) == pytest.approx(1 / 3)


@pytest.mark.integration
def test_main_table_writes_tables_and_reuses_runs(smollm, tmp_path, capsys):
    argv = ["--methods", "zero_shot", "red", "--out", str(tmp_path), *TINY]
    assert main_table.main(argv) == 0
    rows = _rows(tmp_path / "main_table.csv")
    assert [r["method"] for r in rows] == ["zero_shot", "red"]
    assert all(0.0 <= float(r["accuracy_mean"]) <= 1.0 for r in rows)
    assert int(rows[1]["trainable_params"]) == 2 * 576 * 30
    md = (tmp_path / "main_table.md").read_text()
    assert "Command: `python -m analysis.main_table" in md and "| RED |" in md
    assert (tmp_path / "main_table.html").stat().st_size > 1000
    # each stored run keeps its per-example predictions, and they add up to its accuracy
    for path in sorted((tmp_path / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        assert len(run["rows"]) == run["n"] and len({r["id"] for r in run["rows"]}) == run["n"]
        assert all(isinstance(r["likelihood_pred"], int) for r in run["rows"])  # ARC-Easy: an option index
        assert sum(r["likelihood_correct"] for r in run["rows"]) / run["n"] == pytest.approx(run["accuracy"])
        preds = [r["likelihood_pred"] for r in run["rows"]]
        row = next(r for r in rows if r["method"] == run["method"])
        assert float(row["commonest_answer_share"]) == pytest.approx(max(map(preds.count, preds)) / len(preds))
    assert "of the 2 runs that stored predictions" in md
    capsys.readouterr()
    assert main_table.main(argv) == 0  # every run is cached now: nothing is trained again
    assert "[analysis] ARC-Easy" not in capsys.readouterr().out
    # --cached-only tabulates what finished and trains nothing: LoFiT was never run here
    assert main_table.main(["--methods", "zero_shot", "red", "lofit", "--cached-only", "--out", str(tmp_path),
                            *TINY]) == 0
    assert "[analysis] ARC-Easy" not in capsys.readouterr().out
    assert [r["method"] for r in _rows(tmp_path / "main_table.csv")] == ["zero_shot", "red"]
    # --reuse copies another study's stored runs instead of training them again
    other = tmp_path / "other"
    assert main_table.main(["--methods", "zero_shot", "red", "--reuse", str(tmp_path), "--out", str(other),
                            *TINY]) == 0
    assert "[analysis] ARC-Easy" not in capsys.readouterr().out
    assert sorted(p.name for p in (other / "runs").glob("*.json")) == sorted(
        p.name for p in (tmp_path / "runs").glob("*.json"))
    assert _rows(other / "main_table.csv")[1]["accuracy_mean"] == rows[1]["accuracy_mean"]
    # zero-shot trains nothing: a later seed alone reuses the stored seed-42 zero-shot run
    assert main_table.main(["--methods", "zero_shot", "--seeds", "43", "--out", str(tmp_path), *TINY]) == 0
    assert "[analysis] ARC-Easy" not in capsys.readouterr().out
    assert not list((tmp_path / "runs").glob("*zero_shot.s43*"))
    assert _rows(tmp_path / "main_table.csv")[0]["accuracy_mean"] == rows[0]["accuracy_mean"]


@pytest.mark.integration
def test_compare_selection_ablations_and_data_size(smollm, tmp_path):
    out = tmp_path / "sel"
    with pytest.raises(SystemExit):  # downstream needs the selectors' masks of that seed
        compare_selection.main(["--seeds", "1", "--downstream-seeds", "2", "--out", str(out), *TINY])
    assert compare_selection.main(["--selectors", "random", "smp", "--seeds", "1", "2", "--downstream-seeds", "1", "2",
                                   "--k", "5", "--out", str(out), *TINY]) == 0  # K < 270: a real top-K choice
    overlap = _rows(out / "overlap.csv")
    assert [r["selector"] for r in overlap] == ["jola", "random", "smp"]
    jola = overlap[0]
    assert jola["seeds"] == "[1, 2]" and jola["seed_agreement_jaccard"] != ""  # JoLA re-drawn with seed 2
    k = int(jola["k"])
    sel = json.loads((out / "selection.json").read_text())["ARC-Easy"]
    assert set(sel["masks"]["jola"]) == {"1", "2"}
    assert all(len(heads) == k for seeds in sel["masks"].values() for heads in seeds.values())
    # seed 2's JoLA mask is the top K of seed 2's own P(open), not seed 1's
    p2 = torch.tensor(json.loads((out / "runs" / "ARC-Easy.jola.s2.e1.n16.t10.json").read_text())["prob_open"])
    chosen = torch.zeros_like(p2, dtype=torch.bool)
    for li, h in sel["masks"]["jola"]["2"]:
        chosen[li, h] = True
    assert p2[chosen].min() >= p2[~chosen].max()
    # the layer histogram (and so the mean layer) averages the seeds' masks, not the first seed's alone
    hist = json.loads(jola["layer_histogram"])
    per_seed = [[sum(1 for li, _ in sel["masks"]["jola"][s] if li == layer) for layer in range(len(hist))]
                for s in ("1", "2")]
    assert per_seed[0] != per_seed[1] and hist == pytest.approx([(a + b) / 2 for a, b in zip(*per_seed)])
    down = _rows(out / "downstream.csv")
    names = ["jola (gated, as trained)", "jola", "random", "smp"]
    assert [(r["selector"], r["seed"]) for r in down] == [(n, s) for s in ("1", "2") for n in names]
    md = (out / "downstream.md").read_text()
    assert "| seed 1 | seed 2 | accuracy |" in md and md.count("| ARC-Easy |") == 4  # one row per selector
    gated_k = [r["k"] for r in down if r["selector"] == names[0]]  # JoLA's open heads, one count per seed
    line = next(x for x in md.splitlines() if x.startswith(f"| ARC-Easy | {names[0]} | "))
    assert line.split(" | ")[2] == (gated_k[0] if len(set(gated_k)) == 1 else "/".join(gated_k))
    assert (out / "selection_grid_ARC-Easy.html").is_file()

    small = tmp_path / "sel_k3"  # a fixed K: JoLA's mask becomes its top 3 heads by P(open)
    assert compare_selection.main(["--selectors", "random", "--seeds", "1", "--k", "3", "--no-downstream",
                                   "--reuse", str(out), "--out", str(small), *TINY]) == 0
    sel3 = json.loads((small / "selection.json").read_text())["ARC-Easy"]
    assert sel3["k"] == 3 and all(len(h) == 3 for seeds in sel3["masks"].values() for h in seeds.values())
    jrun = json.loads((small / "runs" / "ARC-Easy.jola.s1.e1.n16.t10.json").read_text())
    p_open = torch.tensor(jrun["prob_open"])
    chosen = torch.zeros_like(p_open, dtype=torch.bool)
    for li, h in sel3["masks"]["jola"]["1"]:
        chosen[li, h] = True
    assert int(chosen.sum()) == 3 and p_open[chosen].min() >= p_open[~chosen].max()
    with pytest.raises(ValueError, match="more than the model"):
        compare_selection.main(["--selectors", "random", "--k", "100000", "--no-downstream", "--reuse", str(out),
                                "--out", str(small), *TINY])

    abl = tmp_path / "abl"
    assert ablations.main(["--variants", "default", "no_gate", "--seeds", "1", "--reuse", str(out), "--out", str(abl),
                           *TINY]) == 0
    rows = _rows(abl / "ablations.csv")
    assert [r["variant"] for r in rows] == ["default", "no_gate"]
    md = (abl / "ablations.md").read_text()
    assert "| accuracy | acc_norm | one answer |" in md
    for r, name in zip(rows, ["jola", "ablation-no_gate"]):  # the commonest prediction's share, from the stored rows
        run = json.loads((abl / "runs" / f"ARC-Easy.{name}.s1.e1.n16.t10.json").read_text())
        preds = [x["likelihood_pred"] for x in run["rows"]]
        assert float(r["commonest_answer_share"]) == pytest.approx(max(map(preds.count, preds)) / len(preds))
        assert float(r["acc_norm_mean"]) == pytest.approx(run["likelihood_acc_norm"])
        line = next(x for x in md.splitlines() if x.startswith(f"| ARC-Easy | {r['variant']} | "))
        assert line.split(" | ")[3] == f"{run['likelihood_acc_norm']:.3f}"  # the acc_norm column
    assert (abl / "runs" / "ARC-Easy.jola.s1.e1.n16.t10.json").is_file()  # copied from the selection study
    # --cached-only over two seeds: JoLA's seed-2 run is copied from the selection study, no_gate's is left out
    assert ablations.main(["--variants", "default", "no_gate", "--seeds", "1", "2", "--cached-only", "--reuse",
                           str(out), "--out", str(abl), *TINY]) == 0
    assert not (abl / "runs" / "ARC-Easy.ablation-no_gate.s2.e1.n16.t10.json").exists()
    rows = _rows(abl / "ablations.csv")
    assert [(r["variant"], r["n_seeds"]) for r in rows] == [("default", "2"), ("no_gate", "1")]
    runs = [json.loads((abl / "runs" / f"ARC-Easy.jola.s{s}.e1.n16.t10.json").read_text()) for s in (1, 2)]
    assert float(rows[0]["accuracy_mean"]) == pytest.approx((runs[0]["accuracy"] + runs[1]["accuracy"]) / 2)
    line = next(x for x in (abl / "ablations.md").read_text().splitlines() if x.startswith("| ARC-Easy | default | "))
    gates = [r["open_gates"]["attn"] for r in runs]
    assert "(n=2)" in line and f"attn: {gates[0]['additive']}/{gates[1]['additive']} a" in line

    ds = tmp_path / "ds"
    assert data_size.main(["--sizes", "8", "16", "--methods", "lofit", "--out", str(ds), *TINY]) == 0
    rows = _rows(ds / "data_size.csv")
    assert [int(r["n_train"]) for r in rows] == [8, 16]
    # --cached-only trains nothing; a second seed stored for n = 8 only gives cells over different seed counts
    r8 = json.loads((ds / "runs" / "ARC-Easy.lofit.s42.e1.n8.t10.json").read_text())
    (ds / "runs" / "ARC-Easy.lofit.s43.e1.n8.t10.json").write_text(json.dumps({**r8, "seed": 43, "accuracy": 0.0}))
    assert data_size.main(["--sizes", "8", "16", "32", "--methods", "lofit", "jola", "--seeds", "42", "43",
                           "--cached-only", "--out", str(ds), *TINY]) == 0
    assert sorted(p.name for p in (ds / "runs").iterdir()) == [f"ARC-Easy.lofit.s{s}.e1.n{n}.t10.json"
                                                                for s, n in [(42, 16), (42, 8), (43, 8)]]
    rows = _rows(ds / "data_size.csv")
    assert [(int(r["n_train"]), int(r["n_seeds"])) for r in rows] == [(8, 2), (16, 1)]
    assert float(rows[0]["accuracy_mean"]) == pytest.approx(r8["accuracy"] / 2)
    line = next(x for x in (ds / "data_size.md").read_text().splitlines() if x.startswith("| ARC-Easy | LoFiT | "))
    assert line.count("(n=2)") == 1 and line.count("(n=1)") == 1

    figs = tmp_path / "figs"
    assert figures.main(["--no-run", "--no-png", "--html", "--out", str(figs), "--selection-study", str(out),
                         "--size-study", str(ds), "--main-table", str(abl)]) == 0
    names = sorted(p.name for p in figs.iterdir())
    assert names == ["accuracy_vs_size.html", "main_table_bars.html", "selection_grid.html", "selection_jaccard.html"]


def test_bundled_arc_training_set_grows_from_the_full_split(shared_data):
    from analysis.common import extend_bundled_train
    from jola_lens.experiment import TaskSpec, load_task_data

    shared = shared_data
    td = load_task_data(TaskSpec(task="demo", train_size=None, valid_size=100, test_size=200, seed=42))
    big, bigger = (extend_bundled_train(td, n, data_root=str(shared)) for n in (300, 450))
    ids = lambda xs: [e["id"] for e in xs]  # noqa: E731
    assert len(big.train) == 300 and len(bigger.train) == 450
    assert ids(big.train)[:200] == ids(td.train) and ids(bigger.train)[:300] == ids(big.train)  # nested
    assert ids(big.valid) == ids(td.valid) and ids(big.test) == ids(td.test)  # one test sample for every size
    assert len(set(ids(bigger.train))) == 450
    # every bundled example (TaskSpec.valid_size is an int: a size above the sample keeps it all)
    everything = load_task_data(TaskSpec(task="demo", train_size=None, valid_size=10**6, test_size=None))
    held_out = set(ids(everything.valid)) | set(ids(everything.test))
    assert not set(ids(bigger.train)) & held_out  # never a bundled validation or test example
    with pytest.raises(ValueError, match="does not exceed"):
        extend_bundled_train(td, 200, data_root=str(shared))
    with pytest.raises(ValueError, match="training examples outside"):
        extend_bundled_train(td, 100_000, data_root=str(shared))


def test_main_table_mean_covers_only_tasks_every_method_finished(tmp_path):
    import argparse

    runs = [dict(task=t, method=m, accuracy=a, likelihood_acc_norm=a / 2, trainable_params=0, n=10, majority=0.5,
                 train_seconds=1.0, seed=1)
            for t, m, a in [("A", "zero_shot", 0.5), ("A", "jola", 0.7), ("B", "zero_shot", 0.2), ("B", "jola", 0.4),
                            ("C", "zero_shot", 0.1)]]
    main_table.summarise(runs, tmp_path, "cmd", 1.0,
                         argparse.Namespace(train_size=1, valid_size=1, epochs=1, test_size=1, seeds=[1]))
    lines = (tmp_path / "main_table.md").read_text().splitlines()
    assert any(x.endswith("| mean over A, B |") for x in lines)
    assert any(x.startswith("| zero-shot |") and x.endswith("| 0.350 |") for x in lines)  # C left out
    assert any(x.startswith("| JoLA |") and "| n/a |" in x and x.endswith("| 0.550 |") for x in lines)
    assert not any("stored predictions" in x for x in lines)  # no run kept its rows: no collapse line
    # the length-normalised table follows, from the same runs, with the same mean rule
    after = lines[next(i for i, x in enumerate(lines) if x.startswith("Length-normalised")):]
    assert any(x.startswith("| zero-shot |") and "| 0.250 | 0.100 | 0.050 |" in x and x.endswith("| 0.175 |")
               for x in after)
    assert any(x.startswith("| JoLA |") and x.endswith("| 0.275 |") for x in after)

    # runs that kept their predictions: one giving the same answer to >= 90% of the questions is named
    runs[1]["rows"] = [{"likelihood_pred": 0}] * 9 + [{"likelihood_pred": 1}]
    runs[3]["rows"] = [{"likelihood_pred": i % 3} for i in range(10)]
    main_table.summarise(runs, tmp_path, "cmd", 1.0,
                         argparse.Namespace(train_size=1, valid_size=1, epochs=1, test_size=1, seeds=[1]))
    md = (tmp_path / "main_table.md").read_text()
    assert "(of the 2 runs that stored predictions): A JoLA seed 1 (90%)." in md


def _stored_run(folder, task, method, seed, correct, *, rows=True, n=200):
    """A run file as the studies store it, with per-question correctness ``correct`` (question i -> bool)."""
    r = {"task": task, "method": method, "seed": seed, "accuracy": sum(correct) / len(correct)}
    if rows:
        r["rows"] = [{"id": f"{task}-test-{i}", "likelihood_correct": c} for i, c in enumerate(correct)]
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    (folder / "runs" / f"{task}.{method}.s{seed}.e3.n{n}.t4.json").write_text(json.dumps(r))


def test_paired_difference_pairs_runs_by_task_seed_and_settings(tmp_path, capsys):
    from analysis import paired

    study, other = tmp_path / "a", tmp_path / "b"
    _stored_run(study, "boolq", "edit-jola.k14", 1, [True, True, False, False])
    _stored_run(study, "boolq", "edit-lofit.k14", 1, [True, False, False, True])
    _stored_run(study, "boolq", "edit-jola.k14", 2, [True, True, True, False])
    _stored_run(other, "boolq", "edit-lofit.k14", 2, [False, False, True, False])  # paired across study folders
    _stored_run(study, "boolq", "edit-jola.k14", 3, [True] * 4, rows=False)  # no predictions: listed, not used
    _stored_run(study, "boolq", "edit-lofit.k14", 3, [False] * 4)
    (study / "runs" / "select.boolq.lofit.k14.s1.se1.n200.json").write_text("{}")  # not a scored run
    assert paired.main(["--studies", str(study), str(other), "--a", "edit-jola.k14", "--b", "edit-lofit.k14",
                        "--out", str(tmp_path / "out")]) == 0
    row = _rows(tmp_path / "out" / "paired.csv")[0]
    # per question, d averaged over seeds 1 and 2: q0 (0+1)/2, q1 (1+1)/2, q2 (0+0)/2, q3 (-1+0)/2
    d = [0.5, 1.0, 0.0, -0.5]
    assert float(row["diff"]) == pytest.approx(sum(d) / 4)
    assert float(row["se"]) == pytest.approx(statistics.stdev(d) / 2)
    assert (row["questions"], row["pairs"], row["seeds"], row["a_only"], row["b_only"]) == ("4", "2", "1/2", "3", "1")
    assert "boolq.edit-jola.k14.s3.e3.n200.t4.json" in capsys.readouterr().out
    # seeds filter; an unknown method is an error naming what is there
    assert paired.main(["--studies", str(study), str(other), "--a", "edit-jola.k14", "--b", "edit-lofit.k14",
                        "--seeds", "1"]) == 0
    assert "| e3.n200.t4 | boolq | 1 | 4 | 0.500 | 0.500 | +0.000 ± 0." in capsys.readouterr().out
    # runs with other settings (a smaller training set) are compared in a row of their own, sorted by size
    _stored_run(study, "boolq", "edit-jola.k14", 1, [True] * 4, n=50)
    _stored_run(study, "boolq", "edit-lofit.k14", 1, [False] * 4, n=50)
    assert paired.main(["--studies", str(study), str(other), "--a", "edit-jola.k14", "--b", "edit-lofit.k14",
                        "--out", str(tmp_path / "out")]) == 0
    rows = _rows(tmp_path / "out" / "paired.csv")
    assert [(r["settings"], r["diff"], r["pairs"]) for r in rows] == [("e3.n50.t4", "1.0", "1"),
                                                                       ("e3.n200.t4", row["diff"], "2")]
    # zero-shot trains nothing: its one run (any seed) pairs with every seed, on either side, seed filter or not
    _stored_run(study, "boolq", "zero_shot", 7, [False, True, False, True])
    _stored_run(study, "boolq", "zero_shot", 8, [False] * 4)  # a second copy is not counted again
    res, _ = paired.compare(paired.load_runs([study, other]), "edit-jola.k14", "zero_shot", settings="e3.n200.t4")
    # d per question over seeds 1 and 2 (seed 3 has no predictions): q0 1, q1 (0+0)/2, q2 (0+1)/2, q3 -1
    assert (res["pairs"], res["seeds"], res["diff"]) == (2, "1/2", pytest.approx((1 + 0 + 0.5 - 1) / 4))
    res, _ = paired.compare(paired.load_runs([study]), "zero_shot", "edit-jola.k14", seeds=[2], settings="e3.n200.t4")
    assert (res["pairs"], res["seeds"], res["diff"]) == (1, "2", pytest.approx((-1 + 0 - 1 + 1) / 4))
    with pytest.raises(SystemExit):
        paired.main(["--studies", str(study), "--a", "edit-jola.k14", "--b", "edit-dsp.k14"])
    assert "edit-lofit.k14" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no question id"):
        paired.paired_difference([{"q1": True}], [{"q2": True}])


def test_cached_run_reruns_only_runs_without_predictions(tmp_path):
    from analysis.common import cached_run

    out, other = tmp_path / "study", tmp_path / "other"
    (out / "runs").mkdir(parents=True)
    (other / "runs").mkdir(parents=True)
    calls = []

    def fn():
        calls.append(1)
        return {"accuracy": 0.6, "seconds": 5.0, "rows": [{"id": "q1", "likelihood_correct": True}]}

    # an old run without rows: kept as it is unless asked, re-run when asked, with the old numbers kept
    (out / "runs" / "t.jola.s42.json").write_text(json.dumps({"accuracy": 0.55, "seconds": 9.0}))
    assert cached_run(out, "t.jola.s42", fn, log=lambda m: None)["accuracy"] == 0.55 and not calls
    assert cached_run(out, "t.jola.s42", fn, log=lambda m: None, only_cached=True,
                      rerun_without_rows=True)["accuracy"] == 0.55 and not calls
    r = cached_run(out, "t.jola.s42", fn, log=lambda m: None, rerun_without_rows=True)
    assert len(calls) == 1 and r["accuracy"] == 0.6
    stored = json.loads((out / "runs" / "t.jola.s42.json").read_text())
    assert stored["rerun_of"]["accuracy"] == 0.55 and stored["rerun_of"]["seconds"] == 9.0 and stored["rows"]
    # it has rows now: not run a third time
    assert cached_run(out, "t.jola.s42", fn, log=lambda m: None, rerun_without_rows=True)["accuracy"] == 0.6
    assert len(calls) == 1
    # a copy with rows in a reuse folder replaces a local run without rows, with nothing run
    (out / "runs" / "t.lora.s42.json").write_text(json.dumps({"accuracy": 0.5}))
    (other / "runs" / "t.lora.s42.json").write_text(json.dumps({"accuracy": 0.52, "rows": [{"id": "q1"}]}))
    r = cached_run(out, "t.lora.s42", fn, log=lambda m: None, reuse=[other], rerun_without_rows=True)
    assert r["accuracy"] == 0.52 and len(calls) == 1
    assert json.loads((out / "runs" / "t.lora.s42.json").read_text())["accuracy"] == 0.52


def test_main_table_reports_whether_reruns_reproduced_the_stored_accuracy():
    runs = [{"accuracy": 0.6, "rerun_of": {"accuracy": 0.6}}, {"accuracy": 0.63, "rerun_of": {"accuracy": 0.6}},
            {"accuracy": 0.5}]
    assert main_table.rerun_text(runs) == [
        "", "Re-run to keep per-question predictions: 2 runs; 1 gave the replaced accuracy exactly; "
        "largest change 0.030."]
    assert main_table.rerun_text([{"accuracy": 0.5}]) == []


# ---- the study skeleton, task folders, controls (no model: every run here is a synthetic file) ----------------


def _task_folder(root, name="my_task"):
    """A tiny multiple-choice task folder: every training answer is ``answer1``, the test answers are
    mostly ``answer2``, so the two controls differ (commonest training label 0.25, test-sample majority 0.75)."""
    folder = root / name
    folder.mkdir(parents=True)

    def ex(split, i, answer):
        return {"id": f"{name}-{split}-{i}", "question": f"{split} question {i}?", "choices": ["red", "green", "blue"],
                "answer": answer}

    train = [ex("train", i, "answer1") for i in range(8)]
    test = [ex("test", i, a) for i, a in enumerate(["answer2", "answer2", "answer2", "answer1"])]
    for split, rows in (("train", train), ("test", test)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


SMALL = ["--train-size", "4", "--valid-size", "2", "--test-size", "4", "--no-progress"]


def _synthetic_run(out, task, method, *, seed=42, epochs=3, accuracy=0.5):
    r = {"task": task, "method": method, "seed": seed, "accuracy": accuracy, "likelihood_acc_norm": accuracy,
         "trainable_params": 0, "n": 4, "train_seconds": 1.0, "seconds": 2.0}
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "runs" / f"{task}.{method}.s{seed}.e{epochs}.n4.t4.json").write_text(json.dumps(r))
    return r


@pytest.fixture
def no_model(monkeypatch):
    """Loading the model fails: a study that only tabulates stored runs must not need it."""
    import analysis.common

    def refuse():
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(analysis.common, "load_model", refuse)


def test_every_study_main_goes_through_the_one_skeleton(monkeypatch):
    from analysis import dev_tasks

    called = []
    for mod in (main_table, ablations, compare_selection, data_size, dev_tasks):
        monkeypatch.setattr(mod, "run_study", lambda name, doc, argv, body, **kw: called.append((name, body)) or 0)
        assert mod.main([]) == 0
    assert [n for n, _ in called] == ["main_table", "ablations", "compare_selection", "data_size", "dev_tasks"]
    assert all(callable(body) for _, body in called)


def test_run_study_parses_the_common_arguments_and_hands_over_a_study(tmp_path, no_model):
    from analysis.common import run_study
    from jola_lens.recipes import get_recipe

    seen = []
    argv = ["--tasks", "ARC-Easy", "--seeds", "1", "2", "--out", str(tmp_path / "o")]
    assert run_study("my_study", "doc", argv, seen.append,
                     add_args=lambda ap: ap.add_argument("--extra", type=int, default=7)) == 0
    (study,) = seen
    assert study.cmd == "python -m analysis.my_study " + " ".join(argv)
    assert study.out == tmp_path / "o" and study.args.extra == 7 and study.args.seeds == [1, 2]
    assert study.args.epochs == get_recipe("demo").train["epochs"] == 3  # one epochs default: the demo recipe's
    assert study.cached_only is False and study.progress is True and study.seconds() >= 0
    assert study.key("ARC-Easy", "jola", seed=1) == "ARC-Easy.jola.s1.e3.n200.t200"
    # the default output folder is the study's own; no common arguments without common=True
    assert run_study("my_study", "doc", ["--cached-only"], seen.append, common=False) == 0
    assert seen[-1].out == Path("analysis/results/my_study") and seen[-1].cached_only
    assert not hasattr(seen[-1].args, "tasks")
    with pytest.raises(SystemExit):  # the flag exists only where the study asks for it
        run_study("my_study", "doc", ["--cached-only"], seen.append, common=False, cached_only_help=None)


def test_epochs_default_follows_the_demo_recipe(tmp_path, monkeypatch, no_model):
    from jola_lens import recipes

    root, out = tmp_path / "data", tmp_path / "out"
    _task_folder(root)
    _synthetic_run(out, "my_task", "jola", epochs=5)
    demo = recipes.get_recipe("demo")
    monkeypatch.setitem(recipes.RECIPES, "demo", dataclasses.replace(demo, train={**demo.train, "epochs": 5}))
    assert main_table.main(["--tasks", "my_task", "--methods", "jola", "--data-root", str(root), "--cached-only",
                            "--out", str(out), *SMALL]) == 0
    md = (out / "main_table.md").read_text()
    assert "5 epochs" in md and "| JoLA | 0 | 0.500 |" in md  # the e5 run was found without --epochs


def test_studies_take_any_task_folder_under_the_data_root(tmp_path, capsys, no_model):
    root, out = tmp_path / "data", tmp_path / "out"
    _task_folder(root)
    _task_folder(root / "suite", "inner")  # one level down, as mmlu_pro/biology
    _synthetic_run(out, "my_task", "zero_shot", accuracy=0.25)
    _synthetic_run(out, "my_task", "jola", accuracy=0.75)
    argv = ["--methods", "zero_shot", "jola", "--data-root", str(root), "--cached-only", "--out", str(out), *SMALL]
    assert main_table.main(["--tasks", "my_task", *argv]) == 0
    rows = _rows(out / "main_table.csv")
    assert [(r["task"], r["method"], r["accuracy_mean"]) for r in rows] == [("my_task", "zero_shot", "0.25"),
                                                                           ("my_task", "jola", "0.75")]
    # an unknown name is an argument error that lists the task folders under the data root
    for mod in (main_table, ablations, data_size, compare_selection):
        with pytest.raises(SystemExit) as e:
            mod.main(["--tasks", "my_task", "no_such_task", "--data-root", str(root), "--cached-only",
                      "--out", str(out)])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "unknown task 'no_such_task'" in err and "my_task, suite/inner" in err and "'my_task'" not in err
        assert "ARC-Easy, ARC-Easy-full, boolq" in err  # and the known names


def test_main_table_names_and_computes_both_controls(tmp_path, no_model):
    root, out = tmp_path / "data", tmp_path / "out"
    _task_folder(root)
    _synthetic_run(out, "my_task", "jola", accuracy=0.75)
    assert main_table.main(["--tasks", "my_task", "--methods", "jola", "--data-root", str(root), "--cached-only",
                            "--out", str(out), *SMALL]) == 0
    md = (out / "main_table.md").read_text()
    # training answers are all answer1 (1 of the 4 test answers); the test sample's commonest is answer2 (3 of 4)
    for table in md.split("Length-normalised")[:2]:
        assert "| commonest training label | 0 | 0.250 | |" in table
        assert "| test-sample majority | 0 | 0.750 | |" in table
    assert "majority label" not in md and "Controls: commonest training label = accuracy" in md
    row = _rows(out / "main_table.csv")[0]
    assert (row["commonest_training_label"], row["test_sample_majority"]) == ("0.25", "0.75")
    assert "majority" not in row


def test_new_runs_store_both_controls(tmp_path, monkeypatch):
    import analysis.common

    root, out = tmp_path / "data", tmp_path / "out"
    _task_folder(root)
    monkeypatch.setattr(analysis.common, "load_model", lambda: "the model")
    calls = []

    def fake_run(model, setup, method, **kw):
        calls.append((model, setup.name, method))
        return {"task": setup.name, "method": method, "seed": kw["seed"], "accuracy": 0.5, "n": 4, "train_seconds": 0,
                "seconds": 0, "trainable_params": 0}

    monkeypatch.setattr(main_table, "run_method", fake_run)
    assert main_table.main(["--tasks", "my_task", "--methods", "jola", "--data-root", str(root), "--out", str(out),
                            *SMALL]) == 0
    assert calls == [("the model", "my_task", "jola")]
    stored = json.loads((out / "runs" / "my_task.jola.s42.e3.n4.t4.json").read_text())
    assert stored["controls"] == {"commonest_training_label": 0.25, "test_sample_majority": 0.75}


def test_dev_tasks_retabulates_stored_results_with_both_controls(tmp_path, no_model):
    from analysis import dev_tasks

    root, out = tmp_path / "data", tmp_path / "out"
    _task_folder(root)
    folder = out / "demo" / "my_task"
    folder.mkdir(parents=True)
    spec = {"task": "my_task", "data_root": str(root), "style": "cloze", "target": "choice_text", "train_size": 4,
            "valid_size": 2, "test_size": 4}
    (folder / "results.json").write_text(json.dumps({
        "task": "my_task", "n_train": 4, "n_test": 4, "spec": spec, "majority_label_acc": 0.25, "train_seconds": 3,
        "zero_shot": {"likelihood_acc": 0.5, "seconds": 1}, "jola": {"likelihood_acc": 0.75, "seconds": 2},
        "open_gates": {"additive": 3, "multiplicative": 1}}))
    (out / "demo" / "summary.md").write_text("Command: `python -m analysis.dev_tasks --tasks my_task` (by hand)\n")
    assert dev_tasks.main(["--tasks", "my_task", "--cached-only", "--out", str(out)]) == 0
    lines = (out / "demo" / "summary.md").read_text().splitlines()
    assert lines[0] == "Command: `python -m analysis.dev_tasks --tasks my_task` (by hand)"  # how the runs were made
    assert lines[1].startswith("Re-tabulated from the stored runs: `python -m analysis.dev_tasks --tasks my_task "
                               "--cached-only")
    assert "| task | metric | commonest training label | test-sample majority | zero-shot | JoLA |" in lines[3]
    assert lines[5] == "| my_task | likelihood_acc | 0.250 | 0.750 | 0.500 | 0.750 | 3 / 1 | 6 |"
    row = json.loads((out / "demo" / "summary.json").read_text())[0]
    assert (row["commonest_training_label"], row["test_sample_majority"]) == (0.25, 0.75)


def test_analysis_uses_no_private_library_names():
    import ast

    repo = Path(__file__).resolve().parents[2]
    found = []
    for path in sorted((repo / "analysis").glob("*.py")):
        tree = ast.parse(path.read_text())
        modules = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and (n.module or "").startswith("jola_lens") for a in n.names}
        modules |= {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names if a.name.startswith("jola_lens")}
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("jola_lens"):
                found += [f"{path.name}: from {n.module} import {a.name}" for a in n.names if a.name.startswith("_")]
                if n.module == "jola_lens.cli" and any(a.name == "DEMO_DEFAULTS" for a in n.names):
                    found.append(f"{path.name}: DEMO_DEFAULTS from jola_lens.cli (use jola_lens.recipes)")
            if (isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
                    and isinstance(n.value, ast.Name) and n.value.id in modules):
                found.append(f"{path.name}:{n.lineno}: {n.value.id}.{n.attr}")
    for path in [*sorted((repo / "notebooks").glob("*.ipynb")), repo / "benchmarks" / "run.py"]:
        if path.is_file() and "from jola_lens.cli import DEMO_DEFAULTS" in path.read_text():
            found.append(f"{path.name}: DEMO_DEFAULTS from jola_lens.cli (use jola_lens.recipes)")
    assert not found


def test_paired_says_which_method_has_no_run_and_which_runs_lack_predictions(tmp_path, capsys):
    from analysis import paired

    study = tmp_path / "a"
    _stored_run(study, "boolq", "jola", 1, [True, False, True, False])
    _stored_run(study, "boolq", "lora", 1, [True, True, False, False], rows=False)
    _stored_run(study, "openbookqa", "lofit", 1, [True, True, False, False])
    # lofit has runs, but none on BoolQ: that is said, not "no per-question predictions"
    assert paired.main(["--studies", str(study), "--a", "jola", "--b", "lofit"]) == 1
    out = capsys.readouterr().out
    assert "jola vs lofit: no pair of runs to compare" in out
    assert "boolq: lofit has no stored run with settings e3.n200.t4" in out and "predictions" not in out.split("|")[0]
    # lora has a BoolQ run with the same settings, which kept no predictions: that is said instead
    assert paired.main(["--studies", str(study), "--a", "jola", "--b", "lora"]) == 1
    out = capsys.readouterr().out
    assert ("boolq: runs of both exist, but these kept no per-question predictions: boolq.lora.s1.e3.n200.t4.json"
            in out) and "has no stored run" not in out
    # a --tasks filter naming a task where the compared method never ran
    assert paired.main(["--studies", str(study), "--a", "lofit", "--b", "jola", "--tasks", "openbookqa"]) == 1
    assert "openbookqa: jola has no stored run with settings e3.n200.t4" in capsys.readouterr().out
    # both have runs on the task, with no seed in common
    _stored_run(study, "boolq", "lofit", 2, [True] * 4)
    assert paired.main(["--studies", str(study), "--a", "jola", "--b", "lofit", "--tasks", "boolq"]) == 1
    assert "boolq: runs of both exist, but with no seed in common (jola: seeds 1; lofit: seeds 2)" in \
        capsys.readouterr().out
