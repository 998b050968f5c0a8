import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jola_lens import gates
from jola_lens.gates import HardConcrete


def test_monte_carlo_open_fraction_matches_prob_open():
    torch.manual_seed(0)
    log_alpha = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.5, 3.0])
    n = 200_000
    samples = gates.sample(log_alpha.expand(n, -1))
    frac_open = (samples > 0).float().mean(0)
    frac_one = (samples == 1).float().mean(0)
    assert torch.allclose(frac_open, gates.prob_open(log_alpha), atol=0.01)
    assert torch.allclose(frac_one, gates.prob_fully_open(log_alpha), atol=0.01)
    assert torch.allclose(1 - frac_open, gates.prob_closed(log_alpha), atol=0.01)


def test_prob_open_constant_matches_paper():
    # P(g != 0) = sigmoid(log_alpha + 0.7913) with beta 0.33, limits (-0.1, 1.1)
    assert math.isclose(float(gates.prob_open(torch.tensor(0.0))), 1 / (1 + math.exp(-0.79134)), abs_tol=1e-4)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-30, max_value=30, allow_nan=False))
def test_gate_properties(la):
    t = torch.tensor([la], dtype=torch.float64)
    d = gates.deterministic(t)
    assert 0.0 <= float(d) <= 1.0
    po, pc = gates.prob_open(t), gates.prob_closed(t)
    assert abs(float(po + pc) - 1.0) < 1e-9
    assert float(gates.prob_fully_open(t)) <= float(po) + 1e-12
    s = gates.sample(t.expand(64))
    assert bool(((s >= 0) & (s <= 1)).all())


def test_deterministic_monotone_and_saturates():
    la = torch.linspace(-10, 10, 101)
    d = gates.deterministic(la)
    assert bool((d[1:] >= d[:-1]).all())
    assert float(d[0]) == 0.0 and float(d[-1]) == 1.0


def test_module_modes_and_grad():
    g = HardConcrete((5, 7), init="constant", init_value=0.3)
    g.train()
    s1, s2 = g(), g()
    assert s1.shape == (5, 7) and not torch.equal(s1, s2)  # stochastic
    s1.sum().backward()
    assert g.log_alpha.grad is not None
    g.eval()
    assert torch.equal(g(), g())
    assert torch.allclose(g.expected_l0(), g.prob_open().sum())


def test_xavier_init_bounds_like_jola_code():
    torch.manual_seed(0)
    g = HardConcrete((30, 9), init="xavier")
    bound = math.sqrt(6 / (9 + 1))
    la = g.log_alpha.detach().abs().max()
    assert float(la) <= bound and float(la) > 0.8 * bound
    d = g.deterministic().detach()
    lo = 1 / (1 + math.exp(bound)) * 1.2 - 0.1  # sigmoid(-bound) stretched to (-0.1, 1.1)
    assert lo - 1e-6 <= float(d.min()) and float(d.max()) <= 1 - lo + 1e-6


@pytest.mark.parametrize("bad", [dict(beta=0.0), dict(limits=(0.1, 1.1)), dict(limits=(-0.1, 0.9))])
def test_bad_settings_raise(bad):
    with pytest.raises(ValueError):
        HardConcrete((2, 2), **bad)


def test_unknown_init_raises():
    # ``init`` is a Literal: under the test session's type checks the call is refused before it
    # runs (jaxtyping's TypeCheckError is a TypeError); without them the body raises ValueError.
    with pytest.raises((ValueError, TypeError)):
        HardConcrete((2, 2), init="nope")
    with pytest.raises(ValueError, match="unknown gate init"):
        HardConcrete((2, 2)).reset_parameters("nope")
