"""The NumPy reference backward against float64 central finite differences.

Per-layer kernels (the "numpy" backend, called through fastrnn.contract's requests): every element
of every input, checked one at a time. Modules: one random direction per tensor (x, initial states,
every parameter), which covers layers, directions, lengths, batch_first, bias=False and dropout at
the cost of two forwards.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from fastrnn import dispatch
from fastrnn.cells import CELLS
from fastrnn.contract import BackwardRequest
from fastrnn.numerics import FD_EPS, FD_TOLERANCE, relative_error

from support import (CELL_KINDS, Case, forward_request, load, make_module, named, random_inputs,
                     random_params, run_module)

KERNEL_VARIANTS = {
    "plain": dict(),
    "reverse": dict(reverse=True),
    "lengths": dict(lengths=(3, 1, 2)),
    "lengths-reverse": dict(lengths=(2, 3, 1), reverse=True),
    "nobias": dict(bias=False, reverse=True, lengths=(3, 3, 2)),
    "T1N1": dict(T=1, N=1),
}


def _layer_inputs(cell, rng, T=3, N=3, I=2, H=3, bias=True, lengths=None):
    gh = cell.gates * H
    args = {
        "x": rng.standard_normal((T, N, I)),
        "h0": rng.standard_normal((N, H)) * 0.5,
        "c0": rng.standard_normal((N, H)) * 0.5 if cell.has_cell_state else None,
        "w_ih": rng.uniform(-0.8, 0.8, (gh, I)),
        "w_hh": rng.uniform(-0.8, 0.8, (gh, H)),
        "b_ih": rng.uniform(-0.5, 0.5, gh) if bias else None,
        "b_hh": rng.uniform(-0.5, 0.5, gh) if bias else None,
    }
    lens = None if lengths is None else np.array(lengths, dtype=np.int32)
    return args, lens


ARG_ORDER = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")
GRAD_NAMES = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")


@pytest.mark.parametrize("variant", list(KERNEL_VARIANTS))
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_layer_backward_matches_finite_differences(cell_name, variant):
    cell = CELLS[cell_name]
    opts = dict(KERNEL_VARIANTS[variant])
    reverse = opts.pop("reverse", False)
    rng = np.random.default_rng(zlib.crc32(f"{cell_name}/{variant}".encode()))
    args, lens = _layer_inputs(cell, rng, **opts)
    k = dispatch.kernels(cell, "numpy")
    T, N, _ = args["x"].shape
    H = args["h0"].shape[1]
    r_out = rng.standard_normal((T, N, H))   # includes padded steps: their dout must be ignored
    r_h = rng.standard_normal((N, H))
    r_c = rng.standard_normal((N, H)) if cell.has_cell_state else None

    def loss(a):
        result = k.forward(forward_request(cell, a, lengths=lens, reverse=reverse))
        assert result.cache is None, "inference forward must keep nothing"
        total = np.sum(result.out * r_out) + np.sum(result.h_n * r_h)
        return total + (np.sum(result.c_n * r_c) if result.c_n is not None else 0.0)

    snapshot = {n: None if v is None else v.copy() for n, v in args.items()}
    cache = k.forward(forward_request(cell, args, lengths=lens, reverse=reverse, training=True)).cache
    inputs_up = (r_out.copy(), r_h.copy(), None if r_c is None else r_c.copy())
    grads = named(k.backward(BackwardRequest(cell=cell, cache=cache, dout=r_out, dh_n=r_h, dc_n=r_c)))
    for n, v in args.items():
        assert (v is None) == (snapshot[n] is None) and (v is None or np.array_equal(v, snapshot[n])), \
            f"forward/backward modified its input {n}"
    assert np.array_equal(r_out, inputs_up[0]) and np.array_equal(r_h, inputs_up[1]), \
        "backward modified dout or dh_n"

    for name, gname in zip(ARG_ORDER, GRAD_NAMES):
        value = args[name]
        if value is None:
            assert grads[gname] is None, f"{gname} must be None when {name} is None"
            continue
        assert grads[gname].shape == value.shape, f"{gname} shape {grads[gname].shape} != {value.shape}"
        fd = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            orig = value[idx]
            value[idx] = orig + FD_EPS
            up = loss(args)
            value[idx] = orig - FD_EPS
            down = loss(args)
            value[idx] = orig
            fd[idx] = (up - down) / (2 * FD_EPS)
        err = relative_error(grads[gname], fd)
        assert err <= FD_TOLERANCE, f"{gname}: relative error {err:.3g} vs finite differences"


MODULE_CASES = [
    Case(T=3, N=2, I=3, H=4),
    Case(T=4, N=3, I=2, H=3, num_layers=2, bidirectional=True, lengths=(4, 1, 3)),
    Case(T=3, N=3, I=3, H=2, num_layers=2, batch_first=True, bias=False, lengths=(2, 3, 1)),
    Case(T=1, N=1, I=2, H=3, bidirectional=True, with_hx=False),
    Case(T=3, N=2, I=2, H=3, num_layers=3, dropout=0.4),
]


def _module_fd_check(kind, case, seed):
    """Directional central differences of L = <out, dout> + <h_n, dh_n> (+ <c_n, dc_n>) against
    the module's backward, one random direction per tensor. A fresh module is built for every
    evaluation, so dropout (same seed) draws the same masks each time."""
    rng = np.random.default_rng(seed)
    proto = make_module(kind, case.I, case.H, backend="numpy", dtype="float64", seed=11,
                        **case.module_kwargs())
    params = random_params(proto, rng)
    data = random_inputs(kind, case, rng)

    def evaluate(p, d, backward=False):
        m = make_module(kind, case.I, case.H, backend="numpy", dtype="float64", seed=11,
                        **case.module_kwargs())
        load(m, p, "float64")
        m.train()
        return run_module(m, kind, d, "numpy", "float64", backward=backward)

    def loss(p, d):
        r = evaluate(p, d)
        total = np.sum(r["out"] * d["dout"]) + np.sum(r["h_n"] * d["dh_n"])
        return total + (np.sum(r["c_n"] * d["dc_n"]) if kind == "lstm" else 0.0)

    analytic = evaluate(params, data, backward=True)
    tensors = [("data", "x", "dx"), ("data", "h0", "dh0"), ("data", "c0", "dc0")]
    tensors += [("param", k, "grad." + k) for k in params]
    for where, name, gkey in tensors:
        src = data if where == "data" else params
        if src.get(name) is None:
            continue
        direction = rng.standard_normal(src[name].shape)
        moved = {}
        for sign in (1, -1):
            changed = dict(src)
            changed[name] = src[name] + sign * FD_EPS * direction
            moved[sign] = loss(params, changed) if where == "data" else loss(changed, data)
        fd = (moved[1] - moved[-1]) / (2 * FD_EPS)
        grad = analytic[gkey]
        assert grad.shape == src[name].shape, f"{gkey} shape {grad.shape} != {src[name].shape}"
        an = float(np.sum(grad * direction))
        scale = float(np.sum(np.abs(grad * direction))) or 1.0
        assert abs(fd - an) / scale <= FD_TOLERANCE, \
            f"{gkey}: directional derivative {an!r} vs finite differences {fd!r}"


@pytest.mark.parametrize("case", MODULE_CASES, ids=[c.id for c in MODULE_CASES])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_module_backward_matches_finite_differences(kind, case):
    _module_fd_check(kind, case, seed=len(kind) * 1000 + MODULE_CASES.index(case))
