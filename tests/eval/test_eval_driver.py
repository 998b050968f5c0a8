"""The drivers (jola_lens.eval.driver) on the tiny model with a character tokenizer, then on the bundled model."""

from __future__ import annotations

import json

import pytest
import torch

from jola_lens.eval import (
    accuracy,
    bleu,
    choice_likelihood_predict,
    evaluate_generation,
    evaluate_multiple_choice,
    evaluate_task,
    label_likelihood_predict,
)

from .helpers import ARC_LABELS, CharTokenizer, arc_examples, chat


def test_evaluate_multiple_choice_tiny(tiny_tok, tmp_path):
    examples = [
        {"id": "e0", "question": "q0", "choices": ["red", "blue", "green"], "answer": "answer2"},
        {"id": "e1", "question": "q1", "choices": ["cat", "dog"], "answer": "answer1"},
        {"id": "e2", "question": "q2", "choices": ["x", "yy", "zzz"], "answer": "answer3"},
    ]
    prompts = ["Q: q0?\nA:", "Q: q1?\nA:", "Q: q2?\nA:"]
    out = tmp_path / "mc.jsonl"
    res = evaluate_multiple_choice(
        tiny_tok,
        examples,
        prompts,
        labels=ARC_LABELS,
        methods=("label_likelihood", "choice_likelihood", "generation"),
        max_new_tokens=4,
        out_path=out,
        train_answers=["answer1", "answer1", "answer2"],
        progress=False,
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["e0", "e1", "e2"]
    assert rows[1]["labels"] == ["answer1", "answer2"]  # cut to the example's two choices
    ll = label_likelihood_predict(tiny_tok, prompts, [r["labels"] for r in rows])
    assert [r["label_likelihood"] for r in rows] == ll.predictions
    assert res["label_likelihood"]["accuracy"] == accuracy(ll.predictions, [e["answer"] for e in examples])
    for r in rows:
        assert r["choice_likelihood"] in r["labels"] and r["choice_likelihood_norm"] in r["labels"]
        assert isinstance(r["raw_generation"], str) and "generation" in r
    assert res["majority_label"]["accuracy"] == pytest.approx(1 / 3)
    assert res["n"] == 3 and set(res["seconds"]) == {"label_likelihood", "choice_likelihood", "generation"}
    with pytest.raises(ValueError, match="gold"):
        evaluate_multiple_choice(tiny_tok, [{"answer": "answer9"}], ["Q"], labels=ARC_LABELS, progress=False)


def test_evaluate_generation_tiny(tiny_tok, tmp_path):
    examples = [
        {"id": "g0", "answer": "ab", "references": ["ab", "abc"]},
        {"id": "g1", "answer": "xy", "references": []},
    ]
    out = tmp_path / "gen.jsonl"
    res = evaluate_generation(tiny_tok, examples, ["P: 1\n", "P: 22\n"], max_new_tokens=5, out_path=out, progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[1]["references"] == ["xy"]  # falls back to the answer
    preds = [r["prediction"] for r in rows]
    assert all("\n" not in p for p in preds)
    assert res["bleu"] == pytest.approx(bleu(preds, [["ab", "abc"], ["xy"]]))
    assert 0.0 <= res["rouge_l"] <= 1.0 and "bertscore" not in res


@pytest.mark.parametrize("style", ["cloze", "qa", "alpaca"])
def test_evaluate_task_scores_the_option_continuations(style):
    from transformer_lens import HookedTransformer

    from jola_lens.experiment import TaskSpec
    from jola_lens.tasks import TaskData, format_prompt

    from ..conftest import tiny_cfg

    torch.manual_seed(0)
    tiny_tok = HookedTransformer(tiny_cfg(n_ctx=192)).eval()  # room for the Alpaca template
    tiny_tok.tokenizer = CharTokenizer()

    exs = [{"id": f"e{i}", "question": f"Q{i}?", "choices": [" red", "blue ", "green"], "answer": f"answer{i % 3 + 1}"}
           for i in range(4)]
    spec = TaskSpec(style=style, target="choice_text", eval_batch_size=2)
    out = evaluate_task(tiny_tok, TaskData(train=exs, valid=[], test=exs), spec, generation=False, progress=False,
                        return_rows=True)
    lead = " " if style in ("cloze", "qa") else ""  # the rule evaluate_task wrote out before option_continuation
    prompts = [format_prompt(e, None, style) for e in exs]
    ref = choice_likelihood_predict(tiny_tok, prompts, [[lead + c.strip() for c in e["choices"]] for e in exs],
                                    batch_size=2)
    assert [r["likelihood_pred"] for r in out["rows"]] == ref.acc
    assert [r["likelihood_norm_pred"] for r in out["rows"]] == ref.acc_norm


#: every name the first release's ``jola_lens/evaluate.py`` defined
OLD_EVALUATE_NAMES = [
    "_acc_entry", "accuracy", "applied_model", "_argmax", "auto_parser", "_beam_search", "bertscore",
    "bertscore_model_path", "BERTSCORE_PACKAGE", "BERTSCORE_PIP", "bleu", "_bos", "_build_rows", "_check_ctx",
    "_check_refs", "_check_scoring_inputs", "choice_likelihood_predict", "ChoicePredictions", "_device",
    "_encode", "encode_continuations", "evaluate_generation", "evaluate_multiple_choice", "_first_line",
    "generate_greedy", "generate_tokens", "_greedy_batch", "_hooked", "is_edit_wrapper", "_jola_context",
    "_kv_cache_class", "label_likelihood_predict", "LabelPredictions", "length_batches",
    "majority_label_accuracy", "METHODS", "ModelLike", "parse_label", "parse_mmlu_letter", "_per_prompt",
    "_plain_context", "_prefill", "prepare_model", "_progress", "_residual", "rouge_l", "_Row",
    "score_continuations", "_score_sharing_prompt", "score_token_continuations", "shares_all_but_last",
    "standard_error", "_tokenizer", "_truncate_at_stop", "_unembed", "write_jsonl",
]


def test_old_evaluate_module_and_experiment_reexport_every_name():
    import jola_lens.eval as new
    import jola_lens.evaluate as old
    from jola_lens import experiment
    from jola_lens.eval import driver

    missing = [n for n in OLD_EVALUATE_NAMES if not hasattr(old, n)]
    assert not missing
    assert old.prepare_model is new.scoring_target and old.score_continuations is new.score_continuations
    assert set(old.__all__) <= set(OLD_EVALUATE_NAMES)
    for name in ("evaluate_task", "parse_choice_text", "group_references", "is_multiple_choice", "_label_fits",
                 "_scoring_note", "_short"):
        assert getattr(experiment, name) is getattr(driver, name), name
    assert experiment.majority_label_accuracy is driver.task_majority_accuracy


# ---- the bundled SmolLM2 ------------------------------------------------------------------------


@pytest.mark.integration
def test_evaluate_multiple_choice_on_arc(smollm, tmp_path, shared_data):
    tok = smollm.tokenizer
    examples = arc_examples(shared_data, 2)
    prompts = [chat(tok, e["question"]) for e in examples]
    out = tmp_path / "arc.jsonl"
    res = evaluate_multiple_choice(
        smollm, examples, prompts, labels=ARC_LABELS + ["answer5"], max_new_tokens=6, out_path=out, progress=False
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [e["id"] for e in examples]
    assert all(r["labels"] == ARC_LABELS for r in rows)  # 4 choices: answer5 dropped
    assert all(r["label_likelihood"] in ARC_LABELS and len(r["label_scores"]) == 4 for r in rows)
    assert 0.0 <= res["label_likelihood"]["accuracy"] <= 1.0 and "generation" in res
