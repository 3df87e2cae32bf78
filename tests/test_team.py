"""The thread team (fastrnn/cpu/team.py, team_loops.py): the inference loops split over the cores.

Each check compares the team's forward with the float64 NumPy reference on the same inputs, within
the numba backend's own bound (BACKEND_VS_REFERENCE), and with the serial loops (FASTRNN_TEAM=0) in
float64, where only the GEMMs' summation order differs (SAME_BACKEND_PATHS; in float32 that
difference compounds over the steps past that bound, so float32 is held to the reference bound
only). Each first makes sure the team really ran (its run counter moved), so that a silent
fallback to the serial path cannot pass for the team. Needs 2 threads: CI has 2 cores.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from fastrnn import dispatch, threads
from fastrnn.cells import CELLS
from fastrnn.numerics import BACKEND_VS_REFERENCE, SAME_BACKEND_PATHS, relative_error

from support import forward_request

pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("numba") is not None,
                                reason=f"numba backend unavailable: {dispatch.unavailable_reason('numba')}")


@pytest.fixture
def team(monkeypatch):
    from fastrnn.cpu import team

    if threads.get_num_threads() < 2:
        monkeypatch.setattr(threads, "_threads", 2)
    reason = team.unavailable_reason()
    assert reason is None, f"the team must be able to run here: {reason}"
    return team


def _inputs(name, T, N, I, H, dtype, seed=0):
    cell = CELLS[name]
    G = cell.gates * H
    rng = np.random.default_rng(seed)

    def u(*shape):
        return rng.uniform(-0.5, 0.5, shape).astype(dtype)

    return dict(x=u(T, N, I), h0=u(N, H), c0=u(N, H) if cell.has_cell_state else None,
                w_ih=u(G, I), w_hh=u(G, H), b_ih=u(G), b_hh=u(G))


def _forward(name, d, lengths=None, reverse=False, backend="numba"):
    k = dispatch.kernels(name, backend)
    r = k.forward(forward_request(CELLS[name], d, lengths=lengths, reverse=reverse, training=False))
    return r.out, r.h_n, r.c_n


def _serial(monkeypatch, name, d, **kw):
    with monkeypatch.context() as m:
        m.setenv("FASTRNN_TEAM", "0")
        return _forward(name, d, **kw)


def _reference(name, d, **kw):
    d64 = {k: (None if v is None else v.astype(np.float64)) for k, v in d.items()}
    return _forward(name, d64, backend="numpy", **kw)


def _assert_same(team_result, serial_result, dtype, reference=None):
    """team == serial (float64: SAME_BACKEND_PATHS), and both within the backend's bound of the
    reference when one is given."""
    for i, (got, want) in enumerate(zip(team_result, serial_result)):
        if want is None:
            assert got is None
            continue
        assert got.dtype == want.dtype and got.shape == want.shape
        if dtype == "float64":
            assert relative_error(got, want) < SAME_BACKEND_PATHS[dtype]
        if reference is not None:
            bound = BACKEND_VS_REFERENCE[("numba", dtype)]
            assert relative_error(got, reference[i]) < bound
            assert relative_error(want, reference[i]) < bound


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("name", list(CELLS))
def test_team_matches_serial_loops(team, monkeypatch, name, reverse, dtype):
    """Every cell, both directions, unsorted lengths with idle rows: the team's out, h_n, c_n are
    the serial loop's. H = 67 splits unevenly (33 + 34 units) and I != H."""
    T, N, I, H = 7, 5, 13, 67
    d = _inputs(name, T, N, I, H, dtype)
    lengths = np.array([7, 2, 5, 1, 7], dtype=np.int64)
    runs = team.runs
    got = _forward(name, d, lengths=lengths, reverse=reverse)
    assert team.runs == runs + 1, "the team did not run this forward"
    _assert_same(got, _serial(monkeypatch, name, d, lengths=lengths, reverse=reverse), dtype,
                 _reference(name, d, lengths=lengths, reverse=reverse))
    out = got[0]
    assert not out[2:, 1].any() and not out[1:, 3].any(), "padded steps must be zero"


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_team_without_lengths_and_thin_hidden_size(team, monkeypatch, name):
    """Full-length batch; H = 64 is the smallest the team takes on 2 threads."""
    d = _inputs(name, 5, 3, 64, 64, "float32", seed=1)
    runs = team.runs
    got = _forward(name, d)
    assert team.runs == runs + 1
    _assert_same(got, _serial(monkeypatch, name, d), "float32", _reference(name, d))


def test_team_is_not_used_where_it_does_not_pay(team):
    assert team.members_for(hidden=256, rows=2) == 0          # the whole-loop kernels are faster
    assert team.members_for(hidden=48, rows=32) == 0          # too few units a thread
    assert team.members_for(hidden=256, rows=32) >= 2


def test_switches_turn_the_team_off(team, monkeypatch):
    monkeypatch.setenv("FASTRNN_TEAM", "0")
    assert "FASTRNN_TEAM=0" in team.unavailable_reason()
    assert team.members_for(hidden=256, rows=32) == 0
    monkeypatch.delenv("FASTRNN_TEAM")
    monkeypatch.setattr(threads, "_threads", 1)
    assert "one thread" in team.unavailable_reason()
    assert "off" in team.report()


def test_busy_team_falls_back_to_the_serial_loop(team, monkeypatch):
    """A call that finds the team held by another call runs the serial loop, with the same result."""
    d = _inputs("lstm", 4, 4, 8, 64, "float64", seed=2)
    serial = _serial(monkeypatch, "lstm", d)
    holder = team._team_of(team.members_for(64, 4))
    runs = team.runs
    with holder.busy:
        got = _forward("lstm", d)
    assert team.runs == runs, "the held team must not have run"
    _assert_same(got, serial, "float64")


def test_concurrent_callers_get_their_own_results(team, monkeypatch):
    """Eval-mode forwards from several threads at once: each gets its own input's result, whether
    it won the team or fell back."""
    inputs = [_inputs("gru", 6, 8, 16, 96, "float32", seed=s) for s in range(4)]
    expected = [_serial(monkeypatch, "gru", d) for d in inputs]
    results = [None] * len(inputs)

    def work(i):
        for _ in range(5):
            results[i] = _forward("gru", inputs[i])

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for got, want, d in zip(results, expected, inputs):
        _assert_same(got, want, "float32", _reference("gru", d))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_into_strided_views(team, dtype):
    """The jitted GEMM on column slices of wider arrays (row stride != width), with beta 0 and 1."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((5, 9)).astype(dtype)
    b_wide = rng.standard_normal((9, 20)).astype(dtype)
    c_wide = rng.standard_normal((5, 30)).astype(dtype)
    fn = team.gemm_address(dtype)
    before = c_wide.copy()
    team.gemm_into(fn, a, b_wide[:, 4:11], c_wide[:, 10:17], 1.0)
    want = before.copy()
    want[:, 10:17] += a @ b_wide[:, 4:11]
    assert relative_error(c_wide, want) < SAME_BACKEND_PATHS[dtype]
    team.gemm_into(fn, a, b_wide[:, 4:11], c_wide[:, 10:17], 0.0)
    want[:, 10:17] = a @ b_wide[:, 4:11]
    assert relative_error(c_wide, want) < SAME_BACKEND_PATHS[dtype]
    assert np.array_equal(c_wide[:, :10], before[:, :10]), "columns outside the view are untouched"


def test_blas_thread_count_is_restored(team):
    """A team call sets NumPy's OpenBLAS to one thread while it runs and puts it back after."""
    blas = team._numpy_blas()
    before = blas._get()
    d = _inputs("rnn_tanh", 3, 4, 8, 64, "float32")
    runs = team.runs
    _forward("rnn_tanh", d)
    assert team.runs == runs + 1
    assert blas._get() == before
