"""DSP, Differentiable Subset Pruning (Li, Cotterell & Sachan 2021), pipelined mode.

One importance logit ``w[l, h]`` per head (float64, Xavier-uniform). At every step a soft
K-hot mask is drawn with the Gumbel soft top-K relaxation (:func:`gumbel_soft_topk`) at a
temperature annealed exponentially from ``tau0`` to ``tau_final`` over ``anneal_steps``; the
mask multiplies every head's ``hook_z`` (one sample per step, shared by the batch). The model
is frozen; only ``w`` trains, with AdamW at the "pruning lr" 0.5, on the answer-only CE. With
``ste=True`` the forward pass uses the hard top-K of ``w`` (no noise) and the gradient goes
straight through to ``w``. The selection is the hard top-K of ``w`` (METHODS.md section 3.2).
The stage is an editor, :class:`DSPHeadLogits`, trained by the one :class:`~jola_lens.train.Trainer`
(its per-step mask draw is :meth:`DSPHeadLogits.before_step`).

Example:
    >>> import torch
    >>> m = gumbel_soft_topk(torch.tensor([3.0, 1.0, 2.0, 0.0]), k=2, tau=1e-3, gumbel=False)
    >>> m.round().tolist()
    [1.0, 0.0, 1.0, 0.0]
    >>> float(gumbel_soft_topk(torch.randn(6), k=3, tau=5.0).sum())  # doctest: +ELLIPSIS
    3.0...
"""

from __future__ import annotations

import math
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ..editors.base import Editor, HookFn
from .base import (
    SelectionResult,
    default_k,
    head_scale_hooks,
    n_training_steps,
    register_selector,
    stage_config,
    top_k_mask,
    train_stage,
)


def gumbel_soft_topk(
    logits: Float[Tensor, "*shape"],
    k: int,
    tau: float,
    generator: torch.Generator | None = None,
    gumbel: bool = True,
) -> Float[Tensor, "*shape"]:
    """A relaxed K-hot sample over all entries of ``logits`` (Xie & Ermon 2019), summing to ``k``.

    ``r = logits + Gumbel noise``; ``p_1 = softmax(r / tau)``; for ``j = 2..k``:
    ``r <- r + log(max(1 - p_{j-1}, eps))``, ``p_j = softmax(r / tau)``; the mask is
    ``sum_j p_j``. Each ``p_j`` sums to one, so the mask sums to ``k``; as ``tau -> 0`` it tends
    to the hard top-K of ``r`` (of ``logits`` when ``gumbel=False``). Differentiable in ``logits``.
    At moderate temperatures an entry can exceed 1 (two entries, k = 2: the mask is
    ``(p + 1/2, 3/2 - p)``); the DSP code uses the same recursion.

    Args:
        logits: any shape; the top-K is taken over all entries.
        k: subset size, ``1 <= k <= logits.numel()``.
        tau: temperature (> 0).
        generator: for the noise.
        gumbel: add Gumbel noise (``False``: the deterministic relaxation).

    Example:
        >>> w = torch.tensor([[0.5, 2.0], [1.0, -1.0]])
        >>> m = gumbel_soft_topk(w, 2, tau=1e-4, gumbel=False)
        >>> m.tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """
    n = logits.numel()
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and {n}, got {k}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    flat = logits.reshape(-1)
    eps = torch.finfo(flat.dtype).tiny
    r = flat
    if gumbel:
        u = torch.rand(n, generator=generator, dtype=flat.dtype, device=flat.device).clamp_min(eps)
        r = flat - torch.log((-torch.log(u)).clamp_min(eps))
    p = torch.softmax(r / tau, dim=0)
    mask = p
    for _ in range(k - 1):
        r = r + torch.log((1.0 - p).clamp_min(eps))
        p = torch.softmax(r / tau, dim=0)
        mask = mask + p
    return mask.reshape(logits.shape)


def annealed_tau(step: int, tau0: float, tau_final: float, anneal_steps: int) -> float:
    """``tau0 * (tau_final / tau0) ** (step / anneal_steps)`` up to ``anneal_steps``, then ``tau_final``.

    Example:
        >>> annealed_tau(0, 1.0, 0.01, 10), annealed_tau(5, 1.0, 0.01, 10), annealed_tau(99, 1.0, 0.01, 10)
        (1.0, 0.1, 0.01)
    """
    if anneal_steps <= 0 or step >= anneal_steps:
        return tau_final
    return tau0 * (tau_final / tau0) ** (step / anneal_steps)


def hard_topk_ste(w: Tensor, k: int) -> Tensor:
    """Forward: the 0/1 top-K of ``w``; backward: identity to ``w`` (straight-through)."""
    hard = top_k_mask(w.detach(), k).to(w.dtype)
    return hard + (w - w.detach())


class DSPHeadLogits(Editor):
    """DSP's stage as an editor: one importance logit ``w[l, h]`` per head (float64, Xavier-uniform
    with a generator seeded ``seed``) and a soft K-hot head mask on every ``hook_z``.

    In training, :meth:`before_step` draws the step's mask (Gumbel soft top-K at the annealed
    temperature, noise from a generator seeded ``seed + 1``; or the straight-through hard top-K);
    in eval mode the mask is the hard top-K of ``w``. No penalty: the loss is the answer CE.
    ``taus`` holds each step's temperature.
    """

    name = "dsp_stage"
    display_name = "DSP"

    def __init__(self, model: Any, k: int, *, seed: int = 0, tau0: float = 1000.0, tau_final: float = 1e-8,
                 anneal_steps: int = 1, annealing: bool = True, ste: bool = False) -> None:
        super().__init__(model)
        L, H = model.cfg.n_layers, model.cfg.n_heads
        gen = torch.Generator().manual_seed(seed)
        w = torch.empty(L, H, dtype=torch.float64)
        bound = math.sqrt(6.0 / (L + H))  # Xavier-uniform on the [L, H] matrix
        w.uniform_(-bound, bound, generator=gen)
        self.w = nn.Parameter(w.to(model.cfg.device))
        self.noise = torch.Generator(device=self.w.device).manual_seed(seed + 1)
        self.k, self.tau0, self.tau_final, self.anneal_steps = k, tau0, tau_final, anneal_steps
        self.annealing, self.ste = annealing, ste
        self.draw: Tensor | None = None
        self.taus: list[float] = []

    def before_step(self, step: int) -> None:
        """Draw the mask of step ``step`` (1-based; the temperature of step ``step - 1`` from 0)."""
        tau = annealed_tau(step - 1, self.tau0, self.tau_final, self.anneal_steps) if self.annealing else self.tau_final
        if self.ste:
            self.draw = hard_topk_ste(self.w, self.k)
        else:
            self.draw = gumbel_soft_topk(self.w, self.k, tau, generator=self.noise)
        self.taus.append(tau)

    def head_mask(self) -> Tensor:
        """The mask the forward pass uses: the step's draw in training, the hard top-K otherwise."""
        if self.training and self.draw is not None:
            return self.draw
        return top_k_mask(self.w.detach(), self.k).to(self.w.dtype)

    def train(self, mode: bool = True) -> "DSPHeadLogits":
        if not mode:
            self.draw = None  # a draw belongs to one training step
        return super().train(mode)

    def fwd_hooks(self) -> list[tuple[str, HookFn]]:
        return head_scale_hooks(self.model, lambda layer: self.head_mask()[layer])


@register_selector("dsp")
def select_dsp(
    model: Any,
    train_data: list[dict[str, Any]],
    *,
    k: int | None,
    seed: int = 0,
    lr: float = 0.5,
    epochs: int = 3,
    batch_size: int = 8,
    max_steps: int | None = None,
    tau0: float = 1000.0,
    tau_final: float = 1e-8,
    anneal_steps: int | None = None,
    annealing: bool = True,
    ste: bool = False,
) -> SelectionResult:
    """DSP head selection with a frozen model.

    Args:
        lr: AdamW learning rate of ``w`` (DSP's pruning_lr for BERT: 0.5).
        epochs, batch_size, max_steps: the budget.
        tau0, tau_final: temperature at the start and end of annealing (DSP: 1000 -> 1e-8).
        anneal_steps: annealing length (default: the whole run).
        annealing: ``False`` uses ``tau_final`` throughout, as DSP without ``--annealing``.
        ste: straight-through hard top-K instead of the Gumbel relaxation.

    ``record["loss"]`` and ``record["tau"]`` hold each step's task loss and temperature.
    """
    k = default_k(model) if k is None else k
    total = n_training_steps(len(train_data), batch_size, epochs, max_steps)
    T = total if anneal_steps is None else anneal_steps
    stage = DSPHeadLogits(model, k, seed=seed, tau0=tau0, tau_final=tau_final, anneal_steps=T,
                          annealing=annealing, ste=ste)
    result, steps = train_stage(stage, train_data, stage_config(
        lr=lr, epochs=epochs, batch_size=batch_size, max_steps=max_steps, seed=seed))
    losses = [s["ce"] for s in steps]
    scores = stage.w.detach().float().cpu()
    record = {
        "settings": {"lr": lr, "epochs": epochs, "batch_size": batch_size, "max_steps": max_steps, "tau0": tau0,
                     "tau_final": tau_final, "anneal_steps": T, "annealing": annealing, "ste": ste,
                     "optimizer": "AdamW(0.9, 0.999)", "init": "xavier_uniform float64"},
        "steps": result.steps,
        "stopped": result.stopped,
        "loss": losses,
        "tau": stage.taus[:result.steps],
        "rule": "hard top-k of the importance logits w",
    }
    return SelectionResult(scores, top_k_mask(scores, k), "dsp", k, record)
