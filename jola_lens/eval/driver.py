"""The evaluation driver: :func:`evaluate_task` scores a model or an editor on a task's test split.

Every number of the CLI, the experiment runner and the analysis studies comes from
:func:`evaluate_task`. :func:`evaluate_multiple_choice` and :func:`evaluate_generation` are thin
conveniences over the same scoring, generation, parsing and metric functions for callers that
bring their own prompts (used by the tests).

Example:
    >>> rows = [{"question": "q1", "answer": "a", "references": ["a"]},
    ...         {"question": "q1", "answer": "b", "references": ["b"]}]
    >>> [g["references"] for g in group_references(rows)]
    [['a', 'b']]
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from ..tasks import choices_of, format_prompt, gold_choice_index, label_set, option_continuation
from .generate import generate_greedy
from .metrics import accuracy, bertscore, bleu, majority_label_accuracy, rouge_l, standard_error
from .parsing import auto_parser, parse_choice_text
from .scoring import _per_prompt, choice_likelihood_predict, label_likelihood_predict
from .target import ModelLike, prepends_bos, scoring_target

__all__ = [
    "METHODS",
    "SplitsLike",
    "TaskSpecLike",
    "evaluate_generation",
    "evaluate_multiple_choice",
    "evaluate_task",
    "group_references",
    "is_multiple_choice",
    "task_majority_accuracy",
    "write_jsonl",
]


METHODS = ("label_likelihood", "choice_likelihood", "generation")


def _first_line(text: str) -> str:
    return text.strip().split("\n")[0].strip()


def write_jsonl(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``rows`` as JSON lines to ``path`` (parents made; written to a temporary file, then renamed).

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "preds" / "rows.jsonl"
        >>> write_jsonl(path, [{"id": "1", "pred": "é"}, {"id": "2"}])
        >>> path.read_text(encoding="utf-8").splitlines()
        ['{"id": "1", "pred": "é"}', '{"id": "2"}']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _acc_entry(preds: Sequence[Any], golds: Sequence[Any]) -> dict[str, float]:
    a = accuracy(preds, golds)
    return {"accuracy": a, "stderr": standard_error(a, len(golds))}


def evaluate_multiple_choice(
    model: ModelLike,
    examples: Sequence[Mapping[str, Any]],
    prompts: Sequence[str],
    *,
    labels: Sequence[str] | Sequence[Sequence[str]],
    methods: Sequence[str] = ("label_likelihood", "generation"),
    choice_prompts: Sequence[str] | None = None,
    batch_size: int = 8,
    out_path: str | os.PathLike | None = None,
    max_new_tokens: int = 16,
    num_beams: int = 1,
    parser: Callable[[str], str | None] | None = None,
    restrict_labels_to_choices: bool = True,
    train_answers: Sequence[str] | None = None,
    prepend_bos: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy of ``model`` on multiple-choice ``examples`` by one or more methods, from given prompts.

    A thin convenience over the scoring functions :func:`evaluate_task` uses
    (:func:`~jola_lens.eval.scoring.label_likelihood_predict`,
    :func:`~jola_lens.eval.scoring.choice_likelihood_predict`,
    :func:`~jola_lens.eval.generate.generate_greedy` and the parsers), for callers that bring
    their own prompts; the task runs of the CLI and the studies go through :func:`evaluate_task`.

    ``examples[i]["answer"]`` is the gold label (``answer2``, ``true``, ``C``); ``prompts[i]`` its
    formatted prompt. ``labels``: one label list for all examples or one per example; with
    ``restrict_labels_to_choices`` a shared list is cut to ``len(example["choices"])`` labels
    when the example has fewer options. Methods:

    * ``"label_likelihood"``: the label with the highest log-probability after the prompt;
    * ``"choice_likelihood"``: each option text (``example["choices"]``, aligned with the labels)
      scored after ``choice_prompts[i]`` (default: ``prompts[i]``); ``acc`` and ``acc_norm``;
    * ``"generation"``: greedy generation (``max_new_tokens``, ``num_beams``) parsed with
      ``parser`` (default: :func:`parse_mmlu_letter` for single-letter labels, else
      :func:`parse_label`); an unparsable answer counts as wrong.

    Returns ``{"n", "<method>": {"accuracy", "stderr", ...}, "seconds": {...}}`` (plus
    ``"majority_label"`` given ``train_answers``) and writes one JSON line per example to
    ``out_path``: id, prompt, gold, each method's prediction, the label scores and the raw generation.

    Example (bundled model)::

        res = evaluate_multiple_choice(model, examples, prompts, labels=["answer1", "answer2",
                                       "answer3", "answer4", "answer5"], out_path="preds.jsonl")
        res["label_likelihood"]["accuracy"], res["generation"]["accuracy"]
    """
    n = len(examples)
    if len(prompts) != n:
        raise ValueError(f"{n} examples but {len(prompts)} prompts")
    if n == 0:
        raise ValueError("no examples")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    per = _per_prompt(labels, n)
    shared = len(labels) > 0 and isinstance(labels[0], str)
    if shared and restrict_labels_to_choices:
        per = [
            labs[: len(ex["choices"])] if ex.get("choices") and len(ex["choices"]) < len(labs) else labs
            for labs, ex in zip(per, examples)
        ]
    golds = [str(ex["answer"]) for ex in examples]
    for i, (g, labs) in enumerate(zip(golds, per)):
        if g not in labs:
            raise ValueError(f"example {i}: gold answer {g!r} is not one of its labels {labs}")
    ids = [str(ex.get("id", i)) for i, ex in enumerate(examples)]
    records: list[dict[str, Any]] = [
        {"id": ids[i], "prompt": prompts[i], "gold": golds[i], "labels": per[i]} for i in range(n)
    ]
    result: dict[str, Any] = {"n": n, "seconds": {}}

    if "label_likelihood" in methods:
        t0 = time.perf_counter()
        ll = label_likelihood_predict(
            model, prompts, per, batch_size=batch_size, prepend_bos=prepend_bos, progress=progress
        )
        result["seconds"]["label_likelihood"] = time.perf_counter() - t0
        result["label_likelihood"] = _acc_entry(ll.predictions, golds)
        for r, p, s in zip(records, ll.predictions, ll.scores):
            r["label_likelihood"] = p
            r["label_scores"] = s

    if "choice_likelihood" in methods:
        cps = list(choice_prompts) if choice_prompts is not None else list(prompts)
        if len(cps) != n:
            raise ValueError(f"{n} examples but {len(cps)} choice prompts")
        choices = []
        for i, (ex, labs) in enumerate(zip(examples, per)):
            cs = list(ex.get("choices") or [])
            if len(cs) != len(labs):
                raise ValueError(f"example {i}: {len(cs)} choices but {len(labs)} labels")
            choices.append(cs)
        t0 = time.perf_counter()
        cp = choice_likelihood_predict(
            model, cps, choices, batch_size=batch_size, prepend_bos=prepend_bos, progress=progress
        )
        result["seconds"]["choice_likelihood"] = time.perf_counter() - t0
        acc_preds = [labs[k] for labs, k in zip(per, cp.acc)]
        norm_preds = [labs[k] for labs, k in zip(per, cp.acc_norm)]
        entry = _acc_entry(acc_preds, golds)
        norm = _acc_entry(norm_preds, golds)
        entry.update(accuracy_norm=norm["accuracy"], stderr_norm=norm["stderr"])
        result["choice_likelihood"] = entry
        for r, a, b, s, cprompt in zip(records, acc_preds, norm_preds, cp.scores, cps):
            r["choice_likelihood"] = a
            r["choice_likelihood_norm"] = b
            r["choice_scores"] = s
            if choice_prompts is not None:
                r["choice_prompt"] = cprompt

    if "generation" in methods:
        t0 = time.perf_counter()
        texts = generate_greedy(
            model,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            num_beams=num_beams,
            prepend_bos=prepend_bos,
            progress=progress,
        )
        result["seconds"]["generation"] = time.perf_counter() - t0
        parsed = [(parser or auto_parser(labs))(t) for t, labs in zip(texts, per)]
        entry = _acc_entry(parsed, golds)
        entry["unparsed"] = sum(p is None for p in parsed)
        result["generation"] = entry
        for r, p, t in zip(records, parsed, texts):
            r["generation"] = p
            r["raw_generation"] = t

    if train_answers is not None:
        result["majority_label"] = {"accuracy": majority_label_accuracy(train_answers, golds)}
    if out_path is not None:
        write_jsonl(out_path, records)
        result["predictions_path"] = str(out_path)
    return result


def evaluate_generation(
    model: ModelLike,
    examples: Sequence[Mapping[str, Any]],
    prompts: Sequence[str],
    *,
    out_path: str | os.PathLike | None = None,
    bertscore_model: bool | str = False,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    num_beams: int = 1,
    stop_strings: Sequence[str] | None = None,
    first_line_only: bool = True,
    prepend_bos: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate for each prompt and score against ``example["references"]`` (or ``[example["answer"]]``).

    A thin convenience over :func:`~jola_lens.eval.generate.generate_greedy` and the metrics
    (:func:`~jola_lens.eval.metrics.bleu`, :func:`~jola_lens.eval.metrics.rouge_l`,
    :func:`~jola_lens.eval.metrics.bertscore`) for callers that bring their own prompts; the task
    runs go through :func:`evaluate_task`.

    Output post-processing as in the JoLA code: stripped, and with ``first_line_only`` only the
    first line kept. Returns ``{"n", "bleu" (0-100), "rouge_l" (0-1), "seconds"}``, plus
    ``"bertscore"`` (see :func:`bertscore`) when ``bertscore_model`` is True (the local MiniLM) or a
    local model path; writes id, prompt, references, prediction and raw generation per line to ``out_path``.

    Example (bundled model)::

        res = evaluate_generation(model, examples, prompts, bertscore_model=True, out_path="gen.jsonl")
        res["bleu"], res["rouge_l"], res["bertscore"]["f1"]
    """
    n = len(examples)
    if len(prompts) != n:
        raise ValueError(f"{n} examples but {len(prompts)} prompts")
    if n == 0:
        raise ValueError("no examples")
    refs = [list(ex.get("references") or [ex["answer"]]) for ex in examples]
    t0 = time.perf_counter()
    raw = generate_greedy(
        model,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        num_beams=num_beams,
        stop_strings=stop_strings,
        prepend_bos=prepend_bos,
        progress=progress,
    )
    seconds = {"generation": time.perf_counter() - t0}
    preds = [_first_line(t) if first_line_only else t.strip() for t in raw]
    result: dict[str, Any] = {"n": n, "bleu": bleu(preds, refs), "rouge_l": rouge_l(preds, refs)}
    if bertscore_model:
        t0 = time.perf_counter()
        path = None if bertscore_model is True else str(bertscore_model)
        result["bertscore"] = bertscore(preds, refs, model_path=path)
        seconds["bertscore"] = time.perf_counter() - t0
    result["seconds"] = seconds
    if out_path is not None:
        write_jsonl(
            out_path,
            [
                {"id": str(ex.get("id", i)), "prompt": p, "references": r, "prediction": pr, "raw_generation": t}
                for i, (ex, p, r, pr, t) in enumerate(zip(examples, prompts, refs, preds, raw))
            ],
        )
        result["predictions_path"] = str(out_path)
    return result


# ---- task-level evaluation -----------------------------------------------------------------------


@runtime_checkable
class TaskSpecLike(Protocol):
    """What :func:`evaluate_task` reads of a :class:`jola_lens.experiment.TaskSpec`.

    Example:
        >>> from jola_lens.experiment import TaskSpec
        >>> isinstance(TaskSpec(), TaskSpecLike)
        True
    """

    style: str
    target: str
    max_new_tokens: int
    eval_batch_size: int


@runtime_checkable
class SplitsLike(Protocol):
    """What the task-level functions read of a :class:`~jola_lens.tasks.TaskData`: ``train`` and ``test``.

    Example:
        >>> from jola_lens.tasks import TaskData
        >>> isinstance(TaskData(train=[], valid=[], test=[]), SplitsLike)
        True
    """

    train: list[dict[str, Any]]
    test: list[dict[str, Any]]


def is_multiple_choice(td: SplitsLike) -> bool:
    """True when the task's test examples have options (its first test example has choices).

    Example:
        >>> from jola_lens.tasks import TaskData
        >>> ex = {"question": "q", "choices": ["a", "b"], "answer": "answer1"}
        >>> is_multiple_choice(TaskData(train=[], valid=[], test=[ex])), is_multiple_choice(TaskData([], [], []))
        (True, False)
    """
    return bool(td.test) and bool(choices_of(td.test[0]))


def group_references(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge generation examples that share a prompt (E2E has one row per reference) into one
    example with every reference, for multi-reference scoring. Keeps first-seen order.

    Example:
        >>> rows = [{"id": "1", "question": "q", "answer": "a", "references": []},
        ...         {"id": "2", "question": "q", "answer": "b", "references": ["b", "c"]}]
        >>> [(g["id"], g["references"]) for g in group_references(rows)]
        [('1', ['a', 'b', 'c'])]
    """
    groups: dict[str, dict[str, Any]] = {}
    for e in examples:
        g = groups.get(e["question"])
        refs = list(e.get("references") or [e["answer"]])
        if g is None:
            groups[e["question"]] = {**e, "references": refs}
        else:
            g["references"] += [r for r in refs if r not in g["references"]]
    return list(groups.values())


def task_majority_accuracy(td: SplitsLike) -> float:
    """Accuracy on ``td.test`` of always answering the most frequent training label.

    :func:`jola_lens.experiment.majority_label_accuracy` is this function (the first release's name
    there); :func:`~jola_lens.eval.metrics.majority_label_accuracy` is the same on answer lists.

    Example:
        >>> from jola_lens.tasks import TaskData
        >>> ex = lambda a: {"question": "q", "answer": a}  # noqa: E731
        >>> task_majority_accuracy(TaskData(train=[ex("x"), ex("x"), ex("y")], valid=[], test=[ex("x"), ex("y")]))
        0.5
    """
    return majority_label_accuracy([e["answer"] for e in td.train], [e["answer"] for e in td.test])


def evaluate_task(
    model: ModelLike,
    td: SplitsLike,
    spec: TaskSpecLike,
    *,
    out_path: str | Path | None = None,
    generation: bool = True,
    progress: bool = True,
    return_rows: bool = False,
) -> dict[str, Any]:
    """Score ``model`` (a HookedTransformer or any editor, see :func:`scoring_target`) on ``td.test``.

    ``td`` is a :class:`~jola_lens.tasks.TaskData`, ``spec`` a :class:`jola_lens.experiment.TaskSpec`
    (its ``style``, ``target``, ``max_new_tokens`` and ``eval_batch_size`` are read).

    Multiple choice: ``likelihood_acc`` (label likelihood for ``target="label"``; option-text
    likelihood, summed log-prob, for ``target="choice_text"``, with ``likelihood_acc_norm``), and
    ``generation_acc`` (greedy generation parsed as a label, an MMLU-Pro letter, or an option's text).
    Generation tasks: BLEU and ROUGE-L.

    Per-example rows (``id``, ``gold`` and each prediction: ``likelihood_pred``, an option index or
    a label, with ``likelihood_correct``; ``generation`` ...) go to ``out_path`` as JSONL, and with
    ``return_rows`` also to ``out["rows"]`` (a list of dicts, one per test example).

    Example (a tiny random model with a character tokenizer; the real runs use ``load_model()``):
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from jola_lens.experiment import TaskSpec
        >>> from jola_lens.tasks import TaskData
        >>> class Chars:
        ...     bos_token_id, eos_token_id, pad_token_id, padding_side = None, 1, 0, "right"
        ...     def __call__(self, text, add_special_tokens=False):
        ...         return {"input_ids": [2 + ord(c) % 95 for c in text]}
        ...     def decode(self, ids, skip_special_tokens=False):
        ...         return "".join(chr(i - 2 + 32) for i in ids if i >= 2)
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=64, d_head=4, n_heads=2,
        ...                               d_vocab=97, act_fn="gelu", normalization_type="RMS", seed=0,
        ...                               default_prepend_bos=False)
        >>> model = HookedTransformer(cfg)
        >>> model.tokenizer = Chars()
        >>> exs = [{"id": str(i), "question": f"Q{i}?", "choices": ["yes", "no"], "answer": "answer1"}
        ...        for i in range(3)]
        >>> out = evaluate_task(model, TaskData(train=exs, valid=[], test=exs), TaskSpec(max_new_tokens=4),
        ...                     progress=False, return_rows=True)
        >>> out["n"], 0.0 <= out["likelihood_acc"] <= 1.0, sorted(out["rows"][0])[:4]
        (3, True, ['generation', 'generation_pred', 'gold', 'id'])
    """
    hooked, _ = scoring_target(model)
    tok = hooked.tokenizer
    prepend_bos = prepends_bos(hooked)
    test = td.test if is_multiple_choice(td) else group_references(td.test)
    prompts = [format_prompt(e, tok, spec.style) for e in test]
    golds = [e["answer"] for e in test]
    bs = spec.eval_batch_size
    out: dict[str, Any] = {"n": len(test)}
    rows: list[dict[str, Any]] = [{"id": e["id"], "gold": e["answer"]} for e in test]
    t0 = time.time()
    if not is_multiple_choice(td):
        # the first non-empty line is the answer (zero-shot SmolLM2 opens with a newline here)
        gens = generate_greedy(model, prompts, max_new_tokens=max(spec.max_new_tokens, 64), batch_size=bs,
                               prepend_bos=prepend_bos, stop_strings=["\n"], stop_after_text=True,
                               progress=progress)
        gens = [g.strip().split("\n")[0] for g in gens]
        refs = [e["references"] or [e["answer"]] for e in test]
        out.update(bleu=bleu(gens, refs), rouge_l=rouge_l(gens, refs))
        for r, g in zip(rows, gens):
            r["generation"] = g
    else:
        choices = [choices_of(e) for e in test]
        gold_idx = [gold_choice_index(e) for e in test]
        if spec.target == "label":
            labels = label_set(td.train + td.test) or []
            per = [[lab for lab in labels if _label_fits(lab, len(c))] for c in choices]
            lp = label_likelihood_predict(model, prompts, per, batch_size=bs, prepend_bos=prepend_bos,
                                          progress=progress)
            lk_preds, lk_golds = lp.predictions, golds
        else:
            conts = [[option_continuation(c, spec.style) for c in cs] for cs in choices]
            cp = choice_likelihood_predict(model, prompts, conts, batch_size=bs, prepend_bos=prepend_bos,
                                           progress=progress)
            lk_preds, lk_golds = cp.acc, gold_idx
            out["likelihood_acc_norm"] = accuracy(cp.acc_norm, gold_idx)
            for r, q in zip(rows, cp.acc_norm):
                r["likelihood_norm_pred"] = q
        # the accuracy and each row's likelihood_correct come from the same predictions and gold keys
        out["likelihood_acc"] = accuracy(lk_preds, lk_golds)
        for r, p, g in zip(rows, lk_preds, lk_golds):
            r["likelihood_pred"], r["likelihood_correct"] = p, accuracy([p], [g]) == 1.0
        if generation:
            gens = generate_greedy(model, prompts, max_new_tokens=spec.max_new_tokens, batch_size=bs,
                                   prepend_bos=prepend_bos, stop_strings=["\n"], progress=progress)
            if spec.target == "label":
                labels = label_set(td.train + td.test) or []
                parser = auto_parser(labels)
                preds = [parser(g) for g in gens]
                out["generation_acc"] = accuracy(preds, golds)
            else:
                preds = [parse_choice_text(g, c) for g, c in zip(gens, choices)]
                out["generation_acc"] = accuracy(preds, gold_idx)
            out["generation_parsed"] = sum(p is not None for p in preds) / max(len(preds), 1)
            for r, g, p in zip(rows, gens, preds):
                r["generation"], r["generation_pred"] = g, p
    for k in ("likelihood_acc", "generation_acc"):
        if k in out:
            out[k + "_stderr"] = standard_error(out[k], len(test))
    out["seconds"] = time.time() - t0
    if out_path is not None:
        write_jsonl(out_path, rows)
    if return_rows:
        out["rows"] = rows
    return out


def _label_fits(label: str, n_choices: int) -> bool:
    m = re.search(r"(\d+)$", label)
    return m is None or int(m.group(1)) <= n_choices


def _short(r: dict[str, Any]) -> str:
    keys = ("likelihood_acc", "likelihood_acc_norm", "generation_acc", "bleu", "rouge_l")
    return ", ".join(f"{k}={r[k]:.3f}" for k in keys if k in r) + f" ({r['seconds']:.0f} s)"


def _scoring_note(spec: TaskSpecLike, mc: bool) -> str:
    if not mc:
        return "greedy generation, first line; corpus BLEU (sacrebleu) and ROUGE-L F (rouge-score), multi-reference"
    if spec.target == "label":
        lik = "label likelihood: the label string (e.g. answer2) with the highest log-probability"
        gen = "generation: greedy, first whole-word label in the output"
    else:
        lik = "option-text likelihood: the option whose text has the highest summed log-probability"
        gen = "generation: greedy, first line matched to an option's text"
    return f"prompt style {spec.style!r}, target {spec.target!r}; {lik}; {gen}"
