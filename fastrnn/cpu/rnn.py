"""Vanilla RNN, h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh) with act tanh or relu.

One row body (cell_row) serves both nonlinearities, training and inference, and the cell step. The input
projection and the weight gradients are whole-sequence GEMMs in _common.py.
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
from ._math import ftanh, relu
from ._rows import add_column_sums, backward_row_start, clear_idle_forward, visited_time

# contract: multiply-adds may fuse into FMAs (the activations 1.3x faster, as accurate: _math.py)
_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


@njit(**_JIT)
def cell_row(g, ghn, bias, use_relu, hn, o_t, keep):
    """One row of the RNN update: the one body of the forward loops (training and inference, tanh
    and relu) and of the cell step, compiled once per value of `use_relu` and `keep`
    (numba.literally).

    g     (H,)  x-side pre-activations (no bias); when keep, overwritten by h_t (the activation's
                output is all backward needs).
    ghn   (H,)  h-side pre-activations;  bias (H,) b_ih + b_hh (the step kernel passes the summed
                products as g and b_ih, b_hh as ghn and bias).
    use_relu    relu, else tanh;  keep: training (store h_t in g). Both compile-time (literally).
    hn    (H,)  written with the new state;  o_t (H,) written with it too (distinct from hn and
                g: see lstm.cell_row).
    """
    literally(use_relu)
    literally(keep)
    for j in range(hn.shape[0]):
        v = g[j] + ghn[j] + bias[j]
        hj = relu(v) if use_relu else ftanh(v)
        if keep:
            g[j] = hj
        hn[j] = hj
        o_t[j] = hj


@njit(**_JIT)
def forward_step(s, gates, gh, bias, use_relu, h, lengths, reverse, training, out, h_prev):
    """The fused pointwise pass of loop step s (the caller has put h W_hh^T in gh).

    gates   (T, N, H)   in: x_t W_ih^T (time order, no bias); when training, overwritten at each
                        active (t, n) by h_t (the activation's output is all backward needs).
    gh      (N, H)      h W_hh^T of the state before this step.
    bias    (H,)        b_ih + b_hh (zeros without bias).
    h       (N, H)      the state, updated in place (idle rows keep theirs).
    lengths (N,) int32  which (t, n) each row visits: see _rows.py.
    out     (T, N, H)   h_t, 0 at idle (t, n).
    h_prev  (T, N, H) when training, else (0, 0, 0): the state each (t, n) started from (0 at idle).
    No argument may alias another.
    """
    for n in range(h.shape[0]):
        t = visited_time(s, lengths[n], reverse)
        if t < 0:
            clear_idle_forward(s, n, training, out, h_prev, h_prev)
            continue
        if training:
            copy_vector(h_prev[t, n], h[n])
        if training and use_relu:
            cell_row(gates[t, n], gh[n], bias, True, h[n], out[t, n], True)
        elif training:
            cell_row(gates[t, n], gh[n], bias, False, h[n], out[t, n], True)
        elif use_relu:
            cell_row(gates[t, n], gh[n], bias, True, h[n], out[t, n], False)
        else:
            cell_row(gates[t, n], gh[n], bias, False, h[n], out[t, n], False)


@njit(**_JIT)
def forward_small(gates, w_hh_t, bias, use_relu, h, lengths, reverse, training, out, h_prev):
    """The whole forward loop for at most SMALL_BATCH rows, without BLAS; w_hh_t (H, H) is W_hh
    transposed, C-contiguous; the rest as forward_step."""
    gh = np.empty_like(h)
    for s in range(gates.shape[0]):
        small_matmul(h, w_hh_t, gh)
        forward_step(s, gates, gh, bias, use_relu, h, lengths, reverse, training, out, h_prev)


@njit(**_JIT)
def backward_row(y, do_t, dh, dg, use_relu):
    """One row of the backward pass: y (H,) h_t from the forward; do_t, dh (H,) the output's and the
    recurrence's gradient of h_t; dg (H,) written with the pre-activation gradient. use_relu
    literal. The one body of the serial and the team loops (team_backward.py)."""
    literally(use_relu)
    zero = dh.dtype.type(0)
    one = dh.dtype.type(1)
    if use_relu:
        for j in range(dh.shape[0]):
            dg[j] = (dh[j] + do_t[j]) if y[j] > zero else zero
    else:
        for j in range(dh.shape[0]):
            dg[j] = (dh[j] + do_t[j]) * (one - y[j] * y[j])


@njit(**_JIT)
def backward_step(s, gates, use_relu, lengths, reverse, dout, dh, dh_rec, pending, dg_step,
                  in_place, dgates, db):
    """The fused pointwise pass of backward loop step s (run for s = T-1 down to 0).

    gates   (T, N, H)   h_t from forward_step (read only).
    dout    (T, N, H)   read only where t < lengths[n].
    dh      (N, H)      gradient of the state after step s (the caller's GEMM gives the one before).
    dh_rec  (N, H)      when pending: the previous step's GEMM result, copied into dh first for
                        the rows that were active then.
    dg_step (N, H)      out: this step's pre-activation gradients, 0 for idle rows.
    in_place            dg_step is the plane dgates[t] itself (every row active with the same t).
    dgates  (T, N, H)   out: the same gradients in time order (0 at idle (t, n)).
    db      (H,) float64  accumulates the bias gradient.
    Apart from dg_step/dgates as described, no argument may alias another.
    """
    for n in range(dh.shape[0]):
        t = backward_row_start(s, n, lengths[n], reverse, pending, False, dh, dh_rec, dg_step,
                               dgates)
        if t < 0:
            continue
        dgn = dg_step[n]
        if use_relu:
            backward_row(gates[t, n], dout[t, n], dh[n], dgn, True)
        else:
            backward_row(gates[t, n], dout[t, n], dh[n], dgn, False)
        if not in_place:
            copy_vector(dgates[t, n], dgn)
        add_column_sums(db, dgn)


@njit(**_JIT)
def backward_small(gates, use_relu, w_hh, lengths, reverse, dout, dh, dgates, db):
    """The whole backward loop for at most SMALL_BATCH rows, without BLAS; as backward_step."""
    T, N, H = gates.shape
    dg_step = np.empty((N, H), dh.dtype)
    dh_rec = np.empty_like(dh)
    for s in range(T - 1, -1, -1):
        backward_step(s, gates, use_relu, lengths, reverse, dout, dh, dh_rec, s + 1 < T, dg_step,
                      False, dgates, db)
        small_matmul(dg_step, w_hh, dh_rec)
    dh[:, :] = dh_rec


@njit(**_JIT)
def step_units(x, h, w_ih, w_hh, b_ih, b_hh, use_relu, h_out, j0, j1):
    """One inference step of hidden units j0:j1 for a small batch: writes h_out[:, j0:j1] only (see
    lstm.step_units). x (N, I), h (N, H), w_ih (H, I), w_hh (H, H) in PyTorch layout, b_ih, b_hh
    (H,) (zeros without bias); h_out (N, H) aliasing nothing."""
    N = x.shape[0]
    w = j1 - j0
    buf = np.empty((N + 1, w), h.dtype)
    pre = buf[:N]
    spare = buf[N]     # see lstm.step_units: a second destination that aliases nothing
    small_matmul_nt(x, w_ih[j0:j1], pre, False)
    small_matmul_nt(h, w_hh[j0:j1], pre, True)
    for n in range(N):
        if use_relu:
            cell_row(pre[n], b_ih[j0:j1], b_hh[j0:j1], True, h_out[n, j0:j1], spare, False)
        else:
            cell_row(pre[n], b_ih[j0:j1], b_hh[j0:j1], False, h_out[n, j0:j1], spare, False)


def _use_relu(cell) -> bool:
    return cell.name == "rnn_relu"


def forward(req: ForwardRequest) -> ForwardResult:
    x, w, reverse, training = req.x, req.weights, req.reverse, req.training
    w_ih, w_hh = w.w_ih, w.w_hh
    T, N, _ = x.shape
    H = w_hh.shape[0]
    dtype = x.dtype
    use_relu = _use_relu(req.cell)
    bias = fused_bias(w.b_ih, w.b_hh, H, dtype)
    lens = full_lengths(req.lengths, T, N)
    on_team = team_loops.try_forward(team_loops.RNN, req, bias, lens, use_relu=use_relu)
    if on_team is not None:
        return on_team
    gates = project_input(x, w_ih)
    h = req.h0.copy()
    out = np.empty((T, N, H), dtype=dtype)
    h_prev = np.empty((T, N, H), dtype=dtype) if training else no_cache(dtype)
    if N <= SMALL_BATCH:
        forward_small(gates, transpose(w_hh), bias, use_relu, h, lens, reverse, training, out, h_prev)
    else:
        run_forward_loop(forward_step, gates,
                         (bias, use_relu, h, lens, reverse, training, out, h_prev), w_hh, h)
    cache = None
    if training:
        cache = SequenceCache(x, w_ih, w_hh, w.has_bias, lens, reverse, gates, h_prev)
    return ForwardResult(out=out, h_n=h, c_n=None, cache=cache)


def backward(req: BackwardRequest) -> BackwardResult:
    cache = req.cache
    x, w_hh, lens = cache.x, cache.w_hh, cache.lengths
    T, N, _ = x.shape
    H = w_hh.shape[0]
    dtype = x.dtype
    use_relu = _use_relu(req.cell)
    dh = np.array(req.dh_n, dtype=dtype, order="C")
    dout = np.ascontiguousarray(req.dout)
    on_team = (team_backward.try_backward(team_loops.RNN, cache, dout, dh, None, use_relu)
               if cache.team else None)
    if on_team is not None:
        dx, dw_ih, dw_hh, db, _ = on_team
    else:
        gates = cache.gates_in_cell_order()
        dgates = np.empty((T, N, H), dtype=dtype)
        db = np.zeros(H, dtype=np.float64)
        if N <= SMALL_BATCH:
            backward_small(gates, use_relu, w_hh, lens, cache.reverse, dout, dh, dgates, db)
        else:
            run_backward_loop(backward_step, (gates, use_relu, lens, cache.reverse, dout, dh),
                              w_hh, lens, cache.reverse, dh, dgates, db)
        dx, dw_ih = input_gradients(dgates, x, cache.w_ih)
        dw_hh = recurrent_weight_gradient(dgates, cache.h_prev)
    db_ih, db_hh = bias_gradients(db, cache.has_bias, dtype)
    return BackwardResult(dx=dx, dh0=dh, dc0=None, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)


def step_inference(req: StepRequest) -> StepResult:
    x, w = req.x, req.weights
    if x.shape[0] > STEP_BATCH:
        return step_through_forward(forward, req)
    return StepResult(h=pair.stream(pair.RNN, _use_relu(req.cell), x, req.h, None, w.w_ih, w.w_hh,
                                    w.b_ih, w.b_hh)[0])


# Last: the team modules and pair.py run this module's kernels on more threads, so they import it.
from . import pair, team_backward, team_loops  # noqa: E402
