"""Non-finite input gives every CPU backend the reference's pattern of NaN, +inf and -inf in every output
and gradient (issue 13): a fast activation that saturates to a tiny number instead of exactly 0 turns
the reference's 0 * inf = NaN into a silent inf.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastrnn as fr

from support import CELL_KINDS, DTYPES, Case, load, make_module, random_inputs, random_params, run_module

# 0 * inf in the weight-gradient GEMMs is what these tests are about: NumPy's warning about it is expected.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")


def _pattern(results: dict) -> dict:
    return {k: (np.isnan(v), np.isposinf(v), np.isneginf(v)) for k, v in results.items() if v is not None}


def _assert_same_pattern(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    got, want = _pattern(actual), _pattern(expected)
    differ = [k for k in want if not all(np.array_equal(a, b) for a, b in zip(got[k], want[k]))]
    assert not differ, f"non-finite pattern differs from the reference in {differ}: " + "; ".join(
        f"{k}: got {actual[k].ravel()[:8]}, reference {expected[k].ravel()[:8]}" for k in differ)


def test_lstm_sigmoid_of_minus_inf_is_exactly_zero(cpu_backend):
    """The issue's repro: weight_ih = [-1, 1, 1, 1], x = inf. The input gate is sigmoid(-inf) = 0, so
    its gradient is 0 * inf = NaN in grad weight_ih, as in torch and the reference."""
    results = {}
    for backend in (cpu_backend, "numpy"):
        m = fr.LSTM(1, 1, dtype="float64", backend=backend)
        m.load_state_dict({k: np.zeros_like(v) for k, v in m.state_dict().items()}
                          | {"weight_ih_l0": np.array([[-1.0], [1.0], [1.0], [1.0]])})
        out, _ = m(np.full((1, 1, 1), np.inf))
        m.backward(np.ones_like(out))
        results[backend] = m.grads["weight_ih_l0"].ravel()
    assert np.isnan(results["numpy"]).all()
    np.testing.assert_array_equal(results[cpu_backend], results["numpy"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_infinite_inputs_give_the_reference_pattern(cpu_backend, kind, dtype):
    case = Case(T=3, N=4, I=3, H=5)
    rng = np.random.default_rng(7)
    params = random_params(make_module(kind, case.I, case.H, backend="numpy", dtype=dtype), rng)
    data = random_inputs(kind, case, rng)
    x = data["x"]
    # One infinite feature per (t, n): each gate's pre-activation is then +-inf, not NaN. An inf + -inf
    # (or a NaN input) would poison every gradient and hide the pattern this test looks at.
    x[0, 0, 0], x[1, 1, 2], x[2, 2, 1] = np.inf, -np.inf, np.inf
    results = {}
    for backend in (cpu_backend, "numpy"):
        m = make_module(kind, case.I, case.H, backend=backend, dtype=dtype)
        load(m, params, dtype)
        results[backend] = run_module(m, kind, data, backend, dtype)
    _assert_same_pattern(results[cpu_backend], results["numpy"])
