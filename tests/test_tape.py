"""The training tape (what a forward leaves for backward) is owned by it and by the thread that made it
(issue 13 items 1 and 2): changing the caller's input or the parameters between forward and backward,
or another thread training the same module, never changes what a backward returns. Also: modules
survive copy.deepcopy and pickle, eval-mode forwards and cell steps from many threads equal one
thread's bit for bit, and calling a module goes through its (possibly overridden) forward.
"""
from __future__ import annotations

import copy
import pickle
import sys
import threading

import numpy as np
import pytest

import fastrnn as fr

from support import (CELL_KINDS, Case, load, make_cell, make_module, random_inputs, random_params,
                     run_module, to_backend, to_numpy)

DTYPE = "float64"


@pytest.fixture
def fast_switching():
    """Make the interpreter switch threads as often as it can, so that interleavings happen."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _assert_same(actual: dict, expected: dict):
    assert actual.keys() == expected.keys()
    for key in expected:
        if expected[key] is None:
            assert actual[key] is None, key
        else:
            np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def _module_and_data(kind, backend, case, seed=0):
    rng = np.random.default_rng(seed)
    m = make_module(kind, case.I, case.H, backend=backend, dtype=DTYPE, **case.module_kwargs())
    load(m, random_params(m, rng), DTYPE)
    return m, random_inputs(kind, case, rng)


def _backward(m, kind, data, backend):
    """backward() of the last training forward, every result as NumPy arrays."""
    cast = lambda a: to_backend(None if a is None else np.asarray(a, dtype=DTYPE), backend)  # noqa: E731
    dhn = (cast(data["dh_n"]), cast(data["dc_n"])) if kind == "lstm" else cast(data["dh_n"])
    dx, dhx = m.backward(cast(data["dout"]), dhn)
    res = {"dx": to_numpy(dx)}
    res.update((k, to_numpy(v)) for k, v in (zip(("dh0", "dc0"), dhx) if kind == "lstm"
                                              else [("dh0", dhx)]))
    res.update(("grad." + k, to_numpy(v)) for k, v in m.grads.items())
    return res


# ----------------------------------------------------------------------- item 1: the tape owns its data

LAYOUTS = {"time-major": Case(), "batch-first": Case(batch_first=True),
           "two-layers-bi": Case(num_layers=2, bidirectional=True), "lengths": Case(lengths=(4, 2, 3))}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_changing_the_input_after_forward_does_not_change_backward(backend, kind, layout):
    case = LAYOUTS[layout]
    m, data = _module_and_data(kind, backend, case)
    expected = run_module(m, kind, data, backend, DTYPE)
    x = to_backend(data["x"], backend)   # C-contiguous float64: the module can use it without a copy
    h0 = to_backend(data["h0"], backend)
    hx = (h0, to_backend(data["c0"], backend)) if kind == "lstm" else h0
    lengths = None if data["lengths"] is None else data["lengths"].tolist()   # any device takes a list
    out, h_n = m(x, hx, lengths=lengths)
    for a in (x, h0, out, h_n[0] if kind == "lstm" else h_n):   # the caller reuses its buffers
        a[...] = 0
    _assert_same(_backward(m, kind, data, backend), {k: v for k, v in expected.items()
                                                     if k not in ("out", "h_n", "c_n")})


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_updating_parameters_in_place_after_forward_does_not_change_backward(backend, kind):
    m, data = _module_and_data(kind, backend, Case(num_layers=2))
    expected = run_module(m, kind, data, backend, DTYPE)
    run_module(m, kind, data, backend, DTYPE, backward=False)
    for _, p in m.named_parameters():   # an optimizer step between forward and backward
        p += 0.5
    _assert_same(_backward(m, kind, data, backend), {k: v for k, v in expected.items()
                                                     if k not in ("out", "h_n", "c_n")})


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_cell_backward_uses_the_values_of_its_forward(backend, kind):
    rng = np.random.default_rng(1)
    cell = make_cell(kind, 3, 4, backend=backend, dtype=DTYPE)
    load(cell, random_params(cell, rng), DTYPE)
    x = to_backend(rng.standard_normal((2, 3)), backend)
    dh = to_backend(rng.standard_normal((2, 4)), backend)

    def step_and_back(change):
        cell(x.copy() if not change else x)
        if change:
            x[...] = 0
            for _, p in cell.named_parameters():
                p *= 2
        dx, _ = cell.backward(dh)
        return to_numpy(dx), {k: to_numpy(v) for k, v in cell.grads.items()}

    clean_dx, clean_grads = step_and_back(False)
    params = cell.state_dict()
    dx, grads = step_and_back(True)
    cell.load_state_dict(params)
    np.testing.assert_array_equal(dx, clean_dx)
    _assert_same(grads, clean_grads)


# --------------------------------------------------------------------- item 2: one tape per thread

def _train_from_threads(m, jobs, threads=4, rounds=150):
    """Each thread repeatedly runs forward + backward of its own job on the shared module m;
    returns the (job, round, what) of every result that differed from the job's own expected one."""
    wrong, errors = [], []

    def worker(job_id):
        step, expected = jobs[job_id]
        try:
            for r in range(rounds):
                got = step()
                for key, value in expected.items():
                    if not np.array_equal(got[key], value):
                        wrong.append((job_id, r, key))
        except Exception as exc:   # a backward that found no (or another thread's) tape
            errors.append(f"{type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=worker, args=(j % len(jobs),)) for j in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors[:3]
    return wrong


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_one_module_trained_from_several_threads(cpu_backend, kind, fast_switching):
    case = Case(T=3, N=2, I=3, H=4)
    m, _ = _module_and_data(kind, cpu_backend, case)
    jobs = []
    for seed in range(4):   # each thread its own input, so a borrowed tape gives a different answer
        data = random_inputs(kind, case, np.random.default_rng(100 + seed))
        step = lambda data=data: run_module(m, kind, data, cpu_backend, DTYPE)  # noqa: E731
        jobs.append((step, step()))
    assert not _train_from_threads(m, jobs)


@pytest.mark.parametrize("kind", ["lstm", "rnn_tanh"])
def test_one_cell_trained_from_several_threads(cpu_backend, kind, fast_switching):
    cell = make_cell(kind, 3, 4, backend=cpu_backend, dtype=DTYPE, seed=0)
    jobs = []
    for seed in range(4):
        rng = np.random.default_rng(200 + seed)
        x, dh = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))

        def step(x=x, dh=dh):
            cell(x)
            dx, _ = cell.backward(dh)
            return {"dx": dx} | {"grad." + k: v for k, v in cell.grads.items()}
        jobs.append((step, step()))
    assert not _train_from_threads(cell, jobs)


def test_a_thread_without_a_forward_has_no_tape(cpu_backend):
    m = fr.GRU(3, 4, dtype=DTYPE, backend=cpu_backend)
    out, _ = m(np.ones((2, 1, 3)))
    failures = []

    def other():
        try:
            m.backward(np.ones_like(out))
        except RuntimeError as exc:
            failures.append(str(exc))
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert failures and failures[0].startswith("backward() needs a forward pass made in training mode")
    m.backward(np.ones_like(out))   # this thread's tape is still there


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_eval_forward_and_cell_streaming_from_many_threads_equal_one_thread(cpu_backend, kind,
                                                                           fast_switching):
    rng = np.random.default_rng(3)
    m = make_module(kind, 3, 4, backend=cpu_backend, dtype="float32", seed=0).eval()
    cell = make_cell(kind, 3, 4, backend=cpu_backend, dtype="float32", seed=0).eval()
    xs = [rng.standard_normal((5, 2, 3)).astype(np.float32) for _ in range(4)]

    def stream(x):
        h = np.zeros((2, 4), np.float32)
        state = (h, h.copy()) if kind == "lstm" else h
        outs = []
        for t in range(x.shape[0]):
            state = cell(x[t], state)
            outs.append(np.array(state[0] if kind == "lstm" else state))
        return np.stack(outs)

    def run(x):
        return to_numpy(m(x)[0]), stream(x)

    expected = [run(x) for x in xs]
    results = [[] for _ in xs]

    def worker(i):
        for _ in range(40):
            results[i].append(run(xs[i]))
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    for i, runs in enumerate(results):
        assert len(runs) == 40
        for out, streamed in runs:
            np.testing.assert_array_equal(out, expected[i][0])
            np.testing.assert_array_equal(streamed, expected[i][1])


# ------------------------------------------------------------------------------ copies of a module

@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))],
                         ids=["deepcopy", "pickle"])
@pytest.mark.parametrize("cls", [fr.LSTM, fr.GRUCell])
def test_copies_keep_parameters_and_gradients_and_train_on_their_own(cpu_backend, cls, clone):
    m = cls(3, 4, dtype=DTYPE, backend=cpu_backend, seed=0)
    x = np.random.default_rng(4).standard_normal((2, 1, 3) if cls is fr.LSTM else (1, 3))
    first = m(x)
    out = first[0] if cls is fr.LSTM else first
    m.backward(np.ones_like(out))
    c = clone(m)
    _assert_same(c.state_dict(), m.state_dict())
    _assert_same(c.grads, m.grads)
    with pytest.raises(RuntimeError, match="backward\\(\\) needs a forward pass"):
        c.backward(np.ones_like(out))   # a copy has no forward of its own yet
    c(x)
    dx_copy, _ = c.backward(np.ones_like(out))
    dx, _ = m.backward(np.ones_like(out))
    np.testing.assert_array_equal(dx_copy, dx)


# ----------------------------------------------------------------------------------- __call__

def test_calling_a_module_goes_through_an_overridden_forward():
    calls = []

    class Logged(fr.GRU):
        def forward(self, x, hx=None, lengths=None):
            calls.append(x.shape)
            return super().forward(x, hx, lengths)

    class LoggedCell(fr.LSTMCell):
        def forward(self, x, hx=None):
            calls.append(x.shape)
            return super().forward(x, hx)

    Logged(3, 4, backend="numpy")(np.ones((2, 1, 3), np.float32))
    LoggedCell(3, 4, backend="numpy").eval()(np.ones((1, 3), np.float32))
    assert calls == [(2, 1, 3), (1, 3)]
    # An eval step with a ready state, which the cells' own __call__ streams without forward():
    # the subclass's forward still runs, and a second subclass level keeps it.
    state = (np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32))
    LoggedCell(3, 4, backend="numba").eval()(np.ones((2, 3), np.float32), state)
    deeper = type("Deeper", (LoggedCell,), {})(3, 4, backend="numba").eval()
    deeper(np.ones((5, 3), np.float32), (np.zeros((5, 4), np.float32),) * 2)
    assert calls[2:] == [(2, 3), (5, 3)]
