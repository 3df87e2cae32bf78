"""fastrnn/cpu/pair.py: the cells' streaming step split over two cores by a partner thread that
spins between steps. The paired steps give the one-core step's numbers, for every cell and dtype."""
from __future__ import annotations

import time

import numpy as np
import pytest

import fastrnn
from fastrnn import dispatch
from fastrnn.numerics import SAME_BACKEND_PATHS, relative_error

pytestmark = [
    pytest.mark.skipif(dispatch.unavailable_reason("numba") is not None,
                       reason=f"numba backend unavailable: {dispatch.unavailable_reason('numba')}"),
    pytest.mark.skipif(fastrnn.get_num_threads() < 2, reason="one thread: steps never pair"),
]

# Sizes whose weights reach pair.MIN_WEIGHTS (the RNN has one gate block: a larger H).
CASES = [("LSTMCell", {}, 128, 96), ("GRUCell", {}, 128, 128),
         ("RNNCell", {"nonlinearity": "tanh"}, 256, 256),
         ("RNNCell", {"nonlinearity": "relu"}, 256, 256)]


def _paired_run(cell, xs, state, deadline_s=120.0):
    """Step through xs repeatedly until a whole pass ran paired (the partner needs a few steps
    to wake, and the first one compiles its kernels); returns the final state of that pass."""
    from fastrnn.cpu import pair

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        before = pair.paired_steps
        s = state
        for x in xs:
            s = cell(x, s)
        if pair.paired_steps - before == len(xs):
            return s
    pytest.fail("the partner never served a whole pass of steps")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("N", [1, 3])
@pytest.mark.parametrize("name, kwargs, H, I", CASES, ids=[c[0] + str(c[1].get("nonlinearity", ""))
                                                           for c in CASES])
def test_paired_steps_match_one_core(name, kwargs, H, I, N, dtype, monkeypatch):
    from fastrnn.cpu import pair

    rng = np.random.default_rng(H + N)
    cell = getattr(fastrnn, name)(I, H, dtype=dtype, backend="numba", **kwargs).eval()
    xs = [rng.uniform(-1, 1, (N, I)).astype(dtype) for _ in range(40)]
    lstm = name == "LSTMCell"
    h0 = rng.uniform(-0.5, 0.5, (N, H)).astype(dtype)
    state = (h0, rng.uniform(-0.5, 0.5, (N, H)).astype(dtype)) if lstm else h0

    paired = _paired_run(cell, xs, state)
    monkeypatch.setattr(pair, "_threads_allow", False)        # the same steps on one core
    before = pair.paired_steps
    alone = state
    for x in xs:
        alone = cell(x, alone)
    assert pair.paired_steps == before
    for got, want in zip(paired if lstm else (paired,), alone if lstm else (alone,)):
        assert got.dtype == np.dtype(dtype)
        assert relative_error(got, want) < SAME_BACKEND_PATHS[dtype]


def test_retire_sends_a_spinning_partner_to_sleep():
    from fastrnn.cpu import pair

    cell = fastrnn.LSTMCell(96, 128, backend="numba").eval()
    x = np.ones((1, 96), np.float32)
    _paired_run(cell, [x] * 10, (np.zeros((1, 128), np.float32), np.zeros((1, 128), np.float32)))
    pair.retire()
    assert pair._partner.board[0] in (pair.ASLEEP, pair.SPINNING)   # SPINNING: woken again since
    time.sleep(10 * pair.WINDOW_S)
    assert pair._partner.board[0] == pair.ASLEEP


def _lstm_step_case(seed, N, H=128, I=96):
    """float32 inputs of one LSTM step large enough to pair, and the one-core step's (h', c'): the
    same jitted entry on a board that is never SPINNING (the path of an unpaired step; a separately
    compiled step_units may contract its FMAs differently, and the tests below compare bits)."""
    from fastrnn.cpu import pair

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (N, I)).astype(np.float32)
    h, c = (rng.uniform(-1, 1, (N, H)).astype(np.float32) for _ in range(2))
    w_ih = rng.uniform(-0.1, 0.1, (4 * H, I)).astype(np.float32)
    w_hh = rng.uniform(-0.1, 0.1, (4 * H, H)).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, 4 * H).astype(np.float32)
    want_h, want_c = np.empty_like(h), np.empty_like(c)
    assert not pair._run(np.zeros(pair.BOARD_SIZE, dtype=np.int64), pair.LSTM, x, h, c, w_ih, w_hh,
                         b, b, want_h, want_c, False)
    return (x, h, c, w_ih, w_hh, b, b), (want_h, want_c)


def test_a_failed_partner_leaves_its_units_to_the_caller():
    """A partner that raised marks its job FAILED; the caller then computes those units too."""
    from fastrnn.cpu import pair

    inputs, (want_h, want_c) = _lstm_step_case(1, N=2)
    board = np.zeros(pair.BOARD_SIZE, dtype=np.int64)
    board[0] = pair.SPINNING
    got_h, got_c = np.full_like(want_h, np.nan), np.full_like(want_c, np.nan)
    import threading

    def fail_when_posted():          # a partner whose job raises: it reports FAILED
        while board[0] != pair.POSTED:
            pass
        board[0] = pair.FAILED

    t = threading.Thread(target=fail_when_posted)
    t.start()
    assert pair._run(board, pair.LSTM, *inputs, got_h, got_c, False)
    t.join()
    assert board[0] == pair.ASLEEP
    np.testing.assert_array_equal(got_h, want_h)
    np.testing.assert_array_equal(got_c, want_c)


def test_a_claimed_partner_leaves_a_second_caller_alone():
    """While one caller holds the partner (CLAIMED or POSTED), another's step runs every unit on its
    own core and writes nothing to the job record."""
    from fastrnn.cpu import pair

    inputs, (want_h, want_c) = _lstm_step_case(2, N=1)
    for held in (pair.CLAIMED, pair.POSTED):
        board = np.zeros(pair.BOARD_SIZE, dtype=np.int64)
        board[0] = held
        got_h, got_c = np.empty_like(want_h), np.empty_like(want_c)
        assert not pair._run(board, pair.LSTM, *inputs, got_h, got_c, False)
        assert board[0] == held and not board[1:].any()
        np.testing.assert_array_equal(got_h, want_h)
        np.testing.assert_array_equal(got_c, want_c)


def test_info_says_when_steps_pair(monkeypatch):
    from fastrnn.cpu import pair

    assert "two cores" in pair.report()
    monkeypatch.setattr(pair, "_threads_allow", False)
    assert pair.report().startswith("cell steps: one core")


def test_steps_from_two_threads_equal_their_one_thread_results():
    """Two threads streaming their own cells at once: whichever claims the partner pairs, the other
    runs alone; every step's numbers are those of the same steps run one thread at a time."""
    import threading

    from fastrnn.cpu import pair

    rng = np.random.default_rng(3)
    cells = [fastrnn.LSTMCell(96, 128, backend="numba").eval() for _ in range(2)]
    xs = [[rng.uniform(-1, 1, (1, 96)).astype(np.float32) for _ in range(300)] for _ in range(2)]
    zero = np.zeros((1, 128), np.float32)

    def run(i, out):
        s = (zero, zero)
        for x in xs[i]:
            s = cells[i](x, s)
        out[i] = s

    alone = {}
    for i in range(2):
        run(i, alone)
    before = pair.paired_steps
    for _ in range(20):            # until some step paired (the partner may be slow to wake)
        together = {}
        threads = [threading.Thread(target=run, args=(i, together)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(2):
            for got, want in zip(together[i], alone[i]):
                assert relative_error(got, want) < SAME_BACKEND_PATHS["float32"]
        if pair.paired_steps > before:
            break
    assert pair.paired_steps > before
