"""The layer algorithm of the "cupy" backend, written against a small `ops` interface so that the very
same code runs on a GPU (fastrnn.gpu._cupy_ops: CuPy + cuBLAS + the CUDA kernels, step loops captured in
CUDA graphs) and on the host in the tests (NumPy GEMMs + the same kernel bodies compiled with g++).

Order of work for one layer and one direction (T steps, N rows, G*H gate rows):
  forward   gx = x_step @ W_ih^T (one GEMM over all T*N rows), then per step s: gh = h @ W_hh^T (GEMM) and
            one fused pointwise kernel.  Rows are kept in loop-step order: for the reverse direction with
            variable lengths, row n visits time t = len[n]-1-s, so x is gathered into step order first.
  backward  per step (s = T-1 .. 0): one fused pointwise kernel giving the pre-activation gradients of the
            step, one GEMM dh = dgh @ W_hh; after the loop dW_ih, dW_hh, db are single GEMMs / sums over
            all T*N rows, and dx = dgi @ W_ih is one GEMM scattered back to time order.

ops interface (all arrays C-contiguous, of ops.xp):
  xp                                   numpy or cupy
  gemm(a, b, out, trans_a, trans_b)    out[...] = op(a) @ op(b) for 2-D a, b, out
  fwd_step(cell, *args) / bwd_step(cell, *args)   the kernels of kernels/pointwise.cu (None = nullptr)
  workspace(key, factory) -> lease     a Workspace for `key` not in use by anyone else (may be reused)
  claim(ws)                            optional: order the current stream after ws's earlier work
  run_loop(ws, tag, fn)                runs fn() (or replays its CUDA graph captured the first time)
  persistent_forward(cell, x_step, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse)
                                       optional whole-sequence inference kernel: (out, h_n, c_n), or
                                       None when it does not apply to these shapes
"""
from __future__ import annotations

import threading
import weakref

from ..cells import CellSpec
from ..contract import (BackwardRequest, BackwardResult, ForwardRequest, ForwardResult, StepRequest,
                        StepResult)

SAVED = {"rnn_tanh": 0, "rnn_relu": 0, "lstm": 4, "gru": 4}   # cell_saved() of frnn_common.cuh


class Workspace:
    """Every buffer the step loops touch, at fixed addresses (a captured CUDA graph replays on them).

    Inputs are copied in before a loop runs and results copied out after, so one Workspace can serve
    any number of calls with the same shape.  Step-ordered buffers: gx (T, N, G*H); hs, cs (T+1, N, H)
    in training (hs[s] = state before step s) or (2, N, H) ping-pong in inference; saved (T, N, S*H).
    Backward buffers are allocated on the first backward: dgi, dgh (T, N, G*H), dh_gemm, dh_direct,
    dc (N, H), dout (T, N, H).
    """

    def __init__(self, xp, cell: CellSpec, dtype, T, N, H, training, has_bias, has_lengths):
        G = cell.gates
        self.xp, self.cell, self.dtype = xp, cell, dtype
        self.T, self.N, self.H, self.training = T, N, H, training
        e = lambda *shape: xp.empty(shape, dtype=dtype)  # noqa: E731
        self.gx = e(T, N, G * H)
        self.gh = e(N, G * H)
        self.w_hh = e(G * H, H)
        self.b_ih = e(G * H) if has_bias else None
        self.b_hh = e(G * H) if has_bias else None
        self.lengths = xp.empty((N,), dtype=xp.int32) if has_lengths else None
        depth = T + 1 if training else 2
        self.hs = e(depth, N, H)
        self.cs = e(depth, N, H) if cell.has_cell_state else None
        S = SAVED[cell.name]
        self.saved = e(T, N, S * H) if training and S else None
        self.out = e(T, N, H)
        self.dgi = None
        self.graphs = {}

    def state_index(self, s: int) -> int:
        return s if self.training else s & 1

    def ensure_backward_buffers(self):
        if self.dgi is not None:
            return
        xp, dt, T, N, H, G = self.xp, self.dtype, self.T, self.N, self.H, self.cell.gates
        self.dgi = xp.empty((T, N, G * H), dtype=dt)
        self.dgh = xp.empty((T, N, G * H), dtype=dt) if self.cell.name == "gru" else self.dgi
        self.dh_gemm = xp.empty((N, H), dtype=dt)
        self.dh_direct = xp.empty((N, H), dtype=dt)
        self.dc = xp.empty((N, H), dtype=dt) if self.cell.has_cell_state else None
        self.dout = xp.empty((T, N, H), dtype=dt)


class Lease:
    """Exclusive use of one Workspace; it goes back to its pool on release() or when garbage."""

    def __init__(self, pool, key, ws):
        self.ws = ws
        self._finalizer = weakref.finalize(self, pool._give_back, key, ws)

    def release(self):
        self._finalizer()   # idempotent


class WorkspacePool:
    """Free workspaces by shape key.  A workspace (and the CUDA graphs captured on it) is reused by the
    next call of the same shape once its previous user is done with it."""

    def __init__(self, max_free_per_key: int = 4):
        self.max_free_per_key = max_free_per_key
        self._free: dict = {}
        # two threads must never be handed the same workspace; reentrant because _give_back runs from
        # weakref finalizers, which the garbage collector may call while acquire() holds the lock
        self._lock = threading.RLock()

    def acquire(self, key, factory) -> Lease:
        with self._lock:
            free = self._free.get(key)
            ws = free.pop() if free else None
        if ws is None:
            ws = factory()
        return Lease(self, key, ws)

    def _give_back(self, key, ws):
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) < self.max_free_per_key:
                free.append(ws)


class Cache:
    """What backward needs from a training forward.  Holds the workspace lease: the workspace is not
    handed to any other call until this object is gone."""

    __slots__ = ("lease", "x_step", "perm", "w_ih", "reverse", "has_lengths", "__weakref__")

    def __init__(self, lease, x_step, perm, w_ih, reverse, has_lengths):
        self.lease, self.x_step, self.perm, self.w_ih = lease, x_step, perm, w_ih
        self.reverse, self.has_lengths = reverse, has_lengths


def step_permutation(xp, T, N, lengths, reverse):
    """(T, N) int array: time index visited by row n at loop step s, or None when it is the identity
    (forward direction) or a plain reversal (reverse direction, no lengths: returns "reversed").
    lengths: None or (N,) int32 (the contract's form)."""
    if not reverse:
        return None
    if lengths is None:
        return "reversed"
    s = xp.arange(T, dtype=xp.int32)[:, None]
    ln = lengths[None, :]
    return xp.where(s < ln, ln - 1 - s, s)


def to_step_order(xp, a, perm):
    if perm is None:
        return a
    if isinstance(perm, str):
        return xp.ascontiguousarray(a[::-1])
    return a[perm, xp.arange(a.shape[1])[None, :]]


def to_time_order(xp, a, perm):
    if perm is None:
        return a
    if isinstance(perm, str):
        return xp.ascontiguousarray(a[::-1])
    out = xp.empty_like(a)
    out[perm, xp.arange(a.shape[1])[None, :]] = a
    return out


def _contiguous(xp, *arrays):
    """Kernels and GEMMs take raw pointers: make every operand C-contiguous (no copy when it is)."""
    return tuple(None if a is None else xp.ascontiguousarray(a) for a in arrays)


def _copy_into(dst, src):
    if dst is not None:
        dst[...] = src


def forward(ops, req: ForwardRequest) -> ForwardResult:
    xp = ops.xp
    cell, lengths, reverse, training = req.cell, req.lengths, req.reverse, req.training
    w = req.weights
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _contiguous(xp, req.x, req.h0, req.c0, w.w_ih, w.w_hh, w.b_ih,
                                                    w.b_hh)
    T, N, I = x.shape
    H = w_hh.shape[1]
    G = cell.gates
    has_bias = b_ih is not None
    # lengths go to the kernels as they are: the contract made them contiguous int32 in x's module
    perm = step_permutation(xp, T, N, lengths, reverse)
    x_step = to_step_order(xp, x, perm)

    if not training:
        fast = getattr(ops, "persistent_forward", None)
        result = None if fast is None else fast(cell, x_step, w_ih, w_hh, b_ih, b_hh, h0, c0,
                                                lengths, reverse)
        if result is not None:
            out, h_n, c_n = result
            return ForwardResult(out=out, h_n=h_n, c_n=c_n)

    key = (cell.name, x.dtype.str, T, N, H, training, has_bias, lengths is not None)
    lease = ops.workspace(key, lambda: Workspace(xp, cell, x.dtype, T, N, H, training, has_bias,
                                                 lengths is not None))
    ws = lease.ws
    ops.gemm(x_step.reshape(T * N, I), w_ih, ws.gx.reshape(T * N, G * H), False, True)
    ws.w_hh[...] = w_hh
    _copy_into(ws.b_ih, b_ih)
    _copy_into(ws.b_hh, b_hh)
    _copy_into(ws.lengths, lengths)
    ws.hs[0] = h0
    if cell.has_cell_state:
        ws.cs[0] = c0
    if lengths is not None:
        ws.out.fill(0)

    ops.run_loop(ws, ("fwd", bool(reverse)), lambda: _forward_loop(ops, ws, cell, reverse))

    last = ws.state_index(T)
    out = ws.out.copy()
    h_n = ws.hs[last].copy()
    c_n = ws.cs[last].copy() if cell.has_cell_state else None
    if not training:
        lease.release()
        return ForwardResult(out=out, h_n=h_n, c_n=c_n)
    return ForwardResult(out=out, h_n=h_n, c_n=c_n,
                         cache=Cache(lease, x_step, perm, w_ih, reverse, lengths is not None))


def _forward_loop(ops, ws: Workspace, cell: CellSpec, reverse):
    """The captured part: no allocation, no host synchronisation, only kernels and GEMMs on ws."""
    T, N, H = ws.T, ws.N, ws.H
    for s in range(T):
        i, k = ws.state_index(s), ws.state_index(s + 1)
        h_prev = ws.hs[i]
        ops.gemm(h_prev, ws.w_hh, ws.gh, False, True)
        ops.fwd_step(cell, N, H, T, s, int(reverse), ws.lengths, ws.gx[s], ws.gh, ws.b_ih, ws.b_hh,
                     h_prev, ws.cs[i] if ws.cs is not None else None,
                     ws.hs[k], ws.cs[k] if ws.cs is not None else None,
                     ws.out, ws.saved[s] if ws.saved is not None else None)


def backward(ops, req: BackwardRequest) -> BackwardResult:
    xp = ops.xp
    cell, cache, dout, dh_n, dc_n = req.cell, req.cache, req.dout, req.dh_n, req.dc_n
    ws = cache.lease.ws
    claim = getattr(ops, "claim", None)
    if claim is not None:   # the forward may have run on another stream
        claim(ws)
    T, N, H, G = ws.T, ws.N, ws.H, cell.gates
    I = cache.x_step.shape[2]
    ws.ensure_backward_buffers()
    ws.dout[...] = dout
    ws.dh_direct[...] = dh_n
    if cell.has_cell_state:
        ws.dc[...] = dc_n

    ops.run_loop(ws, ("bwd", bool(cache.reverse)), lambda: _backward_loop(ops, ws, cell, cache.reverse))

    dh0 = ws.dh_gemm + ws.dh_direct
    dc0 = ws.dc.copy() if cell.has_cell_state else None
    TN = T * N
    dgi = ws.dgi.reshape(TN, G * H)
    dgh = ws.dgh.reshape(TN, G * H)
    dw_hh = xp.empty((G * H, H), dtype=ws.dtype)
    ops.gemm(dgh, ws.hs[:T].reshape(TN, H), dw_hh, True, False)
    dw_ih = xp.empty((G * H, I), dtype=ws.dtype)
    ops.gemm(dgi, cache.x_step.reshape(TN, I), dw_ih, True, False)
    dx_step = xp.empty((T, N, I), dtype=ws.dtype)
    ops.gemm(dgi, cache.w_ih, dx_step.reshape(TN, I), False, False)
    dx = to_time_order(xp, dx_step, cache.perm)
    if ws.b_ih is not None:
        db_ih = dgi.sum(axis=0)
        db_hh = db_ih.copy() if cell.name != "gru" else dgh.sum(axis=0)
    else:
        db_ih = db_hh = None
    return BackwardResult(dx=dx, dh0=dh0, dc0=dc0, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)


def _backward_loop(ops, ws: Workspace, cell: CellSpec, reverse):
    T, N, H = ws.T, ws.N, ws.H
    lstm = ws.cs is not None
    for s in range(T - 1, -1, -1):
        ops.bwd_step(cell, N, H, T, s, int(reverse), ws.lengths,
                     ws.saved[s] if ws.saved is not None else None,
                     ws.hs[s], ws.hs[s + 1],
                     ws.cs[s] if lstm else None, ws.cs[s + 1] if lstm else None,
                     ws.dout, ws.dh_gemm if s < T - 1 else None, ws.dh_direct,
                     ws.dc if lstm else None, ws.dgi[s], ws.dgh[s] if cell.name == "gru" else None)
        ops.gemm(ws.dgh[s], ws.w_hh, ws.dh_gemm, False, False)


def step(ops, req: StepRequest) -> StepResult:
    """One inference step for the *Cell modules: x (N, I), h, c (N, H) -> (h1, c1)."""
    xp = ops.xp
    cell, w = req.cell, req.weights
    x, h, c, w_ih, w_hh, b_ih, b_hh = _contiguous(xp, req.x, req.h, req.c, w.w_ih, w.w_hh, w.b_ih,
                                                  w.b_hh)
    N = x.shape[0]
    H = w_hh.shape[1]
    G = cell.gates
    gx = xp.empty((N, G * H), dtype=x.dtype)
    gh = xp.empty((N, G * H), dtype=x.dtype)
    ops.gemm(x, w_ih, gx, False, True)
    ops.gemm(h, w_hh, gh, False, True)
    h1 = xp.empty((N, H), dtype=x.dtype)
    c1 = xp.empty((N, H), dtype=x.dtype) if cell.has_cell_state else None
    ops.fwd_step(cell, N, H, 1, 0, 0, None, gx, gh, b_ih, b_hh, h, c, h1, c1, None, None)
    return StepResult(h=h1, c=c1)
