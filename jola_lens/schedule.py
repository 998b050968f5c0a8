"""Gate-penalty weights lambda_t and the two penalty forms.

Schedules (t = optimiser step, counted from 1; the original code counted every
``compute_loss`` call, validation batches included: here it advances once per step):

==========  =======================================  ======================
name        lambda_t                                 default lambda_0
==========  =======================================  ======================
constant    lambda_0                                 (given)
expon       lambda_0 * exp(-0.01 t)                  0.1
linear      lambda_0 * t / N  (N = total steps)      0.2
cyclic      lambda_0 * (0.5 + 0.5 sin(2 pi t / 20))  1.0
perform     lambda += 0.01 if the loss fell, else    0.1
            lambda -= 0.01; clipped to [0, 1]
==========  =======================================  ======================

Penalty forms (p = P(gate != 0) per gate, L layers, H heads):

* ``paper``: lambda_t * sum(p_a + p_m): the expected number of open gates.
* ``jola_code``: lambda_t * mean(p_a) / H + (1 - lambda_t) * mean(p_m) / H, the released
  code's complementary weighting (METHODS.md 1.5); skipped when lambda_t == 0.

Example:
    >>> s = GateSchedule("expon")
    >>> round(s.value(1), 5), round(s.value(100), 5)
    (0.099, 0.03679)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SCHEDULES = ("constant", "expon", "linear", "cyclic", "perform")
PENALTIES = ("paper", "jola_code", "none")
CODE_DEFAULT_LAMBDA = {"expon": 0.1, "linear": 0.2, "cyclic": 1.0, "perform": 0.1}


class GateSchedule:
    """lambda_t for one of :data:`SCHEDULES`."""

    def __init__(self, name: str = "expon", lambda0: float | None = None, total_steps: int = 1) -> None:
        if name not in SCHEDULES:
            raise ValueError(f"gate schedule must be one of {SCHEDULES}, got {name!r}")
        if lambda0 is None:
            if name == "constant":
                raise ValueError("the constant schedule needs lambda0")
            lambda0 = CODE_DEFAULT_LAMBDA[name]
        if lambda0 < 0:
            raise ValueError(f"lambda0 must be >= 0, got {lambda0}")
        self.name = name
        self.lambda0 = float(lambda0)
        self.total_steps = max(int(total_steps), 1)
        self._perform = self.lambda0
        self._prev_loss = 50.0

    def value(self, t: int) -> float:
        """lambda at step t (t >= 1); for ``perform`` the current adaptive value."""
        if self.name == "constant":
            return self.lambda0
        if self.name == "expon":
            return self.lambda0 * math.exp(-0.01 * t)
        if self.name == "linear":
            return self.lambda0 * t / self.total_steps
        if self.name == "cyclic":
            return self.lambda0 * (0.5 + 0.5 * math.sin(2 * math.pi * t / 20))
        return self._perform

    def observe(self, loss: float) -> None:
        """Feed the step's loss (only ``perform`` uses it)."""
        if self.name != "perform":
            return
        if loss < self._prev_loss:
            self._perform = min(1.0, self._perform + 0.01)
        else:
            self._perform = max(0.0, self._perform - 0.01)
        self._prev_loss = loss

    def state_dict(self) -> dict:
        return {"perform": self._perform, "prev_loss": self._prev_loss}

    def load_state_dict(self, d: dict) -> None:
        self._perform = float(d["perform"])
        self._prev_loss = float(d["prev_loss"])


def gate_penalty(prob_open: dict[str, Tensor], lam: float, form: str, n_heads: int) -> Tensor:
    """The penalty term from per-kind P(open) tensors ``[n_layers, n_heads]``."""
    if form not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {form!r}")
    ref = next(iter(prob_open.values()))
    zero = torch.zeros((), dtype=ref.dtype, device=ref.device)
    if form == "none" or lam == 0:
        return zero
    if form == "paper":
        return lam * sum(p.sum() for p in prob_open.values())
    out = zero
    if "a" in prob_open:
        out = out + lam * prob_open["a"].mean() / n_heads
    if "m" in prob_open:
        out = out + (1 - lam) * prob_open["m"].mean() / n_heads
    return out
