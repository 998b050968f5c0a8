"""Hard-Concrete gates (Louizos, Welling & Kingma 2018), as JoLA uses them.

A gate is parameterised by one number, ``log_alpha``. In training it is a random
variable that is exactly 0 or exactly 1 with non-zero probability and continuous in
between; in evaluation it is a fixed value. The expected-L0 penalty is the
probability that the gate is non-zero.

    u  ~ U(eps, 1 - eps)
    s  = sigmoid((log u - log(1 - u) + log_alpha) / beta)
    g  = clamp(s * (zeta - gamma) + gamma, 0, 1)          # training sample
    g* = clamp(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)   # evaluation
    P(g != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))

Example:
    >>> import torch
    >>> from jola_lens.gates import HardConcrete
    >>> gate = HardConcrete((2, 3), init="constant", init_value=0.0)
    >>> gate.deterministic().shape
    torch.Size([2, 3])
    >>> round(float(gate.prob_open()[0, 0].detach()), 3)
    0.688
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

BETA = 0.33
LIMITS = (-0.1, 1.1)
EPS = 1e-6
GateInit = Literal["xavier", "constant"]


def _check(beta: float, limits: tuple[float, float]) -> None:
    lo, hi = limits
    if not beta > 0:
        raise ValueError(f"Hard-Concrete temperature beta must be > 0, got {beta}")
    if not (lo < 0 and hi > 1):
        raise ValueError(f"Hard-Concrete stretch limits must satisfy gamma < 0 < 1 < zeta, got {limits}")


def sample(
    log_alpha: Float[Tensor, "*shape"],
    beta: float = BETA,
    limits: tuple[float, float] = LIMITS,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "*shape"]:
    """One reparameterised training sample per gate (differentiable in ``log_alpha``)."""
    lo, hi = limits
    u = torch.rand(log_alpha.shape, generator=generator, dtype=log_alpha.dtype, device=log_alpha.device)
    u = u.clamp(EPS, 1 - EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / beta)
    return (s * (hi - lo) + lo).clamp(0.0, 1.0)


def deterministic(
    log_alpha: Float[Tensor, "*shape"], limits: tuple[float, float] = LIMITS
) -> Float[Tensor, "*shape"]:
    """The evaluation-time gate value in [0, 1]."""
    lo, hi = limits
    return (torch.sigmoid(log_alpha) * (hi - lo) + lo).clamp(0.0, 1.0)


def prob_open(
    log_alpha: Float[Tensor, "*shape"], beta: float = BETA, limits: tuple[float, float] = LIMITS
) -> Float[Tensor, "*shape"]:
    """P(g != 0): the expected-L0 contribution of each gate."""
    lo, hi = limits
    return torch.sigmoid(log_alpha - beta * math.log(-lo / hi))


def prob_closed(
    log_alpha: Float[Tensor, "*shape"], beta: float = BETA, limits: tuple[float, float] = LIMITS
) -> Float[Tensor, "*shape"]:
    """P(g == 0)."""
    lo, hi = limits
    return torch.sigmoid(beta * math.log(-lo / hi) - log_alpha)


def prob_fully_open(
    log_alpha: Float[Tensor, "*shape"], beta: float = BETA, limits: tuple[float, float] = LIMITS
) -> Float[Tensor, "*shape"]:
    """P(g == 1)."""
    lo, hi = limits
    return torch.sigmoid(log_alpha - beta * math.log((1 - lo) / (hi - 1)))


class HardConcrete(nn.Module):
    """A tensor of Hard-Concrete gates with learnable ``log_alpha``.

    Args:
        shape: gate tensor shape, e.g. ``(n_layers, n_heads)``.
        beta: temperature (JoLA: 0.33).
        limits: stretch interval (gamma, zeta) (JoLA: (-0.1, 1.1)).
        init: ``"xavier"`` reproduces the JoLA code (Xavier-uniform on each layer's
            ``[n_heads, 1]`` tensor, bound sqrt(6 / (n_heads + 1))); ``"constant"`` sets
            every log-alpha to ``init_value``.
        init_value: used by ``init="constant"``.

    Example:
        >>> g = HardConcrete((4, 8))
        >>> s = g.train()()
        >>> bool((s >= 0).all() and (s <= 1).all())
        True
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        beta: float = BETA,
        limits: tuple[float, float] = LIMITS,
        init: GateInit = "xavier",
        init_value: float = 0.0,
    ) -> None:
        super().__init__()
        _check(beta, limits)
        self.beta = float(beta)
        self.limits = (float(limits[0]), float(limits[1]))
        self.log_alpha = nn.Parameter(torch.zeros(shape))
        self.reset_parameters(init, init_value)

    @torch.no_grad()
    def reset_parameters(self, init: str = "xavier", init_value: float = 0.0) -> None:
        if init == "xavier":
            fan = self.log_alpha.shape[-1]  # the JoLA code: [n_heads, 1] -> fan_in 1, fan_out n_heads
            bound = math.sqrt(6.0 / (fan + 1))
            self.log_alpha.uniform_(-bound, bound)
        elif init == "constant":
            self.log_alpha.fill_(float(init_value))
        else:
            raise ValueError(f"unknown gate init {init!r}; use 'xavier' or 'constant'")

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        return sample(self.log_alpha, self.beta, self.limits, generator)

    def deterministic(self) -> Tensor:
        return deterministic(self.log_alpha, self.limits)

    def prob_open(self) -> Tensor:
        return prob_open(self.log_alpha, self.beta, self.limits)

    def prob_closed(self) -> Tensor:
        return prob_closed(self.log_alpha, self.beta, self.limits)

    def expected_l0(self) -> Tensor:
        """Sum over gates of P(g != 0)."""
        return self.prob_open().sum()

    def forward(self) -> Tensor:
        """A stochastic sample in training mode, the deterministic value in eval mode."""
        return self.sample() if self.training else self.deterministic()

    def extra_repr(self) -> str:
        return f"shape={tuple(self.log_alpha.shape)}, beta={self.beta}, limits={self.limits}"
