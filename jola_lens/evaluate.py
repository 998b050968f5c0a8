"""Kept for old imports: ``jola_lens.evaluate`` is now the package :mod:`jola_lens.eval`.

Every name this module had (public, and the private ones other code imported) is re-exported
from where it lives now: :mod:`jola_lens.eval.target` (what is scored: :func:`scoring_target`,
of which ``prepare_model`` is the old name), :mod:`~jola_lens.eval.forward`,
:mod:`~jola_lens.eval.scoring`, :mod:`~jola_lens.eval.generate`, :mod:`~jola_lens.eval.parsing`,
:mod:`~jola_lens.eval.metrics` and :mod:`~jola_lens.eval.driver`. New code should import from
:mod:`jola_lens.eval`.

Example:
    >>> from jola_lens import eval as ev, evaluate
    >>> evaluate.prepare_model is ev.scoring_target and evaluate.accuracy is ev.accuracy
    True
"""

# ruff: noqa: F401  (this module only re-exports)
from __future__ import annotations

from typing import Any

from .eval.driver import (
    METHODS,
    _acc_entry,
    _first_line,
    evaluate_generation,
    evaluate_multiple_choice,
    write_jsonl,
)
from .eval.forward import (
    _bos,
    _check_ctx,
    _device,
    _encode,
    _kv_cache_class,
    _prefill,
    _progress,
    _residual,
    _tokenizer,
    _unembed,
    length_batches,
)
from .eval.generate import _beam_search, _greedy_batch, _truncate_at_stop, generate_greedy, generate_tokens
from .eval.metrics import (
    BERTSCORE_PACKAGE,
    BERTSCORE_PIP,
    _check_refs,
    accuracy,
    bertscore,
    bertscore_model_path,
    bleu,
    majority_label_accuracy,
    rouge_l,
    standard_error,
)
from .eval.parsing import auto_parser, parse_label, parse_mmlu_letter
from .eval.scoring import (
    ChoicePredictions,
    LabelPredictions,
    _argmax,
    _build_rows,
    _check_scoring_inputs,
    _per_prompt,
    _Row,
    _score_sharing_prompt,
    choice_likelihood_predict,
    encode_continuations,
    label_likelihood_predict,
    score_continuations,
    score_token_continuations,
    shares_all_but_last,
)
from .eval.target import (
    ModelLike,
    _hooked,
    _jola_context,
    _plain_context,
    applied_model,
    is_edit_wrapper,
    prepare_model,
)

__all__ = [
    "ChoicePredictions",
    "LabelPredictions",
    "accuracy",
    "applied_model",
    "bertscore",
    "bertscore_model_path",
    "bleu",
    "choice_likelihood_predict",
    "encode_continuations",
    "evaluate_generation",
    "evaluate_multiple_choice",
    "generate_greedy",
    "generate_tokens",
    "label_likelihood_predict",
    "majority_label_accuracy",
    "parse_label",
    "parse_mmlu_letter",
    "prepare_model",
    "rouge_l",
    "score_continuations",
    "score_token_continuations",
    "shares_all_but_last",
    "standard_error",
]


# ``jl.evaluate(model_or_editor, task)`` is the workflow's function (jola_lens.workflow.evaluate),
# and ``jola_lens.evaluate`` is also this module's old path. Importing a submodule sets the package
# attribute of the same name, so the two would replace each other depending on import order. The
# module is therefore made callable: calling it runs the workflow's evaluate, so both meanings work
# whichever was imported last.
def _install_call() -> None:
    import sys
    import types

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            from .workflow import evaluate as workflow_evaluate

            return workflow_evaluate(*args, **kwargs)

    sys.modules[__name__].__class__ = _CallableModule


_install_call()
