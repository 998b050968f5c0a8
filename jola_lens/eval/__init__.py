"""Evaluation: likelihood scoring, batched greedy generation, answer parsing, metrics, the task driver.

Everything here takes a TransformerLens ``HookedTransformer`` or any editor (JoLA or a baseline,
whose edits are then applied, with deterministic gates, and removed afterwards: :func:`scoring_target`)
and already-formatted prompt strings. Scoring and generation run under ``torch.inference_mode()``.

* :mod:`~jola_lens.eval.target`: :func:`scoring_target`, the one rule for what is scored;
* :mod:`~jola_lens.eval.scoring`: the summed log-probability of each continuation given its
  prompt (:func:`score_token_continuations`, :func:`score_continuations`), batched with right
  padding and an explicit attention mask; :func:`label_likelihood_predict` and
  :func:`choice_likelihood_predict` (lm-eval-harness ``acc`` and ``acc_norm``);
* :mod:`~jola_lens.eval.generate`: :func:`generate_greedy` (left padding, explicit attention mask,
  a TransformerLens KV cache, per-row stop at EOS; the same output batched as one prompt at a time);
* :mod:`~jola_lens.eval.parsing`: :func:`parse_label`, :func:`parse_mmlu_letter`, :func:`parse_choice_text`;
* :mod:`~jola_lens.eval.metrics`: :func:`accuracy`, :func:`standard_error`, :func:`bleu`,
  :func:`rouge_l`, :func:`bertscore`, ...;
* :mod:`~jola_lens.eval.driver`: :func:`evaluate_task`, the one task driver (every reported
  number), plus :func:`evaluate_multiple_choice` / :func:`evaluate_generation` for given prompts.

Example:
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.eval import score_token_continuations
    >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2,
    ...                               d_vocab=11, act_fn="gelu", normalization_type="RMS", seed=0)
    >>> out = score_token_continuations(HookedTransformer(cfg), [[1, 2, 3]], [[[4], [5]]])
    >>> len(out[0])
    2

With the bundled model (the same calls run in ``tests/eval/``)::

    from jola_lens import load_model
    model = load_model()
    prompt = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Is the sky blue? Answer format: true/false"}],
        tokenize=False, add_generation_prompt=True)
    label_likelihood_predict(model, [prompt], ["true", "false"]).predictions   # ['true']
    # scores [[-5.98, -7.31]]: one forward pass scores both labels
"""

from __future__ import annotations

from .driver import (
    METHODS,
    SplitsLike,
    TaskSpecLike,
    evaluate_generation,
    evaluate_multiple_choice,
    evaluate_task,
    group_references,
    is_multiple_choice,
    task_majority_accuracy,
    write_jsonl,
)
from .forward import length_batches
from .generate import generate_greedy, generate_tokens
from .metrics import (
    BERTSCORE_PACKAGE,
    BERTSCORE_PIP,
    accuracy,
    bertscore,
    bertscore_model_path,
    bleu,
    majority_label_accuracy,
    rouge_l,
    standard_error,
)
from .parsing import auto_parser, parse_choice_text, parse_label, parse_mmlu_letter
from .scoring import (
    ChoicePredictions,
    LabelPredictions,
    choice_likelihood_predict,
    encode_continuations,
    label_likelihood_predict,
    score_continuations,
    score_token_continuations,
    shares_all_but_last,
)
from .target import (
    EditorLike,
    ModelLike,
    applied_model,
    base_model,
    is_edit_wrapper,
    is_editor,
    prepare_model,
    prepends_bos,
    scoring_target,
)

__all__ = [
    "BERTSCORE_PACKAGE",
    "BERTSCORE_PIP",
    "METHODS",
    "ChoicePredictions",
    "EditorLike",
    "LabelPredictions",
    "ModelLike",
    "SplitsLike",
    "TaskSpecLike",
    "accuracy",
    "applied_model",
    "base_model",
    "auto_parser",
    "bertscore",
    "bertscore_model_path",
    "bleu",
    "choice_likelihood_predict",
    "encode_continuations",
    "evaluate_generation",
    "evaluate_multiple_choice",
    "evaluate_task",
    "generate_greedy",
    "generate_tokens",
    "group_references",
    "is_edit_wrapper",
    "is_editor",
    "is_multiple_choice",
    "label_likelihood_predict",
    "length_batches",
    "majority_label_accuracy",
    "parse_choice_text",
    "parse_label",
    "parse_mmlu_letter",
    "prepare_model",
    "rouge_l",
    "score_continuations",
    "score_token_continuations",
    "prepends_bos",
    "scoring_target",
    "shares_all_but_last",
    "standard_error",
    "task_majority_accuracy",
    "write_jsonl",
]
