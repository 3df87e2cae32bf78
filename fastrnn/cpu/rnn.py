"""Vanilla RNN, h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh) with act tanh or relu.

One set of loops serves both nonlinearities (a loop-invariant flag, not two compilations). The input
projection and the weight gradients are whole-sequence GEMMs in _common.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..contract import (BackwardRequest, BackwardResult, ForwardRequest, ForwardResult,
                        StepRequest, StepResult)
from ._blas import SMALL_BATCH, STEP_BATCH, copy_vector, small_matmul, small_matmul_nt
from ._common import (SequenceCache, bias_gradients, full_lengths, fused_bias, input_gradients,
                      no_cache, project_input, recurrent_weight_gradient, run_backward_loop,
                      run_forward_loop, step_biases, step_through_forward, transpose)
from ._math import ftanh, relu

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def forward_step(s, gates, gh, bias, use_relu, h, lengths, reverse, training, out, h_prev):
    """The fused pointwise pass of loop step s (the caller has put h W_hh^T in gh).

    gates   (T, N, H)   in: x_t W_ih^T (time order, no bias); when training, overwritten at each
                        active (t, n) by h_t (the activation's output is all backward needs).
    gh      (N, H)      h W_hh^T of the state before this step.
    bias    (H,)        b_ih + b_hh (zeros without bias).
    h       (N, H)      the state, updated in place (idle rows keep theirs).
    lengths (N,) int32  row n runs while s < lengths[n] and visits t = s, or lengths[n]-1-s when
                        reverse; an idle (t, n) is visited once, with t = s.
    out     (T, N, H)   h_t, 0 at idle (t, n).
    h_prev  (T, N, H) when training, else (0, 0, 0): the state each (t, n) started from (0 at idle).
    No argument may alias another.
    """
    N = h.shape[0]
    H = h.shape[1]
    zero = h.dtype.type(0)
    for n in range(N):
        L = lengths[n]
        if s >= L:
            out[s, n, :] = zero
            if training:
                h_prev[s, n, :] = zero
            continue
        t = L - 1 - s if reverse else s
        g = gates[t, n]
        ghn = gh[n]
        hn = h[n]
        o_t = out[t, n]
        if training:
            copy_vector(h_prev[t, n], hn)
        if use_relu:
            for j in range(H):
                hn[j] = relu(g[j] + ghn[j] + bias[j])
        else:
            for j in range(H):
                hn[j] = ftanh(g[j] + ghn[j] + bias[j])
        copy_vector(o_t, hn)
        if training:
            copy_vector(g, hn)


@njit(**_JIT)
def forward_small(gates, w_hh_t, bias, use_relu, h, lengths, reverse, training, out, h_prev):
    """The whole forward loop for at most SMALL_BATCH rows, without BLAS; w_hh_t (H, H) is W_hh
    transposed, C-contiguous; the rest as forward_step."""
    gh = np.empty_like(h)
    for s in range(gates.shape[0]):
        small_matmul(h, w_hh_t, gh)
        forward_step(s, gates, gh, bias, use_relu, h, lengths, reverse, training, out, h_prev)


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
    N = dh.shape[0]
    H = dh.shape[1]
    zero = dh.dtype.type(0)
    one = dh.dtype.type(1)
    for n in range(N):
        L = lengths[n]
        if pending and s + 1 < L:
            copy_vector(dh[n], dh_rec[n])
        dgn = dg_step[n]
        if s >= L:
            dgates[s, n, :] = zero
            dgn[:] = zero
            continue
        t = L - 1 - s if reverse else s
        y = gates[t, n]
        do_t = dout[t, n]
        dhn = dh[n]
        if use_relu:
            for j in range(H):
                dgn[j] = (dhn[j] + do_t[j]) if y[j] > zero else zero
        else:
            for j in range(H):
                dgn[j] = (dhn[j] + do_t[j]) * (one - y[j] * y[j])
        if not in_place:
            copy_vector(dgates[t, n], dgn)
        for j in range(H):
            db[j] += dgn[j]


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
def step(x, h, w_ih, w_hh, b_ih, b_hh, use_relu, h_out):
    """One inference step for a small batch: x (N, I), h (N, H), w_ih (H, I), w_hh (H, H) in
    PyTorch layout, b_ih, b_hh (H,) or empty (no bias); h_out (N, H) written, aliasing nothing."""
    N, H = h.shape
    small_matmul_nt(x, w_ih, h_out, False)
    small_matmul_nt(h, w_hh, h_out, True)
    has_bias = b_ih.shape[0] == H
    for n in range(N):
        p = h_out[n]
        if has_bias:
            for j in range(H):
                p[j] += b_ih[j] + b_hh[j]
        if use_relu:
            for j in range(H):
                p[j] = relu(p[j])
        else:
            for j in range(H):
                p[j] = ftanh(p[j])


def _use_relu(cell) -> bool:
    return cell.name == "rnn_relu"


def forward(req: ForwardRequest) -> ForwardResult:
    x, w, reverse, training = req.x, req.weights, req.reverse, req.training
    w_ih, w_hh = w.w_ih, w.w_hh
    T, N, _ = x.shape
    H = w_hh.shape[0]
    dtype = x.dtype
    use_relu = _use_relu(req.cell)
    gates = project_input(x, w_ih)
    bias = fused_bias(w.b_ih, w.b_hh, H, dtype)
    h = req.h0.copy()
    out = np.empty((T, N, H), dtype=dtype)
    lens = full_lengths(req.lengths, T, N)
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
    dgates = np.empty((T, N, H), dtype=dtype)
    db = np.zeros(H, dtype=np.float64)
    if N <= SMALL_BATCH:
        backward_small(cache.gates, use_relu, w_hh, lens, cache.reverse, dout, dh, dgates, db)
    else:
        run_backward_loop(backward_step, (cache.gates, use_relu, lens, cache.reverse, dout, dh),
                          w_hh, lens, cache.reverse, dh, dgates, db)
    dx, dw_ih = input_gradients(dgates, x, cache.w_ih)
    dw_hh = recurrent_weight_gradient(dgates, cache.h_prev)
    db_ih, db_hh = bias_gradients(db, cache.has_bias, dtype)
    return BackwardResult(dx=dx, dh0=dh, dc0=None, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)


def step_inference(req: StepRequest) -> StepResult:
    x, w = req.x, req.weights
    if x.shape[0] > STEP_BATCH:
        return step_through_forward(forward, req)
    h1 = np.empty_like(req.h)
    b_ih, b_hh = step_biases(w, x.dtype)
    step(x, req.h, w.w_ih, w.w_hh, b_ih, b_hh, _use_relu(req.cell), h1)
    return StepResult(h=h1)
