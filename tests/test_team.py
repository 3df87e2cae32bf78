"""The thread team (fastrnn/cpu/team.py, team_loops.py, team_backward.py, team_choice.py): the
inference loops and the LSTM/RNN training loops split over the cores, and the measured choice of
team or serial loops.

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
from fastrnn.contract import BackwardRequest
from fastrnn.numerics import BACKEND_VS_REFERENCE, SAME_BACKEND_PATHS, relative_error

from support import count_calls, forward_request, measure_afresh

pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("numba") is not None,
                                reason=f"numba backend unavailable: {dispatch.unavailable_reason('numba')}")


def _record_fused_step(monkeypatch) -> list:
    """The answers team_loops.fused_step gives from now on in this test, in order."""
    from fastrnn.cpu import team_loops

    answers = []
    real = team_loops.fused_step

    def recording(*args):
        answers.append(real(*args))
        return answers[-1]

    monkeypatch.setattr(team_loops, "fused_step", recording)
    return answers


@pytest.fixture(params=["projected", "fused"])
def step_way(request, monkeypatch):
    """Run the team's inference forwards one way for the test: the whole-sequence projection, or
    the fused step at every batch size; returns the way and the list of fused_step's answers."""
    from fastrnn.cpu import team_loops

    monkeypatch.setattr(team_loops, "FUSED_STEP_ROWS", 1 if request.param == "fused" else 10 ** 9)
    return request.param, _record_fused_step(monkeypatch)


def _check_step_way(step_way):
    """The inference forwards ran the way step_way asked."""
    way, answers = step_way
    assert answers, "no team forward ran"
    assert set(answers) == {way == "fused"}


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


def _serial(monkeypatch, name, d, run=None, **kw):
    """run (default _forward; _train for training) on the serial loops."""
    with monkeypatch.context() as m:
        m.setenv("FASTRNN_TEAM", "0")
        return (run or _forward)(name, d, **kw)


def _reference(name, d, run=None, **kw):
    """run (default _forward) on the float64 NumPy reference."""
    d64 = {k: (None if v is None else v.astype(np.float64)) for k, v in d.items()}
    return (run or _forward)(name, d64, backend="numpy", **kw)


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
def test_team_matches_serial_loops(team, monkeypatch, step_way, name, reverse, dtype):
    """Every cell, both directions, unsorted lengths with idle rows, both ways of the step: the
    team's out, h_n, c_n are the serial loop's. H = 67 splits unevenly (33 + 34 units) and
    I != H."""
    T, N, I, H = 7, 5, 13, 67
    d = _inputs(name, T, N, I, H, dtype)
    lengths = np.array([7, 2, 5, 1, 7], dtype=np.int64)
    runs = team.runs
    got = _forward(name, d, lengths=lengths, reverse=reverse)
    assert team.runs == runs + 1, "the team did not run this forward"
    _check_step_way(step_way)
    _assert_same(got, _serial(monkeypatch, name, d, lengths=lengths, reverse=reverse), dtype,
                 _reference(name, d, lengths=lengths, reverse=reverse))
    out = got[0]
    assert not out[2:, 1].any() and not out[1:, 3].any(), "padded steps must be zero"


@pytest.mark.parametrize("name", list(CELLS))
def test_inference_takes_the_fused_step_from_its_batch_size(team, monkeypatch, name):
    """At FUSED_STEP_ROWS rows and more (unpatched) an inference forward takes the fused step,
    whole 6-row tiles and a partial one per member (17 rows), in reverse with lengths; a training
    forward of the same batch keeps the projection."""
    from fastrnn.cpu import team_loops

    N = team_loops.FUSED_STEP_ROWS + 1
    answers = _record_fused_step(monkeypatch)
    d = _inputs(name, 6, N, 13, 67, "float64", seed=5)
    lengths = np.arange(N) % 6 + 1
    got = _forward(name, d, lengths=lengths, reverse=True)
    assert answers == [True], "the inference forward did not fuse"
    _assert_same(got, _serial(monkeypatch, name, d, lengths=lengths, reverse=True), "float64",
                 _reference(name, d, lengths=lengths, reverse=True))
    _train(name, d)
    assert answers[1:] == [False], "a training forward must keep the projection"


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_team_without_lengths_and_thin_hidden_size(team, monkeypatch, name):
    """Full-length batch; H = 64 is the smallest the team takes on 2 threads."""
    d = _inputs(name, 5, 3, 64, 64, "float32", seed=1)
    runs = team.runs
    got = _forward(name, d)
    assert team.runs == runs + 1
    _assert_same(got, _serial(monkeypatch, name, d), "float32", _reference(name, d))


def test_team_is_not_used_where_it_does_not_pay(team):
    assert team.members_for(hidden=48, rows=32) == 0          # too few units a thread
    assert team.members_for(hidden=256, rows=1) >= 2          # any batch (the measured choice
    #                                                           then picks team or serial)
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
    a_t = np.ascontiguousarray(a.T)                      # (9, 5): the transposed-A form
    team.gemm_tn_into(fn, a_t, b_wide[:, 4:11], c_wide[:, 10:17], 0.0)
    assert relative_error(c_wide[:, 10:17], a @ b_wide[:, 4:11]) < SAME_BACKEND_PATHS[dtype]
    b_t = np.ascontiguousarray(b_wide[:, 4:11].T)       # (7, 9): the transposed-B form
    team.gemm_nt_into(fn, a, b_t, c_wide[:, 10:17], 0.0)
    assert relative_error(c_wide[:, 10:17], a @ b_wide[:, 4:11]) < SAME_BACKEND_PATHS[dtype]


def test_blas_thread_count_is_restored(team):
    """A team call sets NumPy's OpenBLAS to one thread while it runs and puts it back after."""
    blas = team._numpy_blas()
    before = blas._get()
    d = _inputs("rnn_tanh", 3, 4, 8, 64, "float32")
    runs = team.runs
    _forward("rnn_tanh", d)
    assert team.runs == runs + 1
    assert blas._get() == before


# -- training: forward and backward on the team ---------------------------------------------------

def _train(name, d, lengths=None, reverse=False, backend="numba", seed=7):
    """Forward in training mode and backward with fixed random output gradients: every output and
    gradient, in contract order (None where the cell has none)."""
    cell = CELLS[name]
    k = dispatch.kernels(name, backend)
    r = k.forward(forward_request(cell, d, lengths=lengths, reverse=reverse, training=True))
    rng = np.random.default_rng(seed)
    T, N, H = r.out.shape

    def u(*shape):
        return rng.uniform(-0.5, 0.5, shape).astype(d["x"].dtype)

    dout, dh = u(T, N, H), u(N, H)
    dc = u(N, H) if cell.has_cell_state else None
    if lengths is not None:
        dout[np.arange(T)[:, None] >= lengths[None, :]] = 0
    b = k.backward(BackwardRequest(cell=cell, cache=r.cache, dout=dout, dh_n=dh, dc_n=dc))
    return [r.out, r.h_n, r.c_n, b.dx, b.dh0, b.dc0, b.dw_ih, b.dw_hh, b.db_ih, b.db_hh]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("name", list(CELLS))
def test_team_training_matches_serial_loops(team, monkeypatch, name, reverse, dtype):
    """Forward and backward both on the team (two team runs): every output and gradient equals the
    serial loops' and the reference's. H = 67 splits unevenly and I != H."""
    d = _inputs(name, 6, 5, 13, 67, dtype, seed=3)
    runs = team.runs
    got = _train(name, d, reverse=reverse)
    assert team.runs == runs + 2, "forward and backward must both run on the team"
    _assert_same(got, _serial(monkeypatch, name, d, run=_train, reverse=reverse), dtype,
                 _reference(name, d, run=_train, reverse=reverse))


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("name", list(CELLS))
def test_team_training_keeps_out_as_the_states_its_steps_started_from(team, name, reverse):
    """A team training forward writes no copy of h_prev: its cache's h_prev is out shifted by a
    step beside h0 (one buffer), and it says so (out_in_cache)."""
    d = _inputs(name, 6, 4, 13, 64, "float64", seed=9)
    runs = team.runs
    r = dispatch.kernels(name, "numba").forward(
        forward_request(CELLS[name], d, reverse=reverse, training=True))
    assert team.runs == runs + 1
    assert r.out_in_cache and np.shares_memory(r.out, r.cache.h_prev)
    want = (np.concatenate([r.out[1:], d["h0"][None]]) if reverse
            else np.concatenate([d["h0"][None], r.out[:-1]]))
    np.testing.assert_array_equal(r.cache.h_prev, want)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_module_out_changed_before_backward_leaves_the_team_gradients(team, kind):
    """fastrnn.LSTM / GRU in training mode on the team: the out the caller gets is its own (a
    change to it before backward changes nothing), although the team's cache holds its out."""
    import fastrnn as fr

    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (6, 4, 13))
    dout = rng.uniform(-1, 1, (6, 4, 64))

    m = {"lstm": fr.LSTM, "gru": fr.GRU}[kind](13, 64, num_layers=2, dtype="float64")

    def run(change_out):
        runs = team.runs
        out, _ = m(x)
        assert team.runs == runs + 2, "both layers' forwards must run on the team"
        if change_out:
            out[...] = 7.0
        dx, _ = m.backward(dout)
        return [dx] + [m.grads[k] for k in sorted(m.grads)]

    for got, want in zip(run(True), run(False)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("N", [1, 2])
@pytest.mark.parametrize("name", list(CELLS))
def test_team_matches_whole_loop_kernels_at_one_and_two_rows(team, monkeypatch, name, N):
    """Batches of one and two rows (the serial side: the whole-loop small-batch kernels; the team:
    packed.py's remainder tiles of one and two rows), inference and training, float64."""
    d = _inputs(name, 5, N, 9, 66, "float64", seed=11 + N)
    runs = team.runs
    got = _forward(name, d)
    assert team.runs == runs + 1, "the team did not run this forward"
    _assert_same(got, _serial(monkeypatch, name, d), "float64", _reference(name, d))
    got = _train(name, d)
    assert team.runs == runs + 3, "forward and backward must both run on the team"
    _assert_same(got, _serial(monkeypatch, name, d, run=_train), "float64",
                 _reference(name, d, run=_train))


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_team_training_without_bias(team, monkeypatch, name):
    d = _inputs(name, 4, 3, 8, 64, "float64", seed=5)
    d["b_ih"] = d["b_hh"] = None
    runs = team.runs
    got = _train(name, d)
    assert team.runs == runs + 2
    assert got[-1] is None and got[-2] is None
    _assert_same(got, _serial(monkeypatch, name, d, run=_train), "float64",
                 _reference(name, d, run=_train))


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_training_with_short_rows_runs_serially(team, monkeypatch, name):
    """A batch with a row shorter than the sequence runs the serial loops (the team's training
    loops assume every row runs every step)."""
    d = _inputs(name, 5, 4, 8, 64, "float64", seed=6)
    lengths = np.array([5, 3, 5, 5], dtype=np.int32)
    runs = team.runs
    got = _train(name, d, lengths=lengths)
    assert team.runs == runs
    _assert_same(got, _reference(name, d, run=_train, lengths=lengths), "float64")


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_busy_team_at_backward_falls_back_to_the_serial_loop(team, name):
    """A forward ran on the team; its backward finds the team held by another call and runs the
    serial loop on the gates put back in the cells' order: same gradients."""
    cell = CELLS[name]
    d = _inputs(name, 5, 4, 8, 64, "float64", seed=8)
    k = dispatch.kernels(name, "numba")
    r = k.forward(forward_request(cell, d, training=True))
    assert r.cache.team is not None
    rng = np.random.default_rng(1)
    dout = rng.standard_normal((5, 4, 64))
    dh = rng.standard_normal((4, 64))
    dc = rng.standard_normal((4, 64)) if cell.has_cell_state else None
    want = k.backward(BackwardRequest(cell=cell, cache=r.cache, dout=dout, dh_n=dh, dc_n=dc))
    holder = team._team_of(r.cache.team.members)
    runs = team.runs
    with holder.busy:
        got = k.backward(BackwardRequest(cell=cell, cache=r.cache, dout=dout, dh_n=dh, dc_n=dc))
    assert team.runs == runs, "the held team must not have run"
    for field in ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        if getattr(want, field) is None:
            assert getattr(got, field) is None
            continue
        error = relative_error(getattr(got, field), getattr(want, field))
        assert error < SAME_BACKEND_PATHS["float64"], field


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
def test_team_backward_reads_the_weights_as_the_serial_one_does(team, name):
    """A contract caller changes W_ih and W_hh in place between a team forward and its backward:
    the team backward reads the weights as they are then, as the serial backward does (the
    modules' tapes hold copies, and torch's saved weights refuse such a change)."""
    cell = CELLS[name]
    d = _inputs(name, 5, 4, 8, 64, "float64", seed=12)
    k = dispatch.kernels(name, "numba")
    r = k.forward(forward_request(cell, d, training=True))
    assert r.cache.team is not None
    d["w_ih"] *= 1.5
    d["w_hh"] *= 0.5
    rng = np.random.default_rng(2)
    dout, dh = rng.standard_normal((5, 4, 64)), rng.standard_normal((4, 64))
    dc = rng.standard_normal((4, 64)) if cell.has_cell_state else None
    runs = team.runs
    got = k.backward(BackwardRequest(cell=cell, cache=r.cache, dout=dout, dh_n=dh, dc_n=dc))
    assert team.runs == runs + 1, "the backward did not run on the team"
    with team._team_of(r.cache.team.members).busy:
        want = k.backward(BackwardRequest(cell=cell, cache=r.cache, dout=dout, dh_n=dh, dc_n=dc))
    assert team.runs == runs + 1, "the held team must not have run"
    for field in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih"):
        error = relative_error(getattr(got, field), getattr(want, field))
        assert error < SAME_BACKEND_PATHS["float64"], field


# -- the measured choice: team or serial ----------------------------------------------------------

@pytest.fixture
def auto_choice(team, monkeypatch, tmp_path):
    from fastrnn.cpu import team_choice

    measure_afresh(monkeypatch, team_choice, tmp_path)
    return team_choice


def test_choice_is_measured_once_and_cached_on_disk(auto_choice, monkeypatch, tmp_path):
    """The first call of a shape measures both paths and writes the choice; later calls (and a new
    process, which reads the file) use it; the result is the same whichever path was chosen."""
    measured = count_calls(monkeypatch, auto_choice, "measure")
    d = _inputs("lstm", 4, 4, 8, 64, "float64", seed=9)
    first = _train("lstm", d)
    second = _train("lstm", d)
    assert len(measured) == 1, "one training shape, one measurement"
    saved = (tmp_path / auto_choice.CACHE_FILE).read_text()
    assert "lstm training float64 4x8x64" in saved and '"team"' in saved and '"serial"' in saved
    monkeypatch.setattr(auto_choice, "_loaded_for", None)     # as a new process: from the file
    monkeypatch.setattr(auto_choice, "_costs", {})
    _train("lstm", d)
    assert len(measured) == 1
    reference = _reference("lstm", d, run=_train)
    for got in (first, second):
        _assert_same(got, reference, "float64")


def test_choice_is_obeyed_at_each_sequence_length(auto_choice, team, monkeypatch):
    """Cached costs where the team pays more per call but less per step: short sequences run
    serially, long ones on the team."""
    d = {T: _inputs("rnn_tanh", T, 4, 8, 64, "float64", seed=10) for T in (3, 40)}
    key = auto_choice.shape_key(auto_choice.RNN, False, False, 4, 8, 64, "float64")
    costs = {"team": [1e-3, 1e-5], "serial": [1e-4, 4e-5]}    # crossover at 32 steps (MARGIN)
    assert auto_choice.team_lengths(costs) == "team from T = 32"
    assert all(auto_choice.team_wins(costs, T) == (T >= 32) for T in range(1, 200))
    monkeypatch.setitem(auto_choice._costs, key, costs)
    monkeypatch.setattr(auto_choice, "_loaded_for", auto_choice._section())
    for T, delta in ((3, 0), (40, 1)):
        runs = team.runs
        _forward("rnn_tanh", d[T])
        assert team.runs == runs + delta, T


@pytest.mark.parametrize("costs, words, wins", [
    ({"team": [1e-4, 5e-5], "serial": [1e-3, 4e-5]}, "team up to T = 77",   # cheaper call, dearer step
     lambda T: T <= 77),
    ({"team": [1e-4, 1e-5], "serial": [1e-3, 4e-5]}, "team", lambda T: True),
    ({"team": [1e-3, 5e-5], "serial": [1e-4, 4e-5]}, "serial", lambda T: False),
    ({"team": [1e-3, 1e-5], "serial": [1e-4, 4e-5]}, "team from T = 32", lambda T: T >= 32),
])
def test_info_names_the_lengths_the_team_takes(auto_choice, costs, words, wins):
    """fastrnn info's verdict per shape agrees with the choice every call makes (team_wins), on
    either side of the crossing."""
    assert auto_choice.team_lengths(costs) == words
    assert all(auto_choice.team_wins(costs, T) == wins(T) for T in range(1, 5000))


def test_unknown_team_setting_is_an_error(auto_choice, monkeypatch):
    monkeypatch.setenv("FASTRNN_TEAM", "yes")
    d = _inputs("lstm", 3, 4, 8, 64, "float32")
    with pytest.raises(ValueError, match="FASTRNN_TEAM='yes'.*auto.*1.*0"):
        _forward("lstm", d)


def test_info_reports_the_choices(auto_choice, team):
    auto_choice._costs["lstm inference float32 32x256x256"] = {"team": [1e-3, 1e-4],
                                                               "serial": [1e-4, 2e-4]}
    auto_choice.gemm.save_cache_section(auto_choice.CACHE_FILE, auto_choice._section(),
                                        auto_choice._costs)
    text = team.report()
    assert "measured per shape on first use" in text
    assert "lstm inference float32 32x256x256" in text and "team from T = 10" in text
    from fastrnn.cpu import team_loops

    assert f"inference of {team_loops.FUSED_STEP_ROWS} rows or more" in text


def test_the_team_holds_no_arrays_between_calls(team):
    """After a call returns, nothing of it stays referenced by the team's sleeping workers."""
    import gc
    import weakref

    d = _inputs("lstm", 5, 4, 8, 64, "float64", seed=11)
    k = dispatch.kernels("lstm", "numba")
    r = k.forward(forward_request(CELLS["lstm"], d, training=True))
    gates = weakref.ref(r.cache.gates)
    k.backward(BackwardRequest(cell=CELLS["lstm"], cache=r.cache, dout=np.ones((5, 4, 64)),
                               dh_n=np.zeros((4, 64)), dc_n=np.zeros((4, 64))))
    del r
    gc.collect()
    assert gates() is None, "a team worker still holds the training cache"
