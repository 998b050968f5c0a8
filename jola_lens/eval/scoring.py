"""Likelihood scoring: the summed log-probability of each continuation given its prompt, and the picks.

* :func:`score_token_continuations` / :func:`score_continuations`: rows are batched with right
  padding and an explicit attention mask (pad ids are never used to infer a mask: in chat prompts
  the pad token ``<|im_end|>`` also occurs inside the prompt). When all the continuations of a
  prompt differ only in their last token (``answer1`` ... ``answer5`` tokenise as ``answer`` +
  digit), one forward of prompt + shared prefix scores all of them.
* :func:`label_likelihood_predict`: the label with the highest score;
  :func:`choice_likelihood_predict`: each option's text, lm-eval-harness ``acc`` and ``acc_norm``.

Example:
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2,
    ...                               d_vocab=11, act_fn="gelu", normalization_type="RMS", seed=0)
    >>> scores = score_token_continuations(HookedTransformer(cfg), [[1, 2]], [[[3], [4], [5, 6]]])
    >>> len(scores[0]), all(s < 0 for s in scores[0])
    (3, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from .forward import (
    _bos,
    _check_ctx,
    _device,
    _encode,
    _prefill,
    _progress,
    _residual,
    _select_cache_rows,
    _tokenizer,
    _unembed,
    length_batches,
)
from .lean import decoding_model
from .target import ModelLike, _hooked, scoring_target

__all__ = [
    "ChoicePredictions",
    "LabelPredictions",
    "choice_likelihood_predict",
    "encode_continuations",
    "label_likelihood_predict",
    "score_continuations",
    "score_token_continuations",
    "shares_all_but_last",
]


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
    hooked, ctx = scoring_target(model)
    with ctx:
        hooked = decoding_model(hooked)  # TransformerLens's weights without its per-call copies, where it can
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
    # Continuations run on top of the cached prompt, grouped by length (length_batches' cut before a row
    # half as long): one [rows, longest] pass for all would spend up to half of its work on padding when
    # option texts differ in length (ARC-Easy: 1 to 12 tokens after the first).
    spans = [len(conts[b][j]) - 1 for b, j in row_of]
    by_len = sorted((r for r in range(len(row_of)) if spans[r] > 0), key=lambda r: -spans[r])
    for group in length_batches(by_len, spans, len(row_of)):
        gwidth = spans[group[0]]
        rows = torch.tensor([row_of[r][0] for r in group], device=device)
        expanded = _select_cache_rows(cache, rows)
        expanded.freeze()
        feed = torch.zeros(len(group), gwidth, dtype=torch.long)
        feed_mask = torch.zeros(len(group), gwidth, dtype=torch.long)
        for i, r in enumerate(group):
            b, j = row_of[r]
            c = conts[b][j][:-1]
            feed[i, : len(c)] = torch.tensor(c)
            feed_mask[i, : len(c)] = 1
        # right padding after the continuation: no real token ever attends to a pad
        cres = _residual(hooked, feed.to(device), feed_mask.to(device), expanded)
        picked = torch.cat([cres[i, : spans[r]] for i, r in enumerate(group)])
        logits = _unembed(hooked, picked).float().split([spans[r] for r in group])
        for i, r in enumerate(group):
            b, j = row_of[r]
            lp = torch.log_softmax(logits[i], dim=-1)
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
