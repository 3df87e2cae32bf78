"""The thread team: every core in one recurrent loop, split by hidden units.

A fastrnn call that runs on the team (team_loops.py) is one parallel region for the whole call: the
calling thread and P-1 persistent workers each own a contiguous slice of the hidden units and the
gate rows of W_ih and W_hh that feed them. Each member runs its slice of the input projection, then
every time step its slice of h W_hh^T (a single-threaded GEMM whose W slice stays in its own
core's cache) and the pointwise update of its units; the members meet once a step on the spin
barrier of _spin.py, because the next step's GEMM reads all of h.

Against the serial loop, which hands each step's whole GEMM to OpenBLAS's own threads: no BLAS
thread wake-up per step, no second pool spinning beside this one, and the pointwise work is split
too. Measured on 2 Zen 4 cores (LSTM (32, 256) step): one two-threaded OpenBLAS call ~140 us, two
concurrent single-threaded half GEMMs ~106 us each.

The GEMMs are NumPy's OpenBLAS (ILP64 cblas, scipy-openblas64), called from jitted code through
its function pointer; during a team call its own thread count is set to 1 and restored after, so
that a GEMM never wakes its pool. Where that library is not NumPy's BLAS (a NumPy built on MKL or
Accelerate), the team is unavailable and the serial loops run.

A call may use only the first few members; directions.py runs the two directions of a bidirectional
layer on the first two, each member running its direction's loops by itself (as_one_member: every
loop in it a team of one, in that thread).

Between calls the workers sleep on an Event: nothing spins once a call has returned. One call at a
time uses the team; a second thread's call finds it busy and runs the serial loops. After a fork
the child starts a new team. Whether a shape runs on the team at all is measured on this machine on
first use (team_choice.py); FASTRNN_TEAM=1 runs it wherever it applies, FASTRNN_TEAM=0 never.
"""
from __future__ import annotations

import ctypes
import os
import threading
from typing import Callable, Optional

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .. import threads
from ._spin import FLAG_STRIDE

ENV_SWITCH = "FASTRNN_TEAM"
# Units per member below which a member's GEMM is too thin to pay for the barrier (measured: LSTM
# H = 64 on 2 cores gains nothing).
MIN_UNITS_PER_MEMBER = 32
# Batch rows from which the team may run: every batch, the measured choice (team_choice.py)
# deciding. (With OpenBLAS per-step products the whole-loop paths were faster below 3 rows; on
# packed.py's kernel a member's half of W_hh stays in its core's L2 and the team can win at 1.)
MIN_ROWS = 1
# The cells, as the team loops (team_loops.py, team_backward.py) tell them apart.
LSTM, GRU, RNN = 0, 1, 2

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


# -- NumPy's BLAS, callable from jitted code ------------------------------------------------------

class _Blas:
    """NumPy's OpenBLAS: its cblas GEMM addresses and its thread-count setter and getter."""

    def __init__(self, lib: ctypes.CDLL):
        self.sgemm = ctypes.cast(lib.scipy_cblas_sgemm64_, ctypes.c_void_p).value
        self.dgemm = ctypes.cast(lib.scipy_cblas_dgemm64_, ctypes.c_void_p).value
        self._set = lib.scipy_openblas_set_num_threads64_
        self._set.argtypes, self._set.restype = [ctypes.c_int], None
        self._get = lib.scipy_openblas_get_num_threads64_
        self._get.argtypes, self._get.restype = [], ctypes.c_int

    def gemm_address(self, dtype) -> int:
        return self.sgemm if np.dtype(dtype) == np.float32 else self.dgemm

    def single_threaded(self):
        return _SingleThreaded(self._set, self._get)


class _SingleThreaded:
    def __init__(self, setter, getter):
        self._set, self._get = setter, getter

    def __enter__(self):
        self._before = self._get()
        self._set(1)

    def __exit__(self, *exc):
        self._set(self._before)


_blas: Optional[_Blas] = None
_blas_reason: Optional[str] = None
_blas_looked = False


def _numpy_blas() -> Optional[_Blas]:
    global _blas, _blas_reason, _blas_looked
    if _blas_looked:
        return _blas
    _blas_looked = True
    for lib, _ in threads.openblas_libraries():
        if hasattr(lib, "scipy_cblas_sgemm64_") and hasattr(lib, "scipy_cblas_dgemm64_"):
            _blas = _Blas(lib)
            return _blas
    _blas_reason = ("NumPy's BLAS is not scipy-openblas64 (the team calls its cblas GEMMs from "
                    "jitted code)")
    return None


@intrinsic
def _cblas_gemm(typingctx, fn, transa, transb, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """Row-major C (m, n) = op(A) op(B) + beta C through the ILP64 cblas_?gemm at address fn;
    op(A) is A (m, k), or A^T for A stored (k, m) when transa is _TRANS; op(B) is B (k, n), or B^T
    for B stored (n, k) when transb is _TRANS; a, b, c are data addresses, the ld* their row
    strides in elements, beta's type picks s or d."""
    if not isinstance(beta, types.Float):
        return None

    def codegen(context, builder, sig, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        real = context.get_value_type(sig.args[10])
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr,
                                               i64, real, ptr, i64])
        target = builder.inttoptr(context.cast(builder, args[0], sig.args[0], types.int64),
                                  fnty.as_pointer())

        def as_int(i):
            return context.cast(builder, args[i], sig.args[i], types.int64)

        def as_ptr(i):
            return builder.inttoptr(as_int(i), ptr)

        builder.call(target, [ir.Constant(i32, _ROW_MAJOR), builder.trunc(as_int(1), i32),
                              builder.trunc(as_int(2), i32), as_int(3), as_int(4), as_int(5),
                              ir.Constant(real, 1.0), as_ptr(6), as_int(7), as_ptr(8), as_int(9),
                              args[10], as_ptr(11), as_int(12)])
        return context.get_dummy_value()

    return types.void(fn, transa, transb, m, n, k, a, lda, b, ldb, beta, c, ldc), codegen


@njit(**_JIT)
def _gemm(fn, transa, transb, a, b, c, beta):
    """c = op(a) @ op(b) + beta * c on 2-D views whose rows are contiguous (any row stride)."""
    m, n = c.shape
    k = a.shape[0] if transa == _TRANS else a.shape[1]
    if m == 0 or n == 0:
        return
    size = a.itemsize
    _cblas_gemm(fn, transa, transb, m, n, k, a.ctypes.data, max(a.strides[0] // size, a.shape[1]),
                b.ctypes.data, max(b.strides[0] // size, b.shape[1]), c.dtype.type(beta),
                c.ctypes.data, max(c.strides[0] // size, n))


@njit(**_JIT)
def gemm_into(fn, a, b, c, beta):
    """c (m, n) = a (m, k) @ b (k, n) + beta * c, single-threaded, on 2-D views whose rows are
    contiguous (any row stride); fn is the cblas_?gemm address of their dtype."""
    _gemm(fn, _NO_TRANS, _NO_TRANS, a, b, c, beta)


@njit(**_JIT)
def gemm_tn_into(fn, a, b, c, beta):
    """c (m, n) = a (k, m)^T @ b (k, n) + beta * c, as gemm_into (the weight gradients' form)."""
    _gemm(fn, _TRANS, _NO_TRANS, a, b, c, beta)


@njit(**_JIT)
def gemm_nt_into(fn, a, b, c, beta):
    """c (m, n) = a (m, k) @ b (n, k)^T + beta * c, as gemm_into (x W^T with W in PyTorch's
    layout)."""
    _gemm(fn, _NO_TRANS, _TRANS, a, b, c, beta)


# -- the team -------------------------------------------------------------------------------------

class _Team:
    """The calling thread (member 0) and members-1 sleeping workers; a call may use the first few."""

    def __init__(self, members: int):
        self.members = members
        self.pid = os.getpid()
        self.busy = threading.Lock()
        self._go = [threading.Event() for _ in range(members)]
        self._done = [threading.Event() for _ in range(members)]
        self._job: Optional[tuple] = None
        self._errors: list = []
        for member in range(1, members):
            threading.Thread(target=self._work, args=(member,), daemon=True,
                             name=f"fastrnn-team-{member}").start()

    def _work(self, member: int) -> None:
        while True:
            self._go[member].wait()
            self._go[member].clear()
            kernel, args, members = self._job
            try:
                kernel(member, members, *args)
            except BaseException as exc:          # reported by run(); the thread lives on
                self._errors.append(exc)
            # Drop the call's arrays before sleeping: held here, a training call's buffers (tens
            # of MiB) would stay alive until the next call.
            kernel = args = None
            self._done[member].set()

    def run(self, kernel: Callable, args: tuple, members: int) -> None:
        """kernel(member, members, *args) on the first `members` members."""
        self._job, self._errors = (kernel, args, members), []
        for member in range(1, members):
            self._go[member].set()
        try:
            kernel(0, members, *args)
        finally:
            for member in range(1, members):
                self._done[member].wait()
                self._done[member].clear()
            self._job = None
        if self._errors:
            raise self._errors[0]


_team: Optional[_Team] = None
_team_guard = threading.Lock()
runs = 0            # completed team calls in this process (tests check that the team really ran)
_alone = threading.local()      # .active: this thread is one member running a loop by itself


def switched_off() -> bool:
    """FASTRNN_TEAM=0: neither the team nor the paired cell step runs (read when asked)."""
    return os.environ.get(ENV_SWITCH, "auto").strip() == "0"


def unavailable_reason() -> Optional[str]:
    """Why the team cannot run in this process, or None."""
    if switched_off():
        return f"turned off by {ENV_SWITCH}=0"
    if threads.get_num_threads() < 2:
        return "one thread (fastrnn.set_num_threads)"
    if _numpy_blas() is None:
        return _blas_reason
    return None


def members_for(hidden: int, rows: int) -> int:
    """How many members a loop of this hidden size and batch gets: 0 for the serial loops, 1 in a
    member that runs loops by itself (alone())."""
    if alone():
        return 1
    if rows < MIN_ROWS or unavailable_reason() is not None:
        return 0
    members = min(threads.get_num_threads(), hidden // MIN_UNITS_PER_MEMBER)
    return members if members >= 2 else 0


def _team_of(members: int) -> _Team:
    global _team
    with _team_guard:
        if _team is None or _team.members < members or _team.pid != os.getpid():
            _team = _Team(members)
        return _team


def alone() -> bool:
    """Whether this thread is a member running loops by itself (as_one_member), a team of one."""
    return getattr(_alone, "active", False)


def as_one_member(work: Callable[[], object]):
    """work() in this member's thread with every loop it runs a team of one: members_for gives 1,
    and try_run runs its kernel right here (the caller of the enclosing try_run already holds the
    team and has set BLAS to one thread). directions.py runs a direction of a layer so."""
    _alone.active = True
    try:
        return work()
    finally:
        _alone.active = False


def try_run(members: int, kernel: Callable, args: tuple) -> bool:
    """Run kernel(member, members, *args) on every member; False (nothing run) when another call
    holds the team. The kernel's GEMMs get gemm_address(dtype) from the caller. In a member that
    runs by itself (alone()) members is 1 and the kernel runs in this thread."""
    global runs
    if alone():
        kernel(0, 1, *args)
        runs += 1
        return True
    team = _team_of(members)
    if not team.busy.acquire(blocking=False):
        return False
    try:
        from . import pair     # here: pair.py imports this module
        pair.retire()          # a partner spinning for the next cell step would slow a member
        with _numpy_blas().single_threaded():
            team.run(kernel, args, members)
        runs += 1
    finally:
        team.busy.release()
    return True


def gemm_address(dtype) -> int:
    return _numpy_blas().gemm_address(dtype)


@njit(**_JIT)
def gate_count(cell):
    """The gate blocks of a cell (LSTM, GRU or RNN): 4, 3 or 1."""
    return 4 if cell == LSTM else (3 if cell == GRU else 1)


@njit(**_JIT)
def member_region(gates, b0, b1):
    """Member p's region of a team call's gates buffer (T, N, G), C-contiguous: its team-order
    columns b0:b1 held as one (T, N, b1 - b0) block at T*N*b0, which it alone writes and reads
    (team_loops.forward_loop, team_backward.backward_loop)."""
    T, N, G = gates.shape
    return gates.reshape(T * N * G)[T * N * b0:T * N * b1].reshape((T, N, b1 - b0))


def unit_bounds(hidden: int, members: int) -> np.ndarray:
    """(members + 1,) int64: member p owns hidden units bounds[p]:bounds[p+1]."""
    return (np.arange(members + 1, dtype=np.int64) * hidden) // members


def gate_order(hidden: int, gates: int, bounds: np.ndarray) -> np.ndarray:
    """The permutation of the gates*hidden gate rows that puts each member's rows side by side:
    member p's block is [gate 0 of its units, gate 1 of its units, ...], at gates*bounds[p]."""
    return np.concatenate([np.arange(g * hidden + bounds[p], g * hidden + bounds[p + 1])
                           for p in range(len(bounds) - 1) for g in range(gates)])


def new_flags(members: int) -> np.ndarray:
    return np.zeros(members * FLAG_STRIDE, dtype=np.int64)


def report() -> str:
    """What `fastrnn info` prints about the team."""
    from . import gemm, team_choice, team_loops

    reason = unavailable_reason()
    if reason is not None:
        return f"team: off ({reason}); the serial loops run"
    how = {"auto": "team or serial measured per shape on first use, cached in "
                   f"{gemm.cache_dir() / team_choice.CACHE_FILE}",
           "1": f"always where it applies ({ENV_SWITCH}=1)"}[team_choice.mode()]
    rows = f"at least {MIN_ROWS} rows and " if MIN_ROWS > 1 else ""
    lines = [f"team: {threads.get_num_threads()} threads for inference loops (all cells) and "
             f"training (every row the whole sequence) of {rows}"
             f"{MIN_UNITS_PER_MEMBER} hidden units a thread or more (NumPy's OpenBLAS, one thread "
             f"per member); {how}; {ENV_SWITCH}=0 turns it off",
             f"team: inference of {team_loops.FUSED_STEP_ROWS} rows or more takes each step's gates "
             f"from one product of [x_t | h] (no projection pass)"]
    if team_choice.mode() == "auto":
        lines += team_choice.report()
    return "\n".join(lines)
