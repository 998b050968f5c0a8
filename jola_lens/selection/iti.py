"""ITI-style probing (Li et al. 2023): per-head logistic probes on head outputs; top K by accuracy.

For each training example the positive is ``prompt + correct answer`` and the negative is
``prompt + a wrong answer``; each head's output (``hook_z``, ``[d_head]``) is read at the **last
token of the answer**. The wrong answers come from, in order of preference:

* ``example["wrong_answers"]``: token-id lists of the wrong options (see :func:`contrastive_rows`,
  which builds them for multiple-choice tasks); one is drawn per example (seeded), or all of
  them with ``all_negatives=True``;
* ``example["probe_label"]`` (1/0): the example is already a positive or a negative;
* otherwise the answer of another training example with a different answer (seeded), so the
  method also runs on generation data.

Examples are split 80/20 (seeded, by source example, so a prompt's positive and negatives share
a split). One L2-regularised logistic regression per head (sklearn's default C = 1, fitted by
full-batch L-BFGS in torch, on features standardised with training statistics) is trained on the
80 %; a head's score is its validation accuracy (ties broken by validation log-likelihood).
``record["directions"]`` holds the mass-mean shift ``mean(positive) - mean(negative)`` per head
(``[n_layers, n_heads, d_head]``, train and validation together) and ``record["projection_std"]``
the standard deviation of the activations along its unit vector: ITI's steering direction and
its sigma (METHODS.md section 4.1).

Example (synthetic features: head (1, 0) separates the classes, the others are noise):
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.arange(200) % 2
    >>> x = torch.randn(200, 2, 2, 4, generator=g)
    >>> x[:, 1, 0, 0] += 4.0 * (2 * y - 1)
    >>> acc, _ = fit_probes(x[:160], y[:160], x[160:], y[160:])
    >>> float(acc[1, 0]) > 0.95, float(acc.flatten()[[0, 1, 3]].max()) < 0.8
    (True, True)
"""

from __future__ import annotations

import random
import re
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ..editors.base import attached_hooks
from ..tasks.prompts import DEFAULT_PROMPT_STYLE
from ..train import collate
from .base import SelectionResult, default_k, pad_id_of, register_selector, top_k_mask

_INDEXED = re.compile(r"([A-Za-z_]+)(\d+)")


# ---- data --------------------------------------------------------------------------------------
def _answer_span(example: Mapping[str, Any]) -> tuple[int, int]:
    """``(first, last)`` positions of the answer tokens (labels != -100)."""
    labels = list(example["labels"])
    idx = [i for i, t in enumerate(labels) if t != -100]
    if not idx:
        raise ValueError("an example has no answer tokens (every label is -100)")
    return idx[0], idx[-1]


def _with_answer(example: Mapping[str, Any], j: int, choices: list[str]) -> dict[str, Any]:
    """A copy of a multiple-choice example whose gold answer is option ``j``."""
    ans = str(example["answer"])
    m = _INDEXED.fullmatch(ans)
    if m:
        new = f"{m.group(1)}{j + 1}"
    elif len(ans) == 1 and ans.isupper():
        new = chr(ord("A") + j)
    else:
        new = choices[j]
    return {**example, "answer": new}


def contrastive_rows(
    examples: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    *,
    style: str = DEFAULT_PROMPT_STYLE,
    target: str = "choice_text",
    max_length: int = 400,
    prepend_bos: bool = False,
) -> list[dict[str, Any]]:
    """Tokenise multiple-choice examples with ``wrong_answers`` (token ids of every wrong option).

    The rows are those of :func:`jola_lens.tasks.tokenize_examples` (same prompt and target
    format), plus ``wrong_answers``: a list of target token-id lists, one per wrong option,
    formatted exactly as the gold target (so the last token is comparable).

    Example (a character-level stand-in tokenizer):
        >>> class Chars:
        ...     def __call__(self, texts, add_special_tokens=False):
        ...         return {"input_ids": [[ord(c) for c in t] for t in texts]}
        >>> ex = {"id": "0", "question": "Sky colour?", "choices": ["blue", "red"], "answer": "answer1"}
        >>> row = contrastive_rows([ex], Chars(), style="cloze")[0]
        >>> "".join(map(chr, row["wrong_answers"][0]))
        ' red'
    """
    from .. import tasks as D

    rows = D.tokenize_examples(examples, tokenizer, style=style, target=target, max_length=max_length,
                               prepend_bos=prepend_bos)
    for ex, row in zip(examples, rows):
        choices = D.choices_of(ex)
        gold = D.gold_choice_index(ex)
        wrong = []
        if gold is not None:
            for j in range(len(choices)):
                if j != gold:
                    text = D.format_target(_with_answer(ex, j, choices), tokenizer, style, target)
                    wrong.append(list(tokenizer([text], add_special_tokens=False)["input_ids"][0]))
        row["wrong_answers"] = wrong
    return rows


def _probe_sequences(
    data: Sequence[Mapping[str, Any]], seed: int, all_negatives: bool
) -> tuple[list[list[int]], list[int], list[int]]:
    """``(sequences, labels, source example index)``; the read position is each sequence's last token."""
    rng = random.Random(seed)
    seqs: list[list[int]] = []
    ys: list[int] = []
    groups: list[int] = []
    answers = []
    for ex in data:
        first, last = _answer_span(ex)
        answers.append(list(ex["input_ids"][first:last + 1]))
    for i, ex in enumerate(data):
        first, last = _answer_span(ex)
        ids = list(ex["input_ids"])
        if "probe_label" in ex:
            seqs.append(ids[:last + 1])
            ys.append(int(ex["probe_label"]))
            groups.append(i)
            continue
        prompt = ids[:first]
        seqs.append(ids[:last + 1])
        ys.append(1)
        groups.append(i)
        wrong = [list(w) for w in ex.get("wrong_answers") or [] if len(w)]
        if not wrong:
            others = [j for j in range(len(data)) if answers[j] != answers[i]]
            if others:
                wrong = [answers[rng.choice(others)]]
        if wrong and not all_negatives:
            wrong = [wrong[rng.randrange(len(wrong))]]
        for w in wrong:
            seqs.append(prompt + w)
            ys.append(0)
            groups.append(i)
    return seqs, ys, groups


@torch.inference_mode()
def head_activations(
    model: Any, sequences: Sequence[Sequence[int]], batch_size: int = 16
) -> Float[Tensor, "n n_layers n_heads d_head"]:
    """Every head's ``hook_z`` at the last token of each sequence."""
    L = model.cfg.n_layers
    out = []
    device = model.cfg.device
    pad = pad_id_of(model)
    for start in range(0, len(sequences), batch_size):
        chunk = [list(s) for s in sequences[start:start + batch_size]]
        b = collate([{"input_ids": s, "labels": s} for s in chunk], pad)
        last = torch.tensor([len(s) - 1 for s in chunk], device=device)
        rows = torch.arange(len(chunk), device=device)
        got: dict[int, Tensor] = {}

        def make(layer: int) -> Any:
            def grab(z: Tensor, hook: Any = None) -> Tensor:
                got[layer] = z[rows, last].float().cpu()
                return z

            return grab

        hooks = [(f"blocks.{layer}.attn.hook_z", make(layer)) for layer in range(L)]
        with attached_hooks(model, hooks):
            model(b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device), stop_at_layer=L)
        out.append(torch.stack([got[layer] for layer in range(L)], dim=1))
    return torch.cat(out)


# ---- probes ------------------------------------------------------------------------------------
def fit_probes(
    x_train: Float[Tensor, "n_train n_layers n_heads d_head"],
    y_train: Int[Tensor, " n_train"],
    x_val: Float[Tensor, "n_val n_layers n_heads d_head"],
    y_val: Int[Tensor, " n_val"],
    C: float = 1.0,
    max_iter: int = 200,
) -> tuple[Float[Tensor, "n_layers n_heads"], Float[Tensor, "n_layers n_heads"]]:
    """One logistic regression per head, all fitted at once; returns (val accuracy, val mean log-lik).

    Objective per head (sklearn's, divided by n): ``mean log-loss + ||w||^2 / (2 C n)``.
    """
    n, L, H, d = x_train.shape
    xt = x_train.double().reshape(n, L * H, d).transpose(0, 1)  # [LH, n, d]
    xv = x_val.double().reshape(x_val.shape[0], L * H, d).transpose(0, 1)
    mu = xt.mean(1, keepdim=True)
    sd = xt.std(1, keepdim=True).clamp_min(1e-8) if n > 1 else torch.ones_like(mu)
    xt, xv = (xt - mu) / sd, (xv - mu) / sd
    yt = y_train.double()[None].expand(L * H, -1)
    yv = y_val.double()[None].expand(L * H, -1)
    w = torch.zeros(L * H, d, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(L * H, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> Tensor:
        opt.zero_grad()
        logits = torch.einsum("hnd,hd->hn", xt, w) + b[:, None]
        loss = F.binary_cross_entropy_with_logits(logits, yt, reduction="none").mean(1)
        loss = loss + (w * w).sum(1) / (2.0 * C * n)
        total = loss.sum()
        total.backward()
        return total

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        logits = torch.einsum("hnd,hd->hn", xv, w) + b[:, None]
        acc = ((logits > 0).double() == yv).double().mean(1)
        loglik = -F.binary_cross_entropy_with_logits(logits, yv, reduction="none").mean(1)
    return acc.reshape(L, H).float(), loglik.reshape(L, H).float()


@register_selector("iti")
def select_iti(
    model: Any,
    train_data: list[dict[str, Any]],
    *,
    k: int | None,
    seed: int = 0,
    val_fraction: float = 0.2,
    all_negatives: bool = False,
    C: float = 1.0,
    max_iter: int = 200,
    batch_size: int = 16,
) -> SelectionResult:
    """ITI head selection: top K heads by validation accuracy of a linear truthfulness probe.

    Args:
        val_fraction: share of source examples held out for scoring (ITI: 0.2).
        all_negatives: use every wrong option, not one drawn at random per example.
        C: inverse L2 strength of the logistic regression (sklearn's default 1.0).
        max_iter: L-BFGS iterations.
        batch_size: forward-pass batch size for reading activations.
    """
    k = default_k(model) if k is None else k
    seqs, ys, groups = _probe_sequences(train_data, seed, all_negatives)
    if len(set(ys)) < 2:
        raise ValueError("ITI needs positives and negatives: give wrong_answers, probe_label, or "
                         "examples with at least two different answers")
    x = head_activations(model, seqs, batch_size)
    y = torch.tensor(ys)
    g = torch.tensor(groups)
    sources = sorted(set(groups))
    random.Random(seed).shuffle(sources)
    n_val = max(1, int(round(val_fraction * len(sources)))) if len(sources) > 1 else 0
    val_sources = torch.tensor(sources[:n_val], dtype=torch.long)
    is_val = torch.isin(g, val_sources)
    if not is_val.any() or is_val.all():  # a single source example: probe and score on it
        is_val = torch.ones_like(is_val)
        train_idx = val_idx = torch.arange(len(ys))
    else:
        train_idx, val_idx = torch.nonzero(~is_val)[:, 0], torch.nonzero(is_val)[:, 0]
    acc, loglik = fit_probes(x[train_idx], y[train_idx], x[val_idx], y[val_idx], C=C, max_iter=max_iter)
    pos, neg = x[y == 1], x[y == 0]
    directions = pos.mean(0) - neg.mean(0)
    unit = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    proj_std = torch.einsum("nlhd,lhd->nlh", x, unit).std(0) if len(x) > 1 else torch.zeros_like(acc)
    record = {
        "settings": {"val_fraction": val_fraction, "all_negatives": all_negatives, "C": C, "max_iter": max_iter,
                     "probe": "L2 logistic regression, standardised features, L-BFGS",
                     "position": "last answer token", "site": "hook_z"},
        "steps": 0,
        "n_probe_examples": len(ys),
        "n_positive": int(y.sum()),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "val_loglik": loglik,
        "directions": directions,
        "projection_std": proj_std,
        "negatives": ("wrong_answers" if any(e.get("wrong_answers") for e in train_data)
                      else "probe_label" if any("probe_label" in e for e in train_data)
                      else "another example's answer"),
        "rule": "top-k by validation accuracy (tie-break validation log-likelihood)",
    }
    return SelectionResult(acc, top_k_mask(acc, k, tiebreak=loglik), "iti", k, record)
