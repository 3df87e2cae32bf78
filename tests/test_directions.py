"""The two directions of a bidirectional layer side by side (fastrnn/cpu/directions.py): each
direction's whole forward and backward on a core of its own, and the measured choice between that
and one direction after the other.

Every check runs the module's forward and backward both ways on the same inputs and compares them
with each other (float64: only the GEMMs' summation order differs, SAME_BACKEND_PATHS) and with the
float64 NumPy reference (BACKEND_VS_REFERENCE), after making sure the side-by-side call really ran
(its run counter moved) and the other did not. Needs 2 threads: CI has 2 cores.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastrnn import dispatch, threads
from fastrnn.numerics import BACKEND_VS_REFERENCE, SAME_BACKEND_PATHS, relative_error

from support import count_calls, load, make_module, measure_afresh, random_params

pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("numba") is not None,
                                reason=f"numba backend unavailable: {dispatch.unavailable_reason('numba')}")

KINDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


@pytest.fixture
def cpu(monkeypatch):
    """fastrnn.cpu's directions, team and team_choice with two threads and FASTRNN_TEAM=1 (the
    directions side by side wherever they can, each member's loops a team of one)."""
    from fastrnn.cpu import directions, team, team_choice

    if threads.get_num_threads() < 2:
        monkeypatch.setattr(threads, "_threads", 2)
    monkeypatch.setenv("FASTRNN_TEAM", "1")
    assert team.unavailable_reason() is None
    return directions, team, team_choice


def _run(kind, params, x, dout, dtype, backend="numba", lengths=None, num_layers=1, train=True):
    """out, h_n (c_n) and, when train, dx, dh0 (dc0) and every gradient of a bidirectional module."""
    I, H = x.shape[2], params["weight_hh_l0"].shape[1]
    m = make_module(kind, I, H, backend=backend, dtype=dtype, bidirectional=True,
                    num_layers=num_layers)
    load(m, params, dtype)
    m.train(train)
    out, state = m(x.astype(dtype), lengths=lengths)
    got = {"out": out}
    got.update(zip(("h_n", "c_n"), state if kind == "lstm" else (state,)))
    if train:
        dx, dstate = m.backward(dout.astype(dtype))
        got["dx"] = dx
        got.update(zip(("dh0", "dc0"), dstate if kind == "lstm" else (dstate,)))
        got.update({"grad " + k: v for k, v in m.grads.items()})
    return got


def _inputs(kind, T, N, I, H, num_layers=1, seed=0):
    rng = np.random.default_rng(seed)
    probe = make_module(kind, I, H, backend="numpy", dtype="float64", bidirectional=True,
                        num_layers=num_layers)
    params = random_params(probe, rng, scale=0.3)
    return params, rng.uniform(-1, 1, (T, N, I)), rng.standard_normal((T, N, 2 * H))


def _both_ways(cpu, monkeypatch, kind, dtype, *, T=9, N=4, I=13, H=67, num_layers=1, lengths=None,
               train=True, side_by_side=True):
    """(side by side, one after the other on the serial loops, reference), having checked how many
    layers ran side by side."""
    directions, _, _ = cpu
    params, x, dout = _inputs(kind, T, N, I, H, num_layers)
    kw = dict(lengths=lengths, num_layers=num_layers, train=train)
    before = directions.runs
    got = _run(kind, params, x, dout, dtype, **kw)
    calls = num_layers * (2 if train else 1)
    assert directions.runs == before + (calls if side_by_side else 0), \
        "the directions did not run side by side" if side_by_side else "they must not have"
    with monkeypatch.context() as m:
        m.setenv("FASTRNN_TEAM", "0")
        before = directions.runs
        in_turn = _run(kind, params, x, dout, dtype, **kw)
        assert directions.runs == before
    reference = _run(kind, params, x, dout, "float64", backend="numpy", **kw)
    return got, in_turn, reference


def _assert_close(got, in_turn, reference, dtype):
    assert got.keys() == reference.keys()
    bound = BACKEND_VS_REFERENCE[("numba", dtype)]
    for name, want in reference.items():
        assert got[name].dtype == np.dtype(dtype) and got[name].shape == want.shape, name
        assert relative_error(got[name], want) < bound, name
        if dtype == "float64":
            assert relative_error(got[name], in_turn[name]) < SAME_BACKEND_PATHS[dtype], name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
def test_side_by_side_training_matches_one_after_the_other(cpu, monkeypatch, kind, dtype):
    """Every cell, forward and backward; H = 67, I != H."""
    _assert_close(*_both_ways(cpu, monkeypatch, kind, dtype), dtype)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_two_layers_side_by_side(cpu, monkeypatch, kind):
    """The second layer's input is both directions' outputs (2H wide); its gradient flows back
    through both."""
    _assert_close(*_both_ways(cpu, monkeypatch, kind, "float64", num_layers=2), "float64")


@pytest.mark.parametrize("fused", [False, True], ids=["projected", "fused"])
@pytest.mark.parametrize("kind", KINDS)
def test_inference_with_lengths_side_by_side(cpu, monkeypatch, kind, fused):
    """Unsorted lengths with idle rows: each direction visits its own steps of each row; each
    direction's team of one with its projection or with the fused step (team_loops)."""
    from fastrnn.cpu import team_loops

    monkeypatch.setattr(team_loops, "FUSED_STEP_ROWS", 1 if fused else 10 ** 9)
    lengths = np.array([9, 2, 6, 1])
    got, in_turn, reference = _both_ways(cpu, monkeypatch, kind, "float64", lengths=lengths,
                                         train=False)
    _assert_close(got, in_turn, reference, "float64")
    assert not got["out"][2:, 1].any() and not got["out"][1:, 3].any(), "padded steps must be zero"


def test_training_with_short_rows_runs_one_after_the_other(cpu, monkeypatch):
    """The team's loops train full-length batches only: with shorter rows the directions run in
    turn, with the same results."""
    got, in_turn, reference = _both_ways(cpu, monkeypatch, "lstm", "float64",
                                         lengths=np.array([9, 3, 9, 5]), side_by_side=False)
    _assert_close(got, in_turn, reference, "float64")


def test_a_held_team_runs_the_directions_in_turn(cpu, monkeypatch):
    """While another call holds the team, a bidirectional forward runs its directions one after the
    other (on the serial loops) instead of waiting, with the same results."""
    directions, team, _ = cpu
    params, x, dout = _inputs("gru", 6, 3, 8, 64)
    want = _run("gru", params, x, dout, "float64")
    holder = team._team_of(directions.MEMBERS)
    before = directions.runs
    with holder.busy:
        got = _run("gru", params, x, dout, "float64")
    assert directions.runs == before
    for name, value in want.items():
        assert relative_error(got[name], value) < SAME_BACKEND_PATHS["float64"], name


def test_backward_after_a_side_by_side_forward_held_team(cpu):
    """A forward that ran side by side leaves each direction a one-member team layout; its backward
    with the team held runs each direction's serial backward instead, with the same gradients."""
    directions, team, _ = cpu
    params, x, dout = _inputs("lstm", 6, 3, 8, 64)
    m = make_module("lstm", 8, 64, backend="numba", dtype="float64", bidirectional=True)
    load(m, params, "float64")
    out, _ = m(x)
    want = m.backward(dout)[0]
    m(x)
    with team._team_of(directions.MEMBERS).busy:
        got = m.backward(dout)[0]
    assert relative_error(got, want) < SAME_BACKEND_PATHS["float64"]


def test_choice_is_measured_once_cached_and_reported(cpu, monkeypatch, tmp_path):
    """FASTRNN_TEAM=auto: the first bidirectional call of a shape times both ways and caches the
    cost lines under a "both directions" key; later calls reuse them; fastrnn info lists them."""
    _, _, team_choice = cpu
    measure_afresh(monkeypatch, team_choice, tmp_path)
    measured = count_calls(monkeypatch, team_choice, "measure_directions")
    params, x, dout = _inputs("lstm", 5, 4, 8, 64)
    first = _run("lstm", params, x, dout, "float64", train=False)
    second = _run("lstm", params, x, dout, "float64", train=False)
    assert len(measured) == 1
    saved = (tmp_path / team_choice.CACHE_FILE).read_text()
    key = "both directions lstm inference float64 4x8x64"
    assert key in saved and '"side by side"' in saved and '"one after the other"' in saved
    assert any(line.strip().startswith(key) for line in team_choice.report())
    reference = _run("lstm", params, x, dout, "float64", backend="numpy", train=False)
    for got in (first, second):
        for name, want in reference.items():
            assert relative_error(got[name], want) < BACKEND_VS_REFERENCE[("numba", "float64")]


@pytest.mark.parametrize("costs, words", [
    ({"side by side": [1e-4, 1e-5], "one after the other": [1e-3, 4e-5]}, "side by side"),
    ({"side by side": [1e-3, 1e-5], "one after the other": [1e-4, 4e-5]},
     "side by side from T = 32"),
    ({"side by side": [1e-3, 5e-5], "one after the other": [1e-4, 4e-5]}, "one after the other"),
])
def test_info_names_the_lengths_that_run_side_by_side(cpu, costs, words):
    _, _, team_choice = cpu
    paths = team_choice.BOTH_PATHS
    assert team_choice.team_lengths(costs, paths) == words
    wins = {"side by side": lambda T: True, "one after the other": lambda T: False}.get(
        words, lambda T: T >= 32)
    assert all(team_choice.first_wins(costs, T, paths) == wins(T) for T in range(1, 2000))
