"""LSTM (gates i, f, g, o): fused time loops for forward, backward and the single step.

c' = f*c + i*g, h' = o*tanh(c'). The input projection and the weight gradients are whole-sequence
GEMMs on NumPy's BLAS, run by forward() and backward() below through _common.py; the jitted loops
hold only what must run step by step.
"""
from __future__ import annotations

import numpy as np
from numba import literally, njit

from ..contract import (BackwardRequest, BackwardResult, ForwardRequest, ForwardResult,
                        StepRequest, StepResult)
from ._blas import SMALL_BATCH, STEP_BATCH, copy_vector, small_matmul, small_matmul_nt
from ._common import (SequenceCache, bias_gradients, full_lengths, fused_bias, input_gradients,
                      no_cache, project_input, recurrent_weight_gradient, run_backward_loop,
                      run_forward_loop, step_through_forward, transpose)
from ._math import ftanh, sigmoid
from ._rows import add_column_sums, backward_row_start, clear_idle_forward, visited_time

# contract: multiply-adds may fuse into FMAs (the activations 1.3x faster, as accurate: _math.py)
_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


@njit(**_JIT)
def cell_row(g, ghn, bias, cn, hn, o_t, keep):
    """One row of the LSTM update: the one body of the forward loops (training and inference) and
    of the cell step, compiled once per value of `keep` (numba.literally), so that each keeps a
    straight vectorized loop.

    g    (4H,)  x-side pre-activations (no bias); when keep, overwritten by the activated
                i, f, g, o (the cache for backward).
    ghn  (4H,)  h-side pre-activations;  bias (4H,) b_ih + b_hh. (The step kernel passes the
                summed products as g and b_ih, b_hh as ghn and bias: the same sum.)
    cn   (H,)   the cell state, updated in place.
    hn   (H,)   written with the new hidden state;  o_t (H,) written with it too (distinct from hn:
                a shared one sends LLVM's runtime alias check to the scalar loop).
    cn aliases nothing; g (written when keep) aliases none of the others.
    """
    literally(keep)
    H = cn.shape[0]
    for j in range(H):
        ig = sigmoid(g[j] + ghn[j] + bias[j])
        fg = sigmoid(g[H + j] + ghn[H + j] + bias[H + j])
        gg = ftanh(g[2 * H + j] + ghn[2 * H + j] + bias[2 * H + j])
        og = sigmoid(g[3 * H + j] + ghn[3 * H + j] + bias[3 * H + j])
        cj = fg * cn[j] + ig * gg
        hj = og * ftanh(cj)
        if keep:
            g[j] = ig
            g[H + j] = fg
            g[2 * H + j] = gg
            g[3 * H + j] = og
        cn[j] = cj
        hn[j] = hj
        o_t[j] = hj


@njit(**_JIT)
def forward_step(s, gates, gh, bias, h, c, lengths, reverse, training, out, h_prev, c_prev):
    """The fused pointwise pass of loop step s (the caller has put h W_hh^T in gh).

    gates   (T, N, 4H)  in: x_t W_ih^T (time order, no bias); when training, overwritten at each
                        active (t, n) by the activated i, f, g, o: the cache for backward.
    gh      (N, 4H)     h W_hh^T of the state before this step.
    bias    (4H,)       b_ih + b_hh (zeros without bias).
    h, c    (N, H)      the state, updated in place (idle rows keep theirs).
    lengths (N,) int32  which (t, n) each row visits: see _rows.py.
    out     (T, N, H)   h_t, 0 at idle (t, n).
    h_prev, c_prev (T, N, H) when training, else (0, 0, 0): the state each (t, n) started from,
                        0 at idle (t, n) so that the weight-gradient GEMM reads finite zeros.
    No argument may alias another.
    """
    for n in range(h.shape[0]):
        t = visited_time(s, lengths[n], reverse)
        if t < 0:
            clear_idle_forward(s, n, training, out, h_prev, c_prev)
            continue
        if training:
            copy_vector(h_prev[t, n], h[n])
            copy_vector(c_prev[t, n], c[n])
            cell_row(gates[t, n], gh[n], bias, c[n], h[n], out[t, n], True)
        else:
            cell_row(gates[t, n], gh[n], bias, c[n], h[n], out[t, n], False)


@njit(**_JIT)
def forward_small(gates, w_hh_t, bias, h, c, lengths, reverse, training, out, h_prev, c_prev):
    """The whole forward loop for a batch of at most SMALL_BATCH rows, without BLAS.

    w_hh_t (H, 4H) is W_hh transposed, C-contiguous; the other arguments are forward_step's.
    """
    T = gates.shape[0]
    gh = np.empty((h.shape[0], gates.shape[2]), h.dtype)
    for s in range(T):
        small_matmul(h, w_hh_t, gh)
        forward_step(s, gates, gh, bias, h, c, lengths, reverse, training, out, h_prev, c_prev)


@njit(**_JIT)
def backward_row(g, cp, do_t, dh, dc, dg):
    """One row of backward_step: g (4H,) activated i, f, g, o; cp, do_t (H,) read; dh (H,) read;
    dc (H,) updated to the gradient of c before the step; dg (4H,) written. No aliasing.
    A function of its own because LLVM vectorizes this loop here but not inlined in the row loop."""
    H = dh.shape[0]
    one = dh.dtype.type(1)
    for j in range(H):
        ig = g[j]
        fg = g[H + j]
        gg = g[2 * H + j]
        og = g[3 * H + j]
        tc = ftanh(fg * cp[j] + ig * gg)
        dhj = dh[j] + do_t[j]
        dcj = dc[j] + dhj * og * (one - tc * tc)
        dc[j] = dcj * fg
        dg[j] = dcj * gg * ig * (one - ig)
        dg[H + j] = dcj * cp[j] * fg * (one - fg)
        dg[2 * H + j] = dcj * ig * (one - gg * gg)
        dg[3 * H + j] = dhj * tc * og * (one - og)


@njit(**_JIT)
def backward_step(s, gates, c_prev, lengths, reverse, dout, dh, dc, dh_rec, pending, dg_step,
                  in_place, dgates, db):
    """The fused pointwise pass of backward loop step s (run for s = T-1 down to 0).

    gates   (T, N, 4H)  activated i, f, g, o from forward_step (read only).
    c_prev  (T, N, H)   the cell state each (t, n) started from.
    dout    (T, N, H)   read only where t < lengths[n].
    dh, dc  (N, H)      gradients of the state after step s; on return dc is that before step s,
                        dh is left for the caller's GEMM (dh_prev = dg_step @ W_hh).
    dh_rec  (N, H)      when pending: the previous step's GEMM result, copied into dh first for
                        the rows that were active then (rows idle then keep dh).
    dg_step (N, 4H)     out: this step's pre-activation gradients, 0 for idle rows.
    in_place            dg_step is the plane dgates[t] itself (every row active with the same t).
    dgates  (T, N, 4H)  out: the same gradients in time order (0 at idle (t, n)).
    db      (4H,) float64  accumulates the bias gradient (float64: T*N terms keep their digits).
    Apart from dg_step/dgates as described, no argument may alias another.
    """
    for n in range(dh.shape[0]):
        t = backward_row_start(s, n, lengths[n], reverse, pending, False, dh, dh_rec, dg_step,
                               dgates)
        if t < 0:
            continue
        dgn = dg_step[n]
        backward_row(gates[t, n], c_prev[t, n], dout[t, n], dh[n], dc[n], dgn)
        if not in_place:
            copy_vector(dgates[t, n], dgn)
        add_column_sums(db, dgn)


@njit(**_JIT)
def backward_small(gates, c_prev, w_hh, lengths, reverse, dout, dh, dc, dgates, db):
    """The whole backward loop for a batch of at most SMALL_BATCH rows, without BLAS; arguments
    as backward_step's, w_hh (4H, H)."""
    T, N, G = gates.shape
    dg_step = np.empty((N, G), dh.dtype)
    dh_rec = np.empty_like(dh)
    for s in range(T - 1, -1, -1):
        backward_step(s, gates, c_prev, lengths, reverse, dout, dh, dc, dh_rec, s + 1 < T,
                      dg_step, False, dgates, db)
        small_matmul(dg_step, w_hh, dh_rec)
    for n in range(N):
        copy_vector(dh[n], dh_rec[n])


@njit(**_JIT)
def step_units(x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out, j0, j1):
    """One inference step of hidden units j0:j1, for a batch of at most STEP_BATCH rows: writes
    h_out[:, j0:j1] and c_out[:, j0:j1] only (the two threads of a paired step, pair.py, each run
    one range of units; alone, it runs them all).

    x (N, I), h, c (N, H), w_ih (4H, I), w_hh (4H, H) in PyTorch layout; b_ih, b_hh (4H,) (zeros
    without bias); h_out, c_out (N, H), aliasing none of the inputs.
    """
    N = x.shape[0]
    H = w_hh.shape[1]
    w = j1 - j0
    buf = np.empty((N + 3, 4 * w), h.dtype)
    pre = buf[:N]         # the units' rows of x W_ih^T + h W_hh^T, gate blocks of width w
    spare = buf[N + 2, :w]   # cell_row's second destination: were it h_out again, the two would
    #                          alias and LLVM's runtime alias check would take the scalar loop
    if w == H:            # all units: one product over all rows (8 per-gate ones ran 6% slower)
        small_matmul_nt(x, w_ih, pre, False)
        small_matmul_nt(h, w_hh, pre, True)
        bias_i, bias_h = b_ih, b_hh
    else:
        bias_i, bias_h = buf[N], buf[N + 1]
        for gate in range(4):
            r0 = gate * H + j0
            block = pre[:, gate * w:(gate + 1) * w]
            small_matmul_nt(x, w_ih[r0:r0 + w], block, False)
            small_matmul_nt(h, w_hh[r0:r0 + w], block, True)
            for j in range(w):
                bias_i[gate * w + j] = b_ih[r0 + j]
                bias_h[gate * w + j] = b_hh[r0 + j]
    for n in range(N):
        c_n = c_out[n, j0:j1]
        copy_vector(c_n, c[n, j0:j1])
        cell_row(pre[n], bias_i, bias_h, c_n, h_out[n, j0:j1], spare, False)


def forward(req: ForwardRequest) -> ForwardResult:
    x, w, reverse, training = req.x, req.weights, req.reverse, req.training
    w_ih, w_hh = w.w_ih, w.w_hh
    T, N, _ = x.shape
    G, H = w_hh.shape
    dtype = x.dtype
    bias = fused_bias(w.b_ih, w.b_hh, G, dtype)
    lens = full_lengths(req.lengths, T, N)
    on_team = team_loops.try_forward(team_loops.LSTM, req, bias, lens)
    if on_team is not None:
        return on_team
    gates = project_input(x, w_ih)
    h = req.h0.copy()
    c = req.c0.copy()
    out = np.empty((T, N, H), dtype=dtype)
    if training:
        h_prev = np.empty((T, N, H), dtype=dtype)
        c_prev = np.empty((T, N, H), dtype=dtype)
    else:
        h_prev = c_prev = no_cache(dtype)
    if N <= SMALL_BATCH:
        forward_small(gates, transpose(w_hh), bias, h, c, lens, reverse, training, out,
                      h_prev, c_prev)
    else:
        run_forward_loop(forward_step, gates,
                         (bias, h, c, lens, reverse, training, out, h_prev, c_prev), w_hh, h)
    cache = None
    if training:
        cache = SequenceCache(x, w_ih, w_hh, w.has_bias, lens, reverse, gates, h_prev, c_prev)
    return ForwardResult(out=out, h_n=h, c_n=c, cache=cache)


def backward(req: BackwardRequest) -> BackwardResult:
    cache = req.cache
    x, w_hh, lens = cache.x, cache.w_hh, cache.lengths
    T, N, _ = x.shape
    G = w_hh.shape[0]
    dtype = x.dtype
    dh = np.array(req.dh_n, dtype=dtype, order="C")
    dc = np.array(req.dc_n, dtype=dtype, order="C")
    dout = np.ascontiguousarray(req.dout)
    on_team = team_backward.try_backward(team_loops.LSTM, cache, dout, dh, dc) if cache.team else None
    if on_team is not None:
        dx, dw_ih, dw_hh, db, _ = on_team
    else:
        gates = cache.gates_in_cell_order()
        dgates = np.empty((T, N, G), dtype=dtype)
        db = np.zeros(G, dtype=np.float64)
        if N <= SMALL_BATCH:
            backward_small(gates, cache.extra, w_hh, lens, cache.reverse, dout, dh, dc, dgates, db)
        else:
            run_backward_loop(backward_step, (gates, cache.extra, lens, cache.reverse, dout, dh, dc),
                              w_hh, lens, cache.reverse, dh, dgates, db)
        dx, dw_ih = input_gradients(dgates, x, cache.w_ih)
        dw_hh = recurrent_weight_gradient(dgates, cache.h_prev)
    db_ih, db_hh = bias_gradients(db, cache.has_bias, dtype)
    return BackwardResult(dx=dx, dh0=dh, dc0=dc, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)


def step_inference(req: StepRequest) -> StepResult:
    x, w = req.x, req.weights
    if x.shape[0] > STEP_BATCH:
        return step_through_forward(forward, req)
    h1, c1 = pair.stream(pair.LSTM, False, x, req.h, req.c, w.w_ih, w.w_hh, w.b_ih, w.b_hh)
    return StepResult(h=h1, c=c1)


# Last: the team modules and pair.py run this module's kernels on more threads, so they import it.
from . import pair, team_backward, team_loops  # noqa: E402
