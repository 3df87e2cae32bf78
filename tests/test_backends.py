"""Every registered backend against the NumPy reference, forward and every gradient.

The reference is the "numpy" backend run in float64 on the same inputs and parameters rounded to the
dtype under test; the tolerance is fastrnn.numerics.vs_reference(backend, dtype). Shapes are the awkward ones
(T=1, N=1, H=33, I != H, 1..3 layers, bidirectional, batch_first, lengths, bias=False, dropout), for
modules, cells and the per-layer kernels, plus the train/eval contract.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastrnn import dispatch
from fastrnn.cells import CELLS
from fastrnn.contract import BackwardRequest
from fastrnn.numerics import vs_reference

from support import (CELL_KINDS, DTYPES, Case, array_module, as_dtype, assert_all_close, check_dtypes,
                     forward_request, load, make_cell, make_module, named, random_inputs, random_params,
                     run_module, step_request, to_backend, to_numpy)

SEED = 1234

CASES = [
    Case(T=1, N=1, I=3, H=5),
    Case(T=5, N=3, I=4, H=33),
    Case(T=4, N=2, I=7, H=6, num_layers=3, bidirectional=True),
    Case(T=5, N=3, I=3, H=4, num_layers=2, batch_first=True, with_hx=False),
    Case(T=6, N=4, I=5, H=6, num_layers=2, bidirectional=True, lengths=(6, 1, 3, 5)),
    Case(T=4, N=3, I=2, H=5, num_layers=2, bias=False, batch_first=True, lengths=(2, 3, 1)),
    Case(T=4, N=3, I=4, H=5, num_layers=3, dropout=0.5),
    Case(T=3, N=2, I=3, H=4, num_layers=2, bidirectional=True, dropout=0.3, lengths=(3, 1)),
]


def reference_results(kind, case, params, data, dtype):
    """The numpy backend in float64 on the dtype-rounded parameters and inputs."""
    m = make_module(kind, case.I, case.H, backend="numpy", dtype="float64", seed=SEED,
                    **case.module_kwargs())
    load(m, {k: as_dtype(v, dtype) for k, v in params.items()}, "float64")
    m.train()
    rounded = {k: (v if k == "lengths" else as_dtype(as_dtype(v, dtype), "float64"))
               for k, v in data.items()}
    return run_module(m, kind, rounded, "numpy", "float64")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_module_matches_reference(backend, kind, case, dtype):
    rng = np.random.default_rng(CASES.index(case) * 10 + CELL_KINDS.index(kind))
    m = make_module(kind, case.I, case.H, backend=backend, dtype=dtype, seed=SEED, **case.module_kwargs())
    params = random_params(m, rng)
    data = random_inputs(kind, case, rng)
    load(m, params, dtype)
    m.train()
    actual = run_module(m, kind, data, backend, dtype)
    check_dtypes(actual, dtype)
    expected = reference_results(kind, case, params, data, dtype)
    assert_all_close(actual, expected, vs_reference(backend, dtype), suite="vs reference modules",
                     backend=backend, dtype=dtype, where=f"{kind} {case.id}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_cell_matches_one_step_reference(backend, kind, dtype, bias):
    """A cell gives the numbers of a one-step, one-layer module, in training and in eval (where a
    backend may take its low-latency step path)."""
    lstm = kind == "lstm"
    N, I, H = 3, 4, 33
    rng = np.random.default_rng(CELL_KINDS.index(kind) + 7 * bias)
    cell = make_cell(kind, I, H, backend=backend, dtype=dtype, bias=bias)
    params = random_params(cell, rng)
    load(cell, params, dtype)
    case = Case(T=1, N=N, I=I, H=H, bias=bias)
    data = random_inputs(kind, case, rng)
    data["dout"] = np.zeros_like(data["dout"])
    expected = reference_results(kind, case, {k + "_l0": v for k, v in params.items()}, data, dtype)
    expected = {k.replace("_l0", ""): (v[0] if k in ("h_n", "c_n", "dh0", "dc0", "dx") else v)
                for k, v in expected.items() if k != "out"}

    cast = lambda a: to_backend(as_dtype(a, dtype), backend)  # noqa: E731
    x = cast(data["x"][0])
    hx = (cast(data["h0"][0]), cast(data["c0"][0])) if lstm else cast(data["h0"][0])
    forward_keys = ("h_n", "c_n") if lstm else ("h_n",)
    tol = vs_reference(backend, dtype)
    where = f"{kind} cell N{N}I{I}H{H}"

    cell.eval()
    step = cell(x, hx)
    inference = dict(zip(forward_keys, step if lstm else (step,)))
    inference = {k: to_numpy(v) for k, v in inference.items()}
    check_dtypes(inference, dtype)
    assert_all_close(inference, {k: expected[k] for k in forward_keys}, tol,
                     suite="vs reference cells", backend=backend, dtype=dtype, where=where + " eval")
    with pytest.raises(RuntimeError, match="training mode"):
        cell.backward(cast(data["dh_n"][0]))

    cell.train()
    step = cell(x, hx)
    actual = dict(zip(forward_keys, step if lstm else (step,)))
    dx, dhx = cell.backward(cast(data["dh_n"][0]), cast(data["dc_n"][0]) if lstm else None)
    actual.update({"dx": dx, "dh0": dhx[0], "dc0": dhx[1]} if lstm else {"dx": dx, "dh0": dhx})
    actual.update({"grad." + k: v for k, v in cell.grads.items()})
    actual = {k: to_numpy(v) for k, v in actual.items()}
    check_dtypes(actual, dtype)
    assert_all_close(actual, expected, tol, suite="vs reference cells", backend=backend, dtype=dtype,
                     where=where)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_layer_kernels_match_reference(backend, cell_name, reverse):
    """The per-layer contract of fastrnn.contract, called directly: lengths (int32, the backend's
    array module), reverse, training and inference, and the optional step."""
    cell = CELLS[cell_name]
    xp = array_module(backend)
    T, N, I, H = 5, 4, 3, 7
    gh = cell.gates * H
    rng = np.random.default_rng(list(CELLS).index(cell_name) + 10 * reverse)
    host = {
        "x": rng.standard_normal((T, N, I)), "h0": rng.standard_normal((N, H)),
        "c0": rng.standard_normal((N, H)) if cell.has_cell_state else None,
        "w_ih": rng.uniform(-0.6, 0.6, (gh, I)), "w_hh": rng.uniform(-0.6, 0.6, (gh, H)),
        "b_ih": rng.uniform(-0.6, 0.6, gh), "b_hh": rng.uniform(-0.6, 0.6, gh),
    }
    lengths = np.array([5, 2, 1, 4], dtype=np.int32)
    dout = rng.standard_normal((T, N, H))
    dh_n = rng.standard_normal((N, H))
    dc_n = rng.standard_normal((N, H)) if cell.has_cell_state else None

    ref = dispatch.kernels(cell, "numpy")
    fwd_r = ref.forward(forward_request(cell, host, lengths=lengths, reverse=reverse, training=True))
    grads_r = ref.backward(BackwardRequest(cell=cell, cache=fwd_r.cache, dout=dout, dh_n=dh_n,
                                           dc_n=dc_n))

    k = dispatch.kernels(cell, backend)
    dev = {name: to_backend(v, backend) for name, v in host.items()}
    lens_dev = xp.asarray(lengths)
    fwd = k.forward(forward_request(cell, dev, lengths=lens_dev, reverse=reverse, training=True))
    grads = k.backward(BackwardRequest(cell=cell, cache=fwd.cache, dout=to_backend(dout, backend),
                                       dh_n=to_backend(dh_n, backend), dc_n=to_backend(dc_n, backend)))
    forward_keys = ("out", "h_n", "c_n")
    actual = {**{k_: named(fwd)[k_] for k_ in forward_keys}, **named(grads)}
    expected = {**{k_: named(fwd_r)[k_] for k_ in forward_keys}, **named(grads_r)}
    actual = {k_: to_numpy(v) for k_, v in actual.items()}
    tol = vs_reference(backend, "float64")
    assert_all_close(actual, expected, tol, suite="vs reference kernels", backend=backend,
                     dtype="float64", where=f"{cell_name} reverse={reverse}")

    inf = k.forward(forward_request(cell, dev, lengths=lens_dev, reverse=reverse, training=False))
    assert inf.cache is None, "an inference forward must keep nothing for backward"
    assert_all_close({k_: to_numpy(named(inf)[k_]) for k_ in forward_keys},
                     {k_: named(fwd_r)[k_] for k_ in forward_keys}, tol,
                     suite="vs reference kernels", backend=backend, dtype="float64",
                     where=f"{cell_name} inference")
    if k.step is not None:
        step = k.step(step_request(cell, dev))
        one = ref.forward(forward_request(cell, {**host, "x": host["x"][:1]}))
        assert_all_close({"h_n": to_numpy(step.h), "c_n": to_numpy(step.c)},
                         {"h_n": one.h_n, "c_n": one.c_n}, tol,
                         suite="vs reference kernels", backend=backend, dtype="float64",
                         where=f"{cell_name} step")


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_lengths_equal_running_each_sequence_alone(backend, kind):
    """A padded batch with lengths gives each sequence the numbers it gets alone (both directions),
    zero output and zero input gradient past its end, and h_n at its own last step."""
    lstm = kind == "lstm"
    case = Case(T=5, N=3, I=3, H=4, num_layers=2, bidirectional=True, lengths=(5, 2, 3))
    rng = np.random.default_rng(42)
    m = make_module(kind, case.I, case.H, backend=backend, dtype="float64", **case.module_kwargs())
    load(m, random_params(m, rng), "float64")
    data = random_inputs(kind, case, rng)
    batch = run_module(m, kind, data, backend, "float64")
    for n, length in enumerate(case.lengths):
        alone = {
            "x": data["x"][:length, n:n + 1], "h0": data["h0"][:, n:n + 1],
            "c0": data["c0"][:, n:n + 1] if lstm else None, "dout": data["dout"][:length, n:n + 1],
            "dh_n": data["dh_n"][:, n:n + 1], "dc_n": data["dc_n"][:, n:n + 1] if lstm else None,
            "lengths": None,
        }
        single = run_module(m, kind, alone, backend, "float64")
        got = {"out": batch["out"][:length, n:n + 1], "h_n": batch["h_n"][:, n:n + 1],
               "dx": batch["dx"][:length, n:n + 1], "dh0": batch["dh0"][:, n:n + 1]}
        if lstm:
            got.update(c_n=batch["c_n"][:, n:n + 1], dc0=batch["dc0"][:, n:n + 1])
        want = {k: single[k] for k in got}
        assert_all_close(got, want, vs_reference(backend, "float64"), suite="lengths vs alone",
                         backend=backend, dtype="float64", where=f"{kind} sequence {n}")
        assert not np.any(batch["out"][length:, n]), f"output of sequence {n} not zero past its end"
        assert not np.any(batch["dx"][length:, n]), f"dx of sequence {n} not zero past its end"


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_eval_forward_keeps_nothing_and_matches_training(backend, kind):
    case = Case(T=4, N=2, I=3, H=5, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(3)
    m = make_module(kind, case.I, case.H, backend=backend, dtype="float64", **case.module_kwargs())
    load(m, random_params(m, rng), "float64")
    data = random_inputs(kind, case, rng)
    dout = to_backend(data["dout"], backend)

    m.eval()
    assert m.training is False
    inference = run_module(m, kind, data, backend, "float64", backward=False)
    with pytest.raises(RuntimeError, match="training mode"):
        m.backward(dout)

    m.train()
    training = run_module(m, kind, data, backend, "float64", backward=False)
    assert_all_close(inference, training, vs_reference(backend, "float64"), suite="eval vs train",
                     backend=backend, dtype="float64", where=kind)
    m.eval()
    run_module(m, kind, data, backend, "float64", backward=False)
    with pytest.raises(RuntimeError, match="training mode"):
        m.backward(dout)


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_backward_overwrites_grads_and_leaves_inputs_alone(backend, kind):
    case = Case(T=4, N=3, I=3, H=4, num_layers=2, lengths=(4, 2, 3))
    rng = np.random.default_rng(8)
    m = make_module(kind, case.I, case.H, backend=backend, dtype="float64", **case.module_kwargs())
    load(m, random_params(m, rng), "float64")
    data = random_inputs(kind, case, rng)
    snapshot = {k: None if v is None else v.copy() for k, v in data.items()}
    first = {k: None if v is None else v.copy() for k, v in run_module(m, kind, data, backend,
                                                                      "float64").items()}
    lstm = kind == "lstm"
    dhn = (to_backend(data["dh_n"], backend), to_backend(data["dc_n"], backend)) if lstm else \
        to_backend(data["dh_n"], backend)
    m.backward(to_backend(data["dout"], backend), dhn)   # a second backward of the same forward
    again = {"grad." + k: to_numpy(v) for k, v in m.grads.items()}
    assert_all_close(again, {k: v for k, v in first.items() if k.startswith("grad.")}, 0.0,
                     suite="backward twice", backend=backend, dtype="float64", where=kind)
    for k, v in data.items():
        assert (v is None and snapshot[k] is None) or np.array_equal(v, snapshot[k]), f"{k} was modified"
    assert sorted(m.grads) == sorted(m.state_dict()), "grads must have the keys of state_dict()"


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_dropout_is_seeded_and_training_only(backend, kind):
    case = Case(T=4, N=3, I=3, H=5, num_layers=3, dropout=0.5)
    rng = np.random.default_rng(9)
    data = random_inputs(kind, case, rng)

    def build(dropout, seed):
        m = make_module(kind, case.I, case.H, backend=backend, dtype="float64", seed=seed,
                        **case.with_(dropout=dropout).module_kwargs())
        load(m, params, "float64")
        return m

    params = random_params(make_module(kind, case.I, case.H, backend="numpy", dtype="float64",
                                       num_layers=3), rng)
    a = run_module(build(0.5, 5), kind, data, backend, "float64")
    b = run_module(build(0.5, 5), kind, data, backend, "float64")
    assert_all_close(a, b, 0.0, suite="dropout same seed", backend=backend, dtype="float64", where=kind)
    c = run_module(build(0.5, 6), kind, data, backend, "float64")
    assert not np.allclose(a["out"], c["out"]), "a different seed must draw different dropout masks"
    plain = build(0.0, 5)
    no_dropout = run_module(plain, kind, data, backend, "float64", backward=False)
    assert not np.allclose(a["out"], no_dropout["out"]), "dropout=0.5 in training changed nothing"
    dropped = build(0.5, 5).eval()
    inference = run_module(dropped, kind, data, backend, "float64", backward=False)
    assert_all_close(inference, no_dropout, vs_reference(backend, "float64"),
                     suite="dropout eval", backend=backend, dtype="float64", where=kind)


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_strided_inputs_and_fortran_ordered_parameters(backend, kind):
    """Views (strided input, transposed states and gradients) and Fortran-ordered parameters, as
    load_state_dict may receive them, give the numbers of their contiguous copies."""
    lstm = kind == "lstm"
    case = Case(T=4, N=3, I=3, H=5, num_layers=2, bidirectional=True, batch_first=True)
    rng = np.random.default_rng(17)
    m = make_module(kind, case.I, case.H, backend=backend, dtype="float64", **case.module_kwargs())
    params = random_params(m, rng)
    load(m, params, "float64")
    data = random_inputs(kind, case, rng)
    expected = run_module(m, kind, data, backend, "float64")

    def strided(a):
        wide = np.repeat(a, 2, axis=-1)      # every value twice along the last axis
        return to_backend(wide, backend)[..., ::2]

    def transposed(a):
        return to_backend(np.ascontiguousarray(a.transpose(1, 0, 2)), backend).transpose(1, 0, 2)

    m.load_state_dict({k: np.asfortranarray(v) for k, v in params.items()})
    x = strided(data["x"])
    hx = (transposed(data["h0"]), strided(data["c0"])) if lstm else transposed(data["h0"])
    assert not x.flags.c_contiguous and not (hx[0] if lstm else hx).flags.c_contiguous
    out, state = m(x, hx)
    dhn = (strided(data["dh_n"]), transposed(data["dc_n"])) if lstm else strided(data["dh_n"])
    dx, dhx = m.backward(transposed(data["dout"]), dhn)
    actual = {"out": out, "h_n": state[0] if lstm else state, "dx": dx, "dh0": dhx[0] if lstm else dhx}
    if lstm:
        actual.update(c_n=state[1], dc0=dhx[1])
    actual.update({"grad." + k: v for k, v in m.grads.items()})
    actual = {k: to_numpy(v) for k, v in actual.items()}
    assert_all_close(actual, expected, vs_reference(backend, "float64"), suite="strided vs contiguous",
                     backend=backend, dtype="float64", where=kind)


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_returned_arrays_are_not_overwritten_by_later_calls(backend, kind):
    """What forward and backward return (outputs, states, gradients, grads) belongs to the caller:
    a later forward/backward on other data must not write into it (no reused workspaces)."""
    case = Case(T=4, N=2, I=3, H=5, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(21)
    m = make_module(kind, case.I, case.H, backend=backend, dtype="float64", **case.module_kwargs())
    load(m, random_params(m, rng), "float64")
    first_data, second_data = random_inputs(kind, case, rng), random_inputs(kind, case, rng)
    first = run_module(m, kind, first_data, backend, "float64")
    kept = {k: v.copy() for k, v in first.items()}
    second = run_module(m, kind, second_data, backend, "float64")
    assert not np.allclose(second["out"], kept["out"]), "different inputs gave the same output"
    assert_all_close(first, kept, 0.0, suite="no aliasing", backend=backend, dtype="float64", where=kind)
    cell = make_cell(kind, case.I, case.H, backend=backend, dtype="float64")
    x1, x2 = (to_backend(rng.standard_normal((2, case.I)), backend) for _ in range(2))
    for mode in ("eval", "train"):
        getattr(cell, mode)()
        h1 = cell(x1)
        h1 = h1[0] if kind == "lstm" else h1
        kept_h1 = to_numpy(h1).copy()
        cell(x2)
        np.testing.assert_array_equal(to_numpy(h1), kept_h1, err_msg=f"{mode} step overwrote h1")
