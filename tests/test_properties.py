"""Property test (hypothesis) over shapes, memory layouts, lengths and dtypes (issue 13 item 6).

On an invalid case every available CPU backend raises the documented error, with the message the
reference module gives. On a valid float64 case every backend agrees with the NumPy reference, forward
and backward, within the tolerance table. On a valid float32 case every backend's results are those
it gives for a C-contiguous copy of the input, bit for bit, in float32: a layout is either handled or
not, whatever the precision. float32 accuracy against the reference stays with test_backends.py, on
chosen shapes: random tiny ones are often ill-conditioned in float32 (an H=1 bidirectional LSTM's
grad weight_hh_l1 is ~3e-6, a sum of terms ~1e-3, and even the float32 reference is 2e-5 off there),
so a per-tensor relative bound there would measure the problem, not the backend.

Layouts are what callers hand in: C and Fortran order, negative strides, a strided slice, a read-only
array and a broadcast (stride 0) batch. Bounded (max_examples) so that it adds seconds, not minutes.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrnn import dispatch
from fastrnn.numerics import vs_reference

from support import (CELL_KINDS, Case, assert_all_close, check_dtypes, load, make_cell, make_module,
                     random_params)

LAYOUTS = ("c", "fortran", "negative", "strided", "readonly", "broadcast")
CPU_BACKENDS = dispatch.backends("cpu")
# Enough examples to meet each (cell, dtype, layout) several times, few enough for a few seconds.
BOUNDED = settings(max_examples=100, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _rounded(a, dtype):
    """`a` rounded to `dtype`, back in float64 (None stays None)."""
    return None if a is None else np.asarray(a).astype(dtype).astype(np.float64)


def _laid_out(values: np.ndarray, layout: str) -> np.ndarray:
    """An array equal to `values` (after the broadcast's own change) in the given memory layout."""
    if layout == "fortran":
        return np.asfortranarray(values)
    if layout == "negative":
        return np.flip(np.flip(values).copy())   # every axis reversed twice: negative strides
    if layout == "strided":
        wide = np.zeros(values.shape[:-1] + (2 * values.shape[-1],), values.dtype)
        wide[..., ::2] = values
        return wide[..., ::2]
    if layout == "readonly":
        frozen = values.copy()
        frozen.setflags(write=False)
        return frozen
    if layout == "broadcast":   # every sequence of the batch reads the same memory
        axis = 1 if values.ndim == 3 else 0
        return np.broadcast_to(np.take(values, [0], axis=axis), values.shape)
    return np.ascontiguousarray(values)


@st.composite
def cases(draw):
    kind = draw(st.sampled_from(CELL_KINDS))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    T, N = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    unbatched = draw(st.booleans())
    case = Case(T=T, N=1 if unbatched else N, I=draw(st.integers(1, 4)), H=draw(st.integers(1, 5)),
                num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
                batch_first=draw(st.booleans()), bias=draw(st.booleans()),
                with_hx=draw(st.booleans()))
    lengths, error = None, None
    if not unbatched and draw(st.booleans()):
        # mostly valid lengths, sometimes one out of 1..T
        lengths = draw(st.lists(st.integers(0, T + 1), min_size=N, max_size=N))
        if not all(1 <= n <= T for n in lengths):
            error = ValueError
    input_dtype = draw(st.sampled_from([dtype] * 4 + ["float32", "float64", "int64"]))
    if input_dtype != dtype:
        error = TypeError   # dtype is checked before lengths
    layout = draw(st.sampled_from(LAYOUTS))
    return dict(kind=kind, dtype=dtype, case=case, unbatched=unbatched, lengths=lengths,
                input_dtype=input_dtype, layout=layout, error=error, seed=draw(st.integers(0, 2**16)))


def _inputs(p) -> dict:
    case, kind = p["case"], p["kind"]
    rng = np.random.default_rng(p["seed"])
    seq = (case.T,) if p["unbatched"] else ((case.N, case.T) if case.batch_first else (case.T, case.N))
    state = (case.num_layers * case.D,) + (() if p["unbatched"] else (case.N,)) + (case.H,)
    lstm = kind == "lstm"
    x = _laid_out(rng.standard_normal(seq + (case.I,)).astype(p["input_dtype"]), p["layout"])
    return {"x": x,
            "h0": rng.standard_normal(state) if case.with_hx else None,
            "c0": rng.standard_normal(state) if case.with_hx and lstm else None,
            "dout": rng.standard_normal(seq + (case.D * case.H,)),
            "dh_n": rng.standard_normal(state), "dc_n": rng.standard_normal(state) if lstm else None,
            "lengths": None if p["lengths"] is None else np.array(p["lengths"])}


def _forward_backward(m, kind: str, data: dict, dtype: str) -> dict:
    """Like support.run_module, but x goes in exactly as laid out (run_module makes a cast copy)."""
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    lstm = kind == "lstm"
    hx = None
    if data["h0"] is not None:
        hx = (cast(data["h0"]), cast(data["c0"])) if lstm else cast(data["h0"])
    out, state = m(data["x"], hx, lengths=data["lengths"])
    res = {"out": out} | ({"h_n": state[0], "c_n": state[1]} if lstm else {"h_n": state})
    dhn = (cast(data["dh_n"]), cast(data["dc_n"])) if lstm else cast(data["dh_n"])
    dx, dhx = m.backward(cast(data["dout"]), dhn)
    res["dx"] = dx
    if hx is not None:
        res.update(zip(("dh0", "dc0"), dhx) if lstm else [("dh0", dhx)])
    res.update(("grad." + k, g) for k, g in m.grads.items())
    return res


def _outcome(fn):
    """fn()'s results, or the (type, message) of the documented error it raised."""
    try:
        return fn()
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)


def _check(p, error, run, reference):
    """run(backend, contiguous) -> results or (error type, message); reference() -> the float64
    reference's results on the dtype-rounded parameters and inputs."""
    if error is not None:
        expected = run("numpy", False)
        assert isinstance(expected, tuple) and expected[0] is error, expected
        for backend in CPU_BACKENDS:
            assert run(backend, False) == expected
        return
    expected = reference() if p["dtype"] == "float64" else None
    for backend in CPU_BACKENDS:
        actual = run(backend, False)
        assert isinstance(actual, dict), f"a valid case raised {actual}"
        check_dtypes(actual, p["dtype"])
        if expected is not None:
            assert_all_close(actual, expected, vs_reference(backend, "float64"), suite="properties",
                             backend=backend, dtype="float64", where=str(p))
        else:
            contiguous = run(backend, True)
            assert actual.keys() == contiguous.keys()
            for key, value in contiguous.items():
                np.testing.assert_array_equal(actual[key], value, err_msg=f"{backend} {key}")


def _run(backend: str, p, params, data):
    """The results of one forward + backward, or the (type, message) of the error raised."""
    m = make_module(p["kind"], p["case"].I, p["case"].H, backend=backend, dtype=p["dtype"],
                    **p["case"].module_kwargs())
    load(m, params, p["dtype"])
    return _outcome(lambda: _forward_backward(m, p["kind"], data, p["dtype"]))


@BOUNDED
@given(cases())
def test_cpu_backends_agree_with_the_reference_or_raise_the_documented_error(p):
    case = p["case"]
    params = random_params(make_module(p["kind"], case.I, case.H, backend="numpy", dtype="float64",
                                       **case.module_kwargs()), np.random.default_rng(p["seed"]))
    data = _inputs(p)
    _check(p, p["error"],
           lambda backend, contiguous: _run(backend, p, params, data | (
               {"x": np.ascontiguousarray(data["x"])} if contiguous else {})),
           lambda: _run("numpy", p | {"dtype": "float64"},
                        {k: _rounded(v, p["dtype"]) for k, v in params.items()},
                        {k: v if k == "lengths" else _rounded(v, p["dtype"]) for k, v in data.items()}))


@st.composite
def cell_cases(draw):
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return dict(kind=draw(st.sampled_from(CELL_KINDS)), dtype=dtype, N=draw(st.integers(1, 4)),
                I=draw(st.integers(1, 4)), H=draw(st.integers(1, 5)), bias=draw(st.booleans()),
                unbatched=draw(st.booleans()), with_hx=draw(st.booleans()), training=draw(st.booleans()),
                input_dtype=draw(st.sampled_from([dtype] * 4 + ["float32", "float64", "int64"])),
                layout=draw(st.sampled_from(LAYOUTS)), seed=draw(st.integers(0, 2**16)))


def _cell_run(backend: str, p, params, x, h, dh):
    cell = make_cell(p["kind"], p["I"], p["H"], backend=backend, dtype=p["dtype"], bias=p["bias"])
    load(cell, params, p["dtype"])
    cell.train(p["training"])
    lstm = p["kind"] == "lstm"
    hx = None if h is None else ((h, 2 * h) if lstm else h)

    def step():
        state = cell(x, hx)
        res = {"h": state[0], "c": state[1]} if lstm else {"h": state}
        if p["training"]:
            dx, dhx = cell.backward(dh, 0.5 * dh) if lstm else cell.backward(dh)
            res.update(dx=dx, dh=dhx[0] if lstm else dhx)
            res.update(("grad." + k, g) for k, g in cell.grads.items())
        return res
    return _outcome(step)


@BOUNDED
@given(cell_cases())
def test_cpu_cells_agree_with_the_reference_or_raise_the_documented_error(p):
    rng = np.random.default_rng(p["seed"])
    params = random_params(make_cell(p["kind"], p["I"], p["H"], backend="numpy", dtype="float64",
                                     bias=p["bias"]), rng)
    batch = () if p["unbatched"] else (p["N"],)
    x = _laid_out(rng.standard_normal(batch + (p["I"],)).astype(p["input_dtype"]), p["layout"])
    h = rng.standard_normal(batch + (p["H"],)).astype(p["dtype"]) if p["with_hx"] else None
    dh = rng.standard_normal(batch + (p["H"],)).astype(p["dtype"])
    _check(p, TypeError if p["input_dtype"] != p["dtype"] else None,
           lambda backend, contiguous: _cell_run(
               backend, p, params, np.ascontiguousarray(x) if contiguous else x, h, dh),
           lambda: _cell_run("numpy", p | {"dtype": "float64"},
                             {k: _rounded(v, p["dtype"]) for k, v in params.items()},
                             *(_rounded(a, p["dtype"]) for a in (x, h, dh))))
