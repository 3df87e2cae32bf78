"""Checks that only make sense for the "numba" backend (the generic backend-vs-reference, PyTorch
parity and bad-input suites already run it through the registry).

Covered here: the vectorizable activations against NumPy, NaN propagation through them, the two
code paths of each loop (jitted small-batch loop vs host loop with BLAS) and of the single step,
repeatability of backward on one cache, float32 kernels free of float64 arithmetic, and an import
that compiles nothing.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fastrnn import dispatch
from fastrnn.cells import CELLS
from fastrnn.contract import BackwardRequest
from fastrnn.numerics import SAME_BACKEND_PATHS, relative_error

from support import forward_request, named, step_request

pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("numba") is not None,
                                reason=f"numba backend unavailable: {dispatch.unavailable_reason('numba')}")

DTYPES = ("float32", "float64")


def _kernels(name):
    return dispatch.kernels(name, "numba")


def _layer_inputs(name, T, N, I, H, dtype, seed=0):
    cell = CELLS[name]
    G = cell.gates * H
    rng = np.random.default_rng(seed)

    def u(*shape):
        return rng.uniform(-1, 1, shape).astype(dtype)

    return dict(x=u(T, N, I), h0=u(N, H), c0=u(N, H) if cell.has_cell_state else None,
                w_ih=u(G, I), w_hh=u(G, H), b_ih=u(G), b_hh=u(G),
                dout=u(T, N, H), dh=u(N, H), dc=u(N, H) if cell.has_cell_state else None)


def _run(name, d, lengths=None, reverse=False):
    """out, h_n, c_n and the seven gradients, in the contract's order, as one tuple."""
    cell = CELLS[name]
    k = _kernels(name)
    fwd = k.forward(forward_request(cell, d, lengths=lengths, reverse=reverse, training=True))
    grads = k.backward(_backward_request(cell, fwd.cache, d))
    return (fwd.out, fwd.h_n, fwd.c_n) + tuple(named(grads).values())


def _backward_request(cell, cache, d):
    return BackwardRequest(cell=cell, cache=cache, dout=d["dout"], dh_n=d["dh"], dc_n=d["dc"])


# ------------------------------------------------------------------------------------ activations

@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_match_numpy(dtype):
    from numba import njit

    from fastrnn.cpu._math import fexp, ftanh, relu, sigmoid

    @njit(error_model="numpy")
    def apply(x, e, s, t, r):
        for i in range(x.size):
            e[i] = fexp(x[i])
            s[i] = sigmoid(x[i])
            t[i] = ftanh(x[i])
            r[i] = relu(x[i])

    x = np.concatenate([np.linspace(-100, 100, 20001), np.linspace(-1e-3, 1e-3, 101),
                        [-np.inf, np.inf, -1e30, 1e30, 0.0]]).astype(dtype)
    e, s, t, r = (np.empty_like(x) for _ in range(4))
    apply(x, e, s, t, r)
    x64 = x.astype(np.float64)
    eps = np.finfo(dtype).eps
    in_range = (x64 > -80) & (x64 < 80)
    exact = np.exp(x64[in_range])
    assert np.max(np.abs(e[in_range] - exact) / exact) < 4 * eps
    with np.errstate(over="ignore"):
        assert np.max(np.abs(s - 1 / (1 + np.exp(-x64)))) < 4 * eps
    assert np.max(np.abs(t - np.tanh(x64))) < 4 * eps
    assert np.array_equal(r, np.maximum(x, 0))
    for name, y in (("exp", e), ("sigmoid", s), ("tanh", t), ("relu", r)):
        assert y.dtype == x.dtype, name

    nan = np.full(3, np.nan, dtype=dtype)
    outs = [np.empty_like(nan) for _ in range(4)]
    apply(nan, *outs)
    assert all(np.isnan(o).all() for o in outs), "a NaN must propagate through every activation"


@pytest.mark.parametrize("name", list(CELLS))
def test_nan_in_input_propagates(name):
    d = _layer_inputs(name, 3, 4, 5, 6, "float32")
    d["x"][1, 2, 3] = np.nan
    out, h, c = _run(name, d)[:3]
    assert np.isnan(out[1:, 2]).all() and np.isnan(h[2]).all()
    assert not np.isnan(out[:, [0, 1, 3]]).any()


# ---------------------------------------------------------------------------- the two loop paths

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("name", list(CELLS))
def test_small_batch_loop_matches_blas_loop(name, reverse, dtype):
    """A batch of 5 runs the host loop with BLAS; each row alone runs the jitted small-batch loop.
    Row by row they must agree (weight gradients: the sum of the single-row ones)."""
    from fastrnn.cpu._blas import SMALL_BATCH

    T, N, I, H = 6, 5, 7, 9
    assert N > SMALL_BATCH
    d = _layer_inputs(name, T, N, I, H, dtype, seed=3)
    lengths = np.array([6, 2, 5, 1, 6], dtype=np.int32)
    batch = _run(name, d, lengths, reverse)
    single = []
    for n in range(N):
        dn = {k: (None if v is None else
                  v[:, n:n + 1] if k in ("x", "dout") else
                  v[n:n + 1] if k in ("h0", "c0", "dh", "dc") else v) for k, v in d.items()}
        dn["x"] = np.ascontiguousarray(dn["x"])
        single.append(_run(name, dn, lengths[n:n + 1], reverse))
    per_row = {0: 1, 1: 0, 2: 0, 3: 1, 4: 0, 5: 0}      # out, h, c, dx, dh0, dc0: batch axis
    for i, axis in per_row.items():
        if batch[i] is None:
            continue
        joined = np.concatenate([s[i] for s in single], axis=axis)
        assert relative_error(joined, batch[i]) < SAME_BACKEND_PATHS[dtype], i
    for i in (6, 7, 8, 9):                                # dw_ih, dw_hh, db_ih, db_hh: summed
        assert relative_error(sum(s[i] for s in single), batch[i]) < SAME_BACKEND_PATHS[dtype], i


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N", [1, 4, 5])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", list(CELLS))
def test_step_matches_one_step_forward(name, bias, N, dtype):
    """The single-step path (dot products up to STEP_BATCH rows, forward() above) against T=1."""
    cell = CELLS[name]
    k = _kernels(name)
    d = _layer_inputs(name, 1, N, 5, 33, dtype, seed=N)
    if not bias:
        d["b_ih"] = d["b_hh"] = None
    whole = k.forward(forward_request(cell, d))
    step = k.step(step_request(cell, d))
    assert step.h.dtype == np.dtype(dtype)
    assert relative_error(step.h, whole.h_n) < SAME_BACKEND_PATHS[dtype]
    if cell.has_cell_state:
        assert relative_error(step.c, whole.c_n) < SAME_BACKEND_PATHS[dtype]
    else:
        assert step.c is None
    # The cells' streaming entry: the same numbers from the same kernel (a step this small never
    # runs paired: pair.MIN_WEIGHTS), or None above STEP_BATCH.
    from fastrnn.cpu._blas import STEP_BATCH

    streamed = k.stream(d["x"][0], d["h0"], d["c0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    if N > STEP_BATCH:
        assert streamed is None
    else:
        assert np.array_equal(streamed[0], step.h)
        assert (streamed[1] is None) if step.c is None else np.array_equal(streamed[1], step.c)


@pytest.mark.parametrize("name", list(CELLS))
def test_backward_twice_and_inputs_untouched(name):
    d = _layer_inputs(name, 5, 3, 4, 6, "float64", seed=9)
    before = {k: None if v is None else v.copy() for k, v in d.items()}
    cell = CELLS[name]
    k = _kernels(name)
    cache = k.forward(forward_request(cell, d, reverse=True, training=True)).cache
    first = named(k.backward(_backward_request(cell, cache, d)))
    second = named(k.backward(_backward_request(cell, cache, d)))
    for a, b in zip(first.values(), second.values()):
        assert (a is None and b is None) or np.array_equal(a, b)
    for key, v in before.items():
        assert (v is None and d[key] is None) or np.array_equal(v, d[key]), key


# ------------------------------------------------------------------------------ compiled code

def _float32_llvm(fn, *args):
    """LLVM IR of a fresh (uncached) float32 compilation of a kernel's Python source."""
    from numba import njit

    fresh = njit(error_model="numpy")(fn.py_func)
    fresh(*args)
    return fresh.inspect_llvm(fresh.signatures[0])


def test_float32_forward_steps_have_no_float64_arithmetic():
    from fastrnn.cpu import gru, lstm, rnn

    f32 = np.float32
    T, N, H = 2, 3, 8

    def z(*shape):
        return np.zeros(shape, f32)

    lens = np.full(N, T, np.int32)
    cases = {
        "lstm": (lstm.forward_step, (0, z(T, N, 4 * H), z(N, 4 * H), z(4 * H), z(N, H), z(N, H), lens,
                                     False, True, z(T, N, H), z(T, N, H), z(T, N, H))),
        "gru": (gru.forward_step, (0, z(T, N, 3 * H), z(N, 3 * H), z(3 * H), z(H), z(N, H), lens,
                                   False, True, z(T, N, H), z(T, N, H), z(T, N, H))),
        "rnn": (rnn.forward_step, (0, z(T, N, H), z(N, H), z(H), False, z(N, H), lens, False, True,
                                   z(T, N, H), z(T, N, H))),
    }
    for name, (fn, args) in cases.items():
        ir = _float32_llvm(fn, *args)
        bad = [line for line in ir.splitlines()
               if any(op in line for op in ("fadd double", "fmul double", "fdiv double",
                                            "fsub double", "fpext float"))]
        assert not bad, f"{name}: float64 arithmetic in a float32 kernel:\n" + "\n".join(bad[:5])


def test_import_compiles_nothing():
    code = ("import fastrnn.cpu as c\n"
            "from fastrnn.cpu import gru, lstm, rnn\n"
            "from numba.core.registry import CPUDispatcher\n"
            "jitted = [f for m in (gru, lstm, rnn) for f in vars(m).values()\n"
            "          if isinstance(f, CPUDispatcher)]\n"
            "assert jitted and all(not f.signatures for f in jitted), 'compiled at import'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
