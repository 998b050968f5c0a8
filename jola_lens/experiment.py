"""One task end to end: data -> zero-shot evaluation -> JoLA training -> evaluation -> results.

Used by the CLI (``jola-lens train | eval | demo``) and by the analysis scripts, so that
every number in the README comes from the same code path.

Example::

    from jola_lens import load_model
    from jola_lens.experiment import TaskSpec, run_experiment
    results = run_experiment(load_model(), TaskSpec(task="demo"), out_dir="runs/demo")
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import data as D
from . import evaluate as E
from .config import JoLAConfig
from .model import JoLAModel
from .train import JoLATrainer, TrainConfig

DEMO_DATA = Path(__file__).parent / "data" / "arc_easy"


@dataclass
class TaskSpec:
    """Which data, which prompt, which sizes.

    Attributes:
        task: ``"demo"`` (the ARC-Easy sample shipped with the package), a task folder name
            under ``data_root`` (``ARC-Easy``, ``boolq``, ``openbookqa``, ``mmlu_pro/math``, ``e2e_nlg``...),
            or a path to a folder with ``train``/``test`` files.
        style: prompt style (see :data:`jola_lens.data.PROMPT_STYLES`): ``chat``, ``alpaca`` (the
            paper's), ``cloze`` or ``qa`` (question and options, answer as text).
        target: ``"label"`` (the paper: ``answer2``) or ``"choice_text"`` (the option's text).
        test_size: fixed test subset (sampled with ``test_seed``); ``None`` keeps all.
        max_new_tokens: generation budget at evaluation.
    """

    task: str = "demo"
    data_root: str | None = None
    style: str = "cloze"
    target: str = "choice_text"
    train_size: int = 200
    valid_size: int = 200
    test_size: int | None = 300
    seed: int = 42
    test_seed: int = 0
    max_length: int = 400
    max_new_tokens: int = 16
    eval_batch_size: int = 16

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TaskSpec fields: {sorted(unknown)}")
        return cls(**d)


def load_task_data(spec: TaskSpec) -> D.TaskData:
    """The train/valid/test split for ``spec`` (seeded, disjoint)."""
    if spec.task == "demo":
        folder = DEMO_DATA
        train, valid, test = (D.load_examples(folder / f"{s}.jsonl") for s in ("train", "valid", "test"))
        cut = lambda xs, n: xs if n is None or n >= len(xs) else D.sample_subset(xs, n, seed=spec.seed)  # noqa: E731
        return D.TaskData(train=cut(train, spec.train_size), valid=cut(valid, spec.valid_size),
                          test=cut(test, spec.test_size), name="ARC-Easy (bundled sample)")
    return D.load_task(
        spec.task, data_root=spec.data_root, train_size=spec.train_size, valid_size=spec.valid_size,
        test_size=spec.test_size, seed=spec.seed, test_seed=spec.test_seed,
    )


def is_multiple_choice(td: D.TaskData) -> bool:
    return bool(td.test) and bool(D.choices_of(td.test[0]))


def tokenize_splits(tokenizer: Any, td: D.TaskData, spec: TaskSpec, prepend_bos: bool = False) -> tuple[list, list]:
    kw = dict(style=spec.style, target=spec.target, max_length=spec.max_length, prepend_bos=prepend_bos)
    return D.tokenize_examples(td.train, tokenizer, **kw), D.tokenize_examples(td.valid, tokenizer, **kw)


def group_references(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge generation examples that share a prompt (E2E has one row per reference) into one
    example with every reference, for multi-reference scoring. Keeps first-seen order."""
    groups: dict[str, dict[str, Any]] = {}
    for e in examples:
        g = groups.get(e["question"])
        refs = list(e.get("references") or [e["answer"]])
        if g is None:
            groups[e["question"]] = {**e, "references": refs}
        else:
            g["references"] += [r for r in refs if r not in g["references"]]
    return list(groups.values())


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", text.lower()).strip()


def parse_choice_text(text: str, choices: list[str]) -> int | None:
    """Index of the option the generated ``text`` names: exact (normalised) match of its first
    line, else the unique option that the line starts with. ``None`` if none or ambiguous."""
    line = _norm((text or "").strip().split("\n")[0])
    if not line:
        return None
    normed = [_norm(c) for c in choices]
    exact = [i for i, c in enumerate(normed) if c and c == line]
    if len(exact) == 1:
        return exact[0]
    starts = [i for i, c in enumerate(normed) if c and line.startswith(c)]
    if len(starts) == 1:
        return starts[0]
    if len(starts) > 1:  # the longest option that fits (e.g. "red" vs "red and blue")
        best = max(starts, key=lambda i: len(normed[i]))
        if sum(len(normed[i]) == len(normed[best]) for i in starts) == 1:
            return best
    return None


def majority_label_accuracy(td: D.TaskData) -> float:
    """Accuracy of always answering the most frequent training label."""
    return E.majority_label_accuracy([e["answer"] for e in td.train], [e["answer"] for e in td.test])


def evaluate_task(
    model: Any,
    td: D.TaskData,
    spec: TaskSpec,
    *,
    out_path: str | Path | None = None,
    generation: bool = True,
    progress: bool = True,
    return_rows: bool = False,
) -> dict[str, Any]:
    """Score ``model`` (a HookedTransformer or JoLAModel) on ``td.test``.

    Multiple choice: ``likelihood_acc`` (label likelihood for ``target="label"``; option-text
    likelihood, summed log-prob, for ``target="choice_text"``, with ``likelihood_acc_norm``), and
    ``generation_acc`` (greedy generation parsed as a label, an MMLU-Pro letter, or an option's text).
    Generation tasks: BLEU and ROUGE-L.

    Per-example rows (``id``, ``gold`` and each prediction: ``likelihood_pred``, an option index or
    a label, with ``likelihood_correct``; ``generation`` ...) go to ``out_path`` as JSONL, and with
    ``return_rows`` also to ``out["rows"]`` (a list of dicts, one per test example).
    """
    hooked, _ = E.prepare_model(model)
    tok = hooked.tokenizer
    prepend_bos = bool(getattr(hooked.cfg, "default_prepend_bos", False))
    test = td.test if is_multiple_choice(td) else group_references(td.test)
    prompts = [D.format_prompt(e, tok, spec.style) for e in test]
    golds = [e["answer"] for e in test]
    bs = spec.eval_batch_size
    out: dict[str, Any] = {"n": len(test)}
    rows: list[dict[str, Any]] = [{"id": e["id"], "gold": e["answer"]} for e in test]
    t0 = time.time()
    if not is_multiple_choice(td):
        # the first non-empty line is the answer (zero-shot SmolLM2 opens with a newline here)
        gens = E.generate_greedy(model, prompts, max_new_tokens=max(spec.max_new_tokens, 64), batch_size=bs,
                                 prepend_bos=prepend_bos, stop_strings=["\n"], stop_after_text=True,
                                 progress=progress)
        gens = [g.strip().split("\n")[0] for g in gens]
        refs = [e["references"] or [e["answer"]] for e in test]
        out.update(bleu=E.bleu(gens, refs), rouge_l=E.rouge_l(gens, refs))
        for r, g in zip(rows, gens):
            r["generation"] = g
    else:
        choices = [D.choices_of(e) for e in test]
        gold_idx = [D.gold_choice_index(e) for e in test]
        if spec.target == "label":
            labels = D.label_set(td.train + td.test) or []
            per = [[lab for lab in labels if _label_fits(lab, len(c))] for c in choices]
            lp = E.label_likelihood_predict(model, prompts, per, batch_size=bs, prepend_bos=prepend_bos,
                                            progress=progress)
            lk_preds, lk_golds = lp.predictions, golds
        else:
            conts = [[(" " if spec.style in ("cloze", "qa") else "") + c.strip() for c in cs] for cs in choices]
            cp = E.choice_likelihood_predict(model, prompts, conts, batch_size=bs, prepend_bos=prepend_bos,
                                             progress=progress)
            lk_preds, lk_golds = cp.acc, gold_idx
            out["likelihood_acc_norm"] = E.accuracy(cp.acc_norm, gold_idx)
            for r, q in zip(rows, cp.acc_norm):
                r["likelihood_norm_pred"] = q
        # the accuracy and each row's likelihood_correct come from the same predictions and gold keys
        out["likelihood_acc"] = E.accuracy(lk_preds, lk_golds)
        for r, p, g in zip(rows, lk_preds, lk_golds):
            r["likelihood_pred"], r["likelihood_correct"] = p, E.accuracy([p], [g]) == 1.0
        if generation:
            gens = E.generate_greedy(model, prompts, max_new_tokens=spec.max_new_tokens, batch_size=bs,
                                     prepend_bos=prepend_bos, stop_strings=["\n"], progress=progress)
            if spec.target == "label":
                labels = D.label_set(td.train + td.test) or []
                parser = E.auto_parser(labels)
                preds = [parser(g) for g in gens]
                out["generation_acc"] = E.accuracy(preds, golds)
            else:
                preds = [parse_choice_text(g, c) for g, c in zip(gens, choices)]
                out["generation_acc"] = E.accuracy(preds, gold_idx)
            out["generation_parsed"] = sum(p is not None for p in preds) / max(len(preds), 1)
            for r, g, p in zip(rows, gens, preds):
                r["generation"], r["generation_pred"] = g, p
    for k in ("likelihood_acc", "generation_acc"):
        if k in out:
            out[k + "_stderr"] = E.standard_error(out[k], len(test))
    out["seconds"] = time.time() - t0
    if out_path is not None:
        E.write_jsonl(out_path, rows)
    if return_rows:
        out["rows"] = rows
    return out


def _label_fits(label: str, n_choices: int) -> bool:
    m = re.search(r"(\d+)$", label)
    return m is None or int(m.group(1)) <= n_choices


@dataclass
class ExperimentResult:
    results: dict[str, Any]
    jola: JoLAModel
    trainer: JoLATrainer


def run_experiment(
    model: Any,
    spec: TaskSpec,
    *,
    jola_config: JoLAConfig | None = None,
    train_config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    zero_shot: bool = True,
    generation: bool = True,
    progress: bool = True,
    log: Any = print,
) -> ExperimentResult:
    """Zero-shot evaluation, JoLA training, JoLA evaluation; writes ``results.json`` into ``out_dir``."""
    out = Path(out_dir) if out_dir is not None else None
    td = load_task_data(spec)
    log(f"[jola_lens] task {td.name or spec.task}: train {len(td.train)}, valid {len(td.valid)}, test {len(td.test)}")
    results: dict[str, Any] = {
        "task": td.name or spec.task, "n_train": len(td.train), "n_valid": len(td.valid), "n_test": len(td.test),
        "seed": spec.seed, "spec": spec.to_dict(),
        "scoring": _scoring_note(spec, is_multiple_choice(td)),
    }
    if is_multiple_choice(td):
        results["majority_label_acc"] = majority_label_accuracy(td)
    if zero_shot:
        log("[jola_lens] zero-shot evaluation")
        results["zero_shot"] = evaluate_task(model, td, spec, generation=generation, progress=progress,
                                             out_path=out / "predictions_zero_shot.jsonl" if out else None)
        log(f"[jola_lens] zero-shot: {_short(results['zero_shot'])}")
    hooked = model.model if isinstance(model, JoLAModel) else model
    jola = JoLAModel(hooked, jola_config or JoLAConfig())
    prepend_bos = bool(getattr(hooked.cfg, "default_prepend_bos", False))
    train_tok, valid_tok = tokenize_splits(hooked.tokenizer, td, spec, prepend_bos)
    tc = train_config or TrainConfig(seed=spec.seed)
    trainer = JoLATrainer(jola, train_tok, valid_tok, tc, out_dir=out, progress=progress)
    log(f"[jola_lens] training JoLA: {jola.n_trainable_parameters():,} trainable parameters")
    tr = trainer.train()
    results["train"] = {"steps": tr.steps, "epochs": tr.epochs_run, "best_epoch": tr.best_epoch,
                        "best_valid_loss": tr.best_valid_loss, "stopped": tr.stopped, "history": tr.history}
    results["train_seconds"] = tr.seconds
    results["open_gates"] = jola.open_gate_counts()
    results["n_gates"] = {"additive": hooked.cfg.n_layers * hooked.cfg.n_heads,
                          "multiplicative": hooked.cfg.n_layers * hooked.cfg.n_heads}
    results["trainable_params"] = jola.n_trainable_parameters()
    results["jola_config"] = jola.config.to_dict()
    results["train_config"] = tc.to_dict()
    log("[jola_lens] JoLA evaluation")
    results["jola"] = evaluate_task(jola, td, spec, generation=generation, progress=progress,
                                    out_path=out / "predictions_jola.jsonl" if out else None)
    log(f"[jola_lens] JoLA: {_short(results['jola'])}")
    results["active_heads"] = jola.active_heads()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    return ExperimentResult(results, jola, trainer)


def _short(r: dict[str, Any]) -> str:
    keys = ("likelihood_acc", "likelihood_acc_norm", "generation_acc", "bleu", "rouge_l")
    return ", ".join(f"{k}={r[k]:.3f}" for k in keys if k in r) + f" ({r['seconds']:.0f} s)"


def _scoring_note(spec: TaskSpec, mc: bool) -> str:
    if not mc:
        return "greedy generation, first line; corpus BLEU (sacrebleu) and ROUGE-L F (rouge-score), multi-reference"
    if spec.target == "label":
        lik = "label likelihood: the label string (e.g. answer2) with the highest log-probability"
        gen = "generation: greedy, first whole-word label in the output"
    else:
        lik = "option-text likelihood: the option whose text has the highest summed log-probability"
        gen = "generation: greedy, first line matched to an option's text"
    return f"prompt style {spec.style!r}, target {spec.target!r}; {lik}; {gen}"
