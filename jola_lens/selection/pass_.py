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

The stage is an editor, :class:`PASSGates`, trained by the one :class:`~jola_lens.train.Trainer`:
``R`` is its penalty, ``lambda_t`` its penalty schedule (:class:`GrowingLambda`), the gate sample
its :meth:`~PASSGates.before_step`, the clip-and-reopen and the target counting its
:meth:`~PASSGates.after_step`.

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
from typing import Any, Iterable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from ..editors.base import Editor, HookFn
from ..gates import BETA, LIMITS, HardConcrete, deterministic, prob_closed, prob_fully_open
from .base import (
    SelectionResult,
    head_scale_hooks,
    n_training_steps,
    register_selector,
    stage_config,
    top_k_mask,
    train_stage,
)

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


class GrowingLambda:
    """PASS's lambda_t = ``lambda0 * 1000 ** (unmet / growth_steps)``, where ``unmet`` counts the
    steps after which the almost-sure targets were unmet (the penalty schedule of :class:`PASSGates`)."""

    def __init__(self, lambda0: float, growth_steps: int) -> None:
        self.lambda0, self.growth_steps = lambda0, growth_steps
        self.unmet = 0

    def value(self, t: int) -> float:
        return self.lambda0 * 1000.0 ** (self.unmet / self.growth_steps)

    def observe(self, loss: float) -> None:
        """The loss plays no part (``unmet`` is counted by :meth:`PASSGates.after_step`)."""

    def state_dict(self) -> dict[str, int]:
        return {"unmet": self.unmet}

    def load_state_dict(self, d: dict[str, int]) -> None:
        self.unmet = int(d["unmet"])


class PASSGates(Editor):
    """PASS's stage as an editor: a Hard-Concrete gate per head (drawn from the global RNG, which
    the caller seeds) multiplying ``hook_z``, and the running attention confidence of each head.

    In training, :meth:`before_step` draws the step's gate sample (the forward pass of eval mode
    uses the deterministic gates); the penalty is ``lambda_t * R`` (:func:`pass_regularizer`)
    with lambda_t from :class:`GrowingLambda`; :meth:`after_step` clips and reopens at
    ``reopen_at`` (reopening draws from a generator seeded ``seed + 1``) and counts whether the
    targets are met. ``counts``, ``reopened`` and ``met_at`` are the per-step records.
    """

    name = "pass_stage"
    display_name = "PASS"

    def __init__(self, model: Any, k_target: int, *, seed: int = 0, lambda0: float = 1e-5, growth_steps: int = 1,
                 reopen_at: Iterable[int] = (), concentrator: float = 0.0) -> None:
        super().__init__(model)
        L, H = model.cfg.n_layers, model.cfg.n_heads
        self.gate = HardConcrete((L, H)).to(model.cfg.device)
        self.k_target, self.concentrator = k_target, concentrator
        self.reopen_at = {int(s) for s in reopen_at}
        self.confidence = _Confidence(L, H)
        self.lambda_t = GrowingLambda(lambda0, growth_steps)
        self.reopen_gen = torch.Generator().manual_seed(seed + 1)
        self.draw: Tensor | None = None
        self.met_at: int | None = None
        self.counts: list[tuple[int, int]] = []
        self.reopened: list[dict[str, int]] = []

    def before_step(self, step: int) -> None:
        self.draw = self.gate.sample()

    def gate_values(self) -> Tensor:
        """The step's sample in training, the deterministic gates otherwise."""
        return self.draw if self.training and self.draw is not None else self.gate.deterministic()

    def train(self, mode: bool = True) -> "PASSGates":
        if not mode:
            self.draw = None  # a sample belongs to one training step
        return super().train(mode)

    def fwd_hooks(self) -> list[tuple[str, HookFn]]:
        hooks = head_scale_hooks(self.model, lambda layer: self.gate_values()[layer])
        return hooks + self.confidence.hooks(self.model.cfg.n_layers) if self.training else hooks

    def observe_batch(self, batch: dict[str, Tensor] | None) -> None:
        super().observe_batch(batch)
        self.confidence.attention_mask = None if batch is None else batch["attention_mask"]

    def penalty_schedule(self, config: Any, total_steps: int) -> GrowingLambda:
        return self.lambda_t

    def penalty(self, step: int, weight: float) -> Tensor:
        """``lambda_t * R``."""
        g = self.gate
        return weight * pass_regularizer(g.log_alpha, self.k_target, g.beta, g.limits, self.concentrator)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Clip-and-reopen at the reopening steps; count the almost-sure gates against the targets."""
        la = self.gate.log_alpha
        if step in self.reopen_at:
            la.clamp_(-CLIP, CLIP)
            closed = (la <= -CLIP).cpu()
            p = self.confidence.normalised()
            draw = torch.rand(p.shape, generator=self.reopen_gen) < p
            reopen = (closed & draw).to(la.device)
            la[reopen] = CLIP
            self.reopened.append({"step": step, "closed": int(closed.sum()), "reopened": int(reopen.sum())})
            self.confidence.reset()
        c = almost_sure_counts(la)
        if c != target_counts(la, self.k_target):
            self.lambda_t.unmet += 1
        elif self.met_at is None:
            self.met_at = step
        self.counts.append(c)


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
    torch.manual_seed(seed)
    total = n_training_steps(len(train_data), batch_size, epochs, max_steps)
    growth = growth_steps if growth_steps is not None else max(1, total // 5)
    if reopen_steps is None:
        reopen_steps = [m * growth for m in (2, 3, 4) if m * growth < total]
    reopen_at = set(int(s) for s in reopen_steps)
    stage = PASSGates(model, k_target, seed=seed, lambda0=lambda0, growth_steps=growth, reopen_at=reopen_at,
                      concentrator=concentrator)
    gate = stage.gate
    result, steps = train_stage(stage, train_data, stage_config(
        lr=lr, epochs=epochs, batch_size=batch_size, max_steps=max_steps, seed=seed))
    with torch.no_grad():
        la = gate.log_alpha.detach().float().cpu()
        scores = deterministic(la, gate.limits)
    mask = (scores > threshold) if k is None else top_k_mask(scores, k, tiebreak=la)
    record = {
        "settings": {"lr": lr, "epochs": epochs, "batch_size": batch_size, "max_steps": max_steps,
                     "lambda0": lambda0, "growth_steps": growth, "reopen_steps": sorted(reopen_at),
                     "concentrator": concentrator, "threshold": threshold, "k_target": k_target,
                     "beta": gate.beta, "limits": list(gate.limits), "optimizer": "AdamW"},
        "steps": result.steps,
        "stopped": result.stopped,
        "loss": [s["ce"] for s in steps],
        "lambda": [s["lambda"] for s in steps],
        "counts": stage.counts,
        "met_at_step": stage.met_at,
        "targets_met": targets_met(la, k_target),
        "unmet_steps": stage.lambda_t.unmet,
        "reopened": stage.reopened,
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
