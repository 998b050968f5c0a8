"""PASS, Pruning Attention heads with almost-Sure Sparsity targets (Ding et al., TMLR 2024).

A Hard-Concrete gate per head (beta 0.33, limits (-0.1, 1.1), log-alpha Xavier-uniform, as JoLA's)
multiplies the head's ``hook_z``; the model is frozen and only the log-alphas train (AdamW, the
"pruning lr" 0.5) on ``answer CE + R`` with, for N heads of which K are kept and rho = 1 - K/N,

    R = lambda_t [ |rho N - sum q0| + |(1 - rho) N - sum q1| + sum (1 - q0 - q1) ]
        (+ lambda_t * lambda_c * sum_layers (1 - prod_heads q0), the optional concentrator)

where q0 = P(g = 0) and q1 = P(g = 1). ``lambda_t = lambda0 * 1000 ** (c / growth_steps)``, and
``c`` counts the steps at which the targets are unmet (the number of log-alpha <= -5 differs
from rho N, or the number >= +5 from (1 - rho) N). At the clip-and-reopen steps every
log-alpha is clamped to [-5, 5] and each closed gate is reopened (log-alpha = +5) with
probability equal to the head's normalised confidence: the running mean, over batches and
query positions, of the head's largest pre-softmax attention score (``hook_attn_scores``),
divided by the largest head's. The selection is the top K by deterministic gate value (ties
broken by log-alpha). METHODS.md section 3.3.

Adaptations for short budgets (documented choices): the released code grows lambda over 1000
steps and reopens at steps 2000, 3000, 4000; here ``growth_steps`` defaults to a fifth of the
run and reopening to 2, 3 and 4 times ``growth_steps``. The concentrator uses a constant
``concentrator`` coefficient (0 = plain PASS, the default) instead of the code's adaptive one.

Example:
    >>> import torch
    >>> la = torch.tensor([[-6.0, 6.0], [6.0, -6.0]])
    >>> target_counts(la, k=2), targets_met(la, k=2)
    ((2, 2), True)
    >>> round(float(pass_regularizer(la, k=2)), 3)  # near 0: targets met almost surely
    0.035
    >>> round(float(pass_regularizer(torch.zeros(2, 2), k=2)), 3)  # undecided gates cost more
    3.01
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from ..gates import BETA, LIMITS, HardConcrete, deterministic, prob_closed, prob_fully_open
from ..train import answer_loss
from .base import (SelectionResult, head_scale_hooks, n_training_steps, pad_id_of, register_selector, top_k_mask,
                   training_batches)

CLIP = 5.0


def target_counts(log_alpha: Tensor, k: int) -> tuple[int, int]:
    """The targets ``(rho N, (1 - rho) N) = (N - k, k)``: gates to close and to open almost surely."""
    n = log_alpha.numel()
    return n - k, k


def almost_sure_counts(log_alpha: Tensor, clip: float = CLIP) -> tuple[int, int]:
    """``(#(log_alpha <= -clip), #(log_alpha >= clip))``."""
    return int((log_alpha <= -clip).sum()), int((log_alpha >= clip).sum())


def targets_met(log_alpha: Tensor, k: int, clip: float = CLIP) -> bool:
    """Whether exactly ``N - k`` gates are closed and ``k`` open almost surely."""
    return almost_sure_counts(log_alpha, clip) == target_counts(log_alpha, k)


def pass_regularizer(
    log_alpha: Float[Tensor, "n_layers n_heads"],
    k: int,
    beta: float = BETA,
    limits: tuple[float, float] = LIMITS,
    concentrator: float = 0.0,
) -> Tensor:
    """The bracket of R (without lambda_t), plus ``concentrator * sum_layers (1 - prod q0)``."""
    q0 = prob_closed(log_alpha, beta, limits)
    q1 = prob_fully_open(log_alpha, beta, limits)
    n_closed, n_open = target_counts(log_alpha, k)
    r = (n_closed - q0.sum()).abs() + (n_open - q1.sum()).abs() + (1.0 - q0 - q1).clamp_min(0.0).sum()
    if concentrator:
        r = r + concentrator * (1.0 - q0.prod(dim=-1)).sum()
    return r


class _Confidence:
    """Running mean of each head's max pre-softmax attention score (the reopening signal)."""

    def __init__(self, n_layers: int, n_heads: int) -> None:
        self.total = torch.zeros(n_layers, n_heads, dtype=torch.float64)
        self.count = torch.zeros(n_layers, dtype=torch.float64)
        self.attention_mask: Tensor | None = None

    def hooks(self, n_layers: int) -> list[tuple[str, Any]]:
        def make(layer: int) -> Any:
            def record_confidence(scores: Tensor, hook: Any = None) -> Tensor:
                with torch.no_grad():
                    top = scores.detach().float().amax(dim=-1)  # [batch, head, query]
                    top = torch.nan_to_num(top, neginf=0.0, posinf=0.0)
                    if self.attention_mask is not None:
                        valid = self.attention_mask.to(top.device, top.dtype)[:, None, :]
                        per = (top * valid).sum((0, 2)) / valid.sum((0, 2)).clamp_min(1.0)
                    else:
                        per = top.mean((0, 2))
                    self.total[layer] += per.double().cpu()
                    self.count[layer] += 1
                return scores

            return record_confidence

        return [(f"blocks.{layer}.attn.hook_attn_scores", make(layer)) for layer in range(n_layers)]

    def normalised(self) -> Tensor:
        """Mean confidence divided by the largest (negative means clamped to 0); zeros if unseen."""
        mean = (self.total / self.count.clamp_min(1.0)[:, None]).clamp_min(0.0)
        top = float(mean.max())
        return (mean / top).float() if top > 0 else torch.zeros_like(mean, dtype=torch.float32)

    def reset(self) -> None:
        self.total.zero_()
        self.count.zero_()


@register_selector("pass")
def select_pass(
    model: Any,
    train_data: list[dict[str, Any]],
    *,
    k: int | None,
    seed: int = 0,
    lr: float = 0.5,
    epochs: int = 3,
    batch_size: int = 8,
    max_steps: int | None = None,
    lambda0: float = 1e-5,
    growth_steps: int | None = None,
    reopen_steps: Sequence[int] | None = None,
    concentrator: float = 0.0,
    threshold: float = 0.5,
) -> SelectionResult:
    """PASS head selection with a frozen model.

    Args:
        lr: AdamW learning rate of the log-alphas (PASS README: 0.5).
        epochs, batch_size, max_steps: the budget.
        lambda0: initial lambda (PASS: 1e-5).
        growth_steps: unmet steps for lambda to grow by 1000x (PASS: 1000; default: a fifth
            of the run, at least 1).
        reopen_steps: the clip-and-reopen steps (default: 2, 3 and 4 times ``growth_steps``,
            those before the end).
        concentrator: lambda_c, constant (0: plain PASS).
        threshold: with ``k=None`` the heads whose deterministic gate exceeds it (PASS: 0.5).
            The targets then use ``k = N // 2``.

    ``record`` has per-step ``loss``, ``lambda`` and ``counts`` (closed, open), ``met_at_step``
    (first step with the targets met, or None), ``targets_met`` at the end and ``reopened``.
    """
    L, H = model.cfg.n_layers, model.cfg.n_heads
    n = L * H
    k_target = n // 2 if k is None else k
    device = model.cfg.device
    torch.manual_seed(seed)
    gate = HardConcrete((L, H)).to(device)
    total = n_training_steps(len(train_data), batch_size, epochs, max_steps)
    growth = growth_steps if growth_steps is not None else max(1, total // 5)
    if reopen_steps is None:
        reopen_steps = [m * growth for m in (2, 3, 4) if m * growth < total]
    reopen_at = set(int(s) for s in reopen_steps)
    opt = torch.optim.AdamW(gate.parameters(), lr=lr, weight_decay=0.0)
    conf = _Confidence(L, H)
    current: dict[str, Tensor] = {}
    hooks = head_scale_hooks(model, lambda layer: current["gate"][layer]) + conf.hooks(L)
    reopen_gen = torch.Generator().manual_seed(seed + 1)
    unmet = 0
    met_at: int | None = None
    losses: list[float] = []
    lambdas: list[float] = []
    counts: list[tuple[int, int]] = []
    reopened: list[dict[str, int]] = []
    gate.train()
    for step, batch in enumerate(training_batches(train_data, batch_size, seed, epochs, max_steps,
                                                  pad_id_of(model), device), start=1):
        lam = lambda0 * 1000.0 ** (unmet / growth)
        current["gate"] = gate.sample()
        conf.attention_mask = batch["attention_mask"]
        with model.hooks(fwd_hooks=hooks):
            ce = answer_loss(model, batch["input_ids"], batch["labels"], batch["attention_mask"])
        reg = pass_regularizer(gate.log_alpha, k_target, gate.beta, gate.limits, concentrator)
        loss = ce + lam * reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            if step in reopen_at:
                gate.log_alpha.clamp_(-CLIP, CLIP)
                closed = (gate.log_alpha <= -CLIP).cpu()
                p = conf.normalised()
                draw = torch.rand(p.shape, generator=reopen_gen) < p
                reopen = (closed & draw).to(device)
                gate.log_alpha[reopen] = CLIP
                reopened.append({"step": step, "closed": int(closed.sum()), "reopened": int(reopen.sum())})
                conf.reset()
            c = almost_sure_counts(gate.log_alpha)
        if c != target_counts(gate.log_alpha, k_target):
            unmet += 1
        elif met_at is None:
            met_at = step
        losses.append(float(ce.detach()))
        lambdas.append(lam)
        counts.append(c)
    current.clear()
    gate.eval()
    with torch.no_grad():
        la = gate.log_alpha.detach().float().cpu()
        scores = deterministic(la, gate.limits)
    mask = (scores > threshold) if k is None else top_k_mask(scores, k, tiebreak=la)
    record = {
        "settings": {"lr": lr, "epochs": epochs, "batch_size": batch_size, "max_steps": max_steps,
                     "lambda0": lambda0, "growth_steps": growth, "reopen_steps": sorted(reopen_at),
                     "concentrator": concentrator, "threshold": threshold, "k_target": k_target,
                     "beta": gate.beta, "limits": list(gate.limits), "optimizer": "AdamW"},
        "steps": len(losses),
        "loss": losses,
        "lambda": lambdas,
        "counts": counts,
        "met_at_step": met_at,
        "targets_met": targets_met(la, k_target),
        "unmet_steps": unmet,
        "reopened": reopened,
        "log_alpha": la,
        "rule": "top-k by deterministic gate (tie-break log-alpha)" if k is not None else f"gate > {threshold}",
    }
    return SelectionResult(scores, mask, "pass", int(mask.sum()), record)


def _lambda_after(unmet: int, lambda0: float = 1e-5, growth_steps: int = 1000) -> float:
    """lambda_t after ``unmet`` unmet steps (for reading logs).

    Example:
        >>> _lambda_after(1000), _lambda_after(0)
        (0.01, 1e-05)
    """
    return round(lambda0 * math.pow(1000.0, unmet / growth_steps), 12)
