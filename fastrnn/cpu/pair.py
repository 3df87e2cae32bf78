"""The cells' streaming step on two cores: a partner thread that stays hot between steps.

A *Cell step at batch 1 reads all of W_ih and W_hh once (LSTM H = 128: 512 KiB of float32, the
whole L2 of a Zen 2 core) and little else, so one core runs it at its L2's bandwidth: ~10 us,
two thirds of a streaming LSTMCell step. Split by hidden units over two cores, each reads half the
weights from its own L2.

The split pays only if the second core is already running: waking a sleeping thread costs tens
of microseconds, more than the step. So the partner spins for a short window (WINDOW_S) after each
step it served, waiting for the next one, and then sleeps on an Event. A step that finds it asleep
runs alone on the caller's core, and wakes it only when the step before came less than WINDOW_S
earlier: a burst of steps runs paired from its third step on, and its partner's core is free again
WINDOW_S after the last one, while steps further apart than that (a real-time stream of frames)
never wake it. Measured on 2 Zen 2 cores (KVM), LSTMCell eval steps at N = 1, one core against
two in alternating blocks of one process: H = 128 17.1 -> 15.6 us (2-9% over runs), H = 256 41.9
-> 30.6 us; the jitted step alone 10.2 -> 7.0 and 34 -> 21 us (the rest is Python's).

The spin is a plain load loop, without the CPU's pause hint: under KVM, pause-loop exiting takes a
vCPU that spins on pause off its core, and the paired LSTMCell step then took 20.5 us instead of
16.3. It gives the core away with sched_yield every YIELD_AFTER spins, as the team's barrier does.

The hand-over is one int64 array, the board: a state word, changed by compare-and-swap, in the
first cache line, and a job record (the arrays' addresses and sizes) in the next. ASLEEP ->
SPINNING (the partner, woken), SPINNING -> CLAIMED (a caller: only it writes the job record),
CLAIMED -> POSTED (the caller, once the record is written; it then runs units 0:split while the
partner runs split:H), POSTED -> SPINNING (the partner, done), SPINNING -> ASLEEP (the partner, its
window over, or retire(): a team call about to use every core), POSTED -> FAILED (the partner
raised: the caller then runs the partner's units too). A caller whose claim fails (the partner
asleep, or another thread's step under way) runs the whole step. One thread
(fastrnn.set_num_threads) turns it off, as it does the team, and so does FASTRNN_TEAM=0 when set
before the process's first step large enough to pair. A forked child starts its own partner.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Optional

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic

from .. import threads
from . import gru, lstm, rnn
from ._blas import STEP_BATCH
from ._spin import (YIELD_AFTER, compare_exchange, load_acquire, spin_pause, store_release,
                    yield_core)
from .team import (ENV_SWITCH, GRU, LSTM, RNN,  # noqa: F401  (RNN: pair.RNN)
                   gate_count, switched_off)

ASLEEP, SPINNING, CLAIMED, POSTED, FAILED = 0, 1, 2, 3, 4
WINDOW_S = 0.0005          # how long the partner waits for the next step before it sleeps
# Weights (elements of W_ih and W_hh) from which a step is split: below, one core's L2 holds them
# and the hand-over costs more than half the step (measured on Zen 2: LSTM H = 64 gained nothing).
MIN_WEIGHTS = 96 * 1024

_JIT = dict(cache=True, nogil=True, error_model="numpy")

# The board: the state word at 0, the job record (what a caller writes before it posts a step)
# from _JOB, one cache line further.
_JOB = 8
_CELL, _DTYPE, _N, _I, _H, _SPLIT, _RELU = range(_JOB, _JOB + 7)
_X, _HX, _CX, _W_IH, _W_HH, _B_IH, _B_HH, _H_OUT, _C_OUT = range(_JOB + 7, _JOB + 16)
BOARD_SIZE = _JOB + 16


@intrinsic
def _pointer(typingctx, address, like):
    """The int64 `address` as a pointer to `like`'s type (float32 or float64), for numba.carray."""
    if not isinstance(like, types.Float):
        return None

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))
    return types.CPointer(like)(address, like), codegen


@njit(**_JIT)
def _run_units(cell, x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out, use_relu, j0, j1):
    """The cell's step_units for hidden units j0:j1 (c, c_out: LSTM only, else any array)."""
    if cell == LSTM:
        lstm.step_units(x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out, j0, j1)
    elif cell == GRU:
        gru.step_units(x, h, w_ih, w_hh, b_ih, b_hh, h_out, j0, j1)
    elif use_relu:
        rnn.step_units(x, h, w_ih, w_hh, b_ih, b_hh, True, h_out, j0, j1)
    else:
        rnn.step_units(x, h, w_ih, w_hh, b_ih, b_hh, False, h_out, j0, j1)


@njit(**_JIT)
def _serve_job(board, like):
    """The partner's part of a posted step: units board[_SPLIT]:H, from the arrays at the job
    record's addresses (the caller keeps them alive until the partner is done)."""
    cell, N, I, H = board[_CELL], board[_N], board[_I], board[_H]
    G = gate_count(cell) * H
    x = carray(_pointer(board[_X], like), (N, I))
    h = carray(_pointer(board[_HX], like), (N, H))
    c = carray(_pointer(board[_CX], like), (N, H))
    w_ih = carray(_pointer(board[_W_IH], like), (G, I))
    w_hh = carray(_pointer(board[_W_HH], like), (G, H))
    b_ih = carray(_pointer(board[_B_IH], like), (G,))
    b_hh = carray(_pointer(board[_B_HH], like), (G,))
    h_out = carray(_pointer(board[_H_OUT], like), (N, H))
    c_out = carray(_pointer(board[_C_OUT], like), (N, H))
    _run_units(cell, x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out, board[_RELU] != 0,
               board[_SPLIT], H)


@njit(**_JIT)
def _serve(board, window_spins):
    """The partner's spin: serve posted steps until `window_spins` spins pass without one (then
    go ASLEEP) or someone retires it. No pause hint in the loop (see the module docstring)."""
    idle = 0
    spins = 0
    while True:
        now = load_acquire(board, 0)
        if now == POSTED:
            if board[_DTYPE] == 0:
                _serve_job(board, np.float32(0))
            else:
                _serve_job(board, np.float64(0))
            store_release(board, 0, SPINNING)
            idle = 0
            continue
        if now == CLAIMED:         # a caller is writing its job
            continue
        if now != SPINNING:
            return
        idle += 1
        spins += 1
        if spins >= YIELD_AFTER:
            yield_core()
            spins = 0
        if idle >= window_spins and compare_exchange(board, 0, SPINNING, ASLEEP):
            return


@njit(**_JIT)
def _spin_for(spins):
    """`spins` iterations like the serve loop's idle spin (to size its window in spins)."""
    flag = np.zeros(1, dtype=np.int64)
    count = 0
    for _ in range(spins):
        if load_acquire(flag, 0) != 0:
            break
        count += 1
    return count


@njit(**_JIT)
def _run(board, cell, x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out, use_relu):
    """The caller's side: claim a spinning partner, post it units split:H (split about H/2, a
    multiple of 8 where it can) and run 0:split, or (no partner to claim) run every unit. True
    when the step ran paired."""
    N, I = x.shape
    H = h.shape[1]
    half = H // 2
    split = half - half % 8 if half >= 8 else half
    paired = compare_exchange(board, 0, SPINNING, CLAIMED)
    if paired:
        board[_CELL], board[_DTYPE] = cell, 0 if x.itemsize == 4 else 1
        board[_N], board[_I], board[_H] = N, I, H
        board[_SPLIT], board[_RELU] = split, 1 if use_relu else 0
        board[_X], board[_HX], board[_CX] = x.ctypes.data, h.ctypes.data, c.ctypes.data
        board[_W_IH], board[_W_HH] = w_ih.ctypes.data, w_hh.ctypes.data
        board[_B_IH], board[_B_HH] = b_ih.ctypes.data, b_hh.ctypes.data
        board[_H_OUT], board[_C_OUT] = h_out.ctypes.data, c_out.ctypes.data
        store_release(board, 0, POSTED)
    _run_units(cell, x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out, use_relu, 0,
               split if paired else H)
    if paired:
        now = load_acquire(board, 0)
        while now == POSTED:
            spin_pause()
            now = load_acquire(board, 0)
        if now == FAILED:     # the partner raised (out of memory?): its units, here
            _run_units(cell, x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out, use_relu, split, H)
            compare_exchange(board, 0, FAILED, ASLEEP)
    return paired


class _Partner:
    def __init__(self):
        self.board = np.zeros(BOARD_SIZE, dtype=np.int64)
        self.wake = threading.Event()
        self.last_step = -1.0                             # perf_counter() of the last unpaired step
        _spin_for(1)                        # compiled (or loaded) before it is timed
        start = time.perf_counter()
        done = _spin_for(20000)
        per_spin = (time.perf_counter() - start) / max(done, 1)
        self.window_spins = max(1, int(WINDOW_S / per_spin))
        threading.Thread(target=self._loop, daemon=True, name="fastrnn-step-partner").start()

    def _loop(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            self.board[0] = SPINNING
            try:
                _serve(self.board, self.window_spins)
            except BaseException:       # a caller waiting on its job computes the units itself
                self.board[0] = FAILED


_partner: Optional[_Partner] = None
_SOLO_BOARD = np.zeros(BOARD_SIZE, dtype=np.int64)   # never SPINNING: _run on it runs every unit
_switched_off: Optional[bool] = None     # FASTRNN_TEAM=0, read at the first step that could pair
_threads_allow = False                   # fastrnn's thread count is at least 2 (threads.on_change)
_guard = threading.Lock()
paired_steps = 0      # steps run on two cores in this process (tests check the partner served)


def _follow_threads(n: int) -> None:
    global _threads_allow
    _threads_allow = n >= 2


def _forget_after_fork() -> None:
    global _partner
    _partner = None


threads.on_change(_follow_threads)
os.register_at_fork(after_in_child=_forget_after_fork)


def _get() -> Optional[_Partner]:
    """The partner, started on first use; None when pairing is off. Kept to a few global reads:
    the environment and the thread count cost a streaming step 4 us when looked up each time."""
    global _partner, _switched_off
    if not _threads_allow:
        return None
    if _partner is not None:
        return _partner
    if _switched_off is None:
        _switched_off = switched_off()
    if _switched_off:
        return None
    with _guard:
        if _partner is None:
            _partner = _Partner()
        return _partner


def stream(cell: int, use_relu: bool, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """CellKernels.stream of the three cells (functools.partial over cell and use_relu): one
    inference step of a batch of at most STEP_BATCH rows, (h', c') (c, c' None but for the LSTM),
    on two cores when the partner is spinning, else on this one; None for a larger batch
    (step_inference then runs forward() over one time step). One jitted call (_run) whichever way
    the step goes, and few Python steps around it: at LSTMCell N = 1, H = 128 this function's own
    work is a sixth of a streaming step."""
    if x.shape[0] > STEP_BATCH:
        return None
    if b_ih is None:
        b_ih = b_hh = np.zeros(w_hh.shape[0], dtype=x.dtype)
    shape, dtype = h.shape, h.dtype
    h_out = np.empty(shape, dtype)              # (np.empty_like costs half as much again)
    c_out = h_out if c is None else np.empty(shape, dtype)   # non-LSTM cells: a stand-in, unused
    partner = None                  # a step too small to split never starts the partner
    if w_ih.size + w_hh.size >= MIN_WEIGHTS and h.shape[1] >= 2:
        partner = _partner if _threads_allow and _partner is not None else _get()
    if _run(_SOLO_BOARD if partner is None else partner.board, cell, x, h, h if c is None else c,
            w_ih, w_hh, b_ih, b_hh, h_out, c_out, use_relu):
        global paired_steps
        paired_steps += 1          # (approximate when several threads step at once)
    elif partner is not None:
        # Only unpaired steps keep the time: the partner sleeps once no step came for WINDOW_S, so
        # the step that finds it asleep is that far from any paired one anyway.
        now = time.perf_counter()
        if now - partner.last_step < WINDOW_S:     # a burst of steps: have the partner spin
            partner.wake.set()
        partner.last_step = now
    return h_out, (None if c is None else c_out)


def retire() -> None:
    """Send a spinning partner to sleep now (a team call is about to use every core)."""
    partner = _partner
    if partner is not None:
        _retire(partner.board)


@njit(**_JIT)
def _retire(board):
    compare_exchange(board, 0, SPINNING, ASLEEP)


def report() -> str:
    """What `fastrnn info` prints about the paired cell step."""
    if not _threads_allow:
        return "cell steps: one core (one thread: fastrnn.set_num_threads)"
    if _switched_off or (_switched_off is None and switched_off()):
        return f"cell steps: one core ({ENV_SWITCH}=0)"
    return (f"cell steps: eval steps of at most {STEP_BATCH} rows and {MIN_WEIGHTS} weights or "
            f"more run on two cores within a burst (steps under {WINDOW_S * 1e3:g} ms apart: a "
            f"partner thread spins that long after each step)")
