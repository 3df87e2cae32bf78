"""GRU (gates r, z, n; b_hn inside the r product, as PyTorch and cuDNN):

    r = s(x W_ir + b_ir + h W_hr + b_hr),  z = s(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn)),  h' = (1 - z) * n + z * h

The gradients of the input-side and hidden-side pre-activations differ only in the n block
(dn_i = dn, dn_h = dn * r), so backward keeps them in one (T, N, 4H) buffer laid out
[n_h, r, z, n_i]: columns H:4H are the input side in PyTorch's order (one GEMM for dx and dW_ih) and
columns 0:3H the hidden side in the order (n, r, z) (one GEMM for dW_hh, rows then put back).
"""
from __future__ import annotations

import numpy as np
from numba import literally, njit

from ..contract import (BackwardRequest, BackwardResult, ForwardRequest, ForwardResult,
                        StepRequest, StepResult)
from ._blas import SMALL_BATCH, STEP_BATCH, copy_vector, small_matmul, small_matmul_nt
from ._common import (SequenceCache, full_lengths, input_gradients, no_cache, project_input,
                      recurrent_weight_gradient, run_backward_loop, run_forward_loop,
                      step_through_forward, transpose)
from ._math import ftanh, sigmoid
from ._rows import add_column_sums, backward_row_start, clear_idle_forward, visited_time

# contract: multiply-adds may fuse into FMAs (the activations 1.3x faster, as accurate: _math.py)
_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


@njit(**_JIT)
def cell_row(g, ghn, bias_x, bias_hn, hn, o_t, hl, keep):
    """One row of the GRU update: the one body of the forward loops (training and inference) and of
    the cell step, compiled once per value of `keep` (numba.literally).

    g       (3H,)  x-side pre-activations (no bias); when keep, overwritten by the activated r, z, n.
    ghn     (3H,)  h-side pre-activations (no bias).
    bias_x  (3H,)  [b_ir + b_hr, b_iz + b_hz, b_in];  bias_hn (H,) b_hn.
    hn      (H,)   the state, read and overwritten with the new one;  o_t (H,) written with it too
                   (distinct from hn: see lstm.cell_row).
    hl      (H,)   when keep: written with h W_hn^T + b_hn (the cache for backward); else unused.
    hn, o_t and g (written when keep) alias none of the others.
    """
    literally(keep)
    H = hn.shape[0]
    for j in range(H):
        r = sigmoid(g[j] + ghn[j] + bias_x[j])
        z = sigmoid(g[H + j] + ghn[H + j] + bias_x[H + j])
        a = ghn[2 * H + j] + bias_hn[j]
        nn = ftanh(g[2 * H + j] + bias_x[2 * H + j] + r * a)
        hj = nn + z * (hn[j] - nn)
        if keep:
            g[j] = r
            g[H + j] = z
            g[2 * H + j] = nn
            hl[j] = a
        hn[j] = hj
        o_t[j] = hj


@njit(**_JIT)
def forward_step(s, gates, gh, bias_x, bias_hn, h, lengths, reverse, training, out, h_prev,
                 hn_lin):
    """The fused pointwise pass of loop step s (the caller has put h W_hh^T in gh).

    gates   (T, N, 3H)  in: x_t W_ih^T (time order, no bias); when training, overwritten at each
                        active (t, n) by the activated r, z, n.
    gh      (N, 3H)     h W_hh^T of the state before this step (no bias).
    bias_x  (3H,)       [b_ir + b_hr, b_iz + b_hz, b_in];  bias_hn (H,) b_hn (zeros without bias).
    h       (N, H)      the state, updated in place (idle rows keep theirs).
    lengths (N,) int32  which (t, n) each row visits: see _rows.py.
    out     (T, N, H)   h_t, 0 at idle (t, n).
    h_prev, hn_lin (T, N, H) when training, else (0, 0, 0): the state each (t, n) started from and
                        h W_hn^T + b_hn there (0 at idle (t, n)).
    No argument may alias another.
    """
    for n in range(h.shape[0]):
        t = visited_time(s, lengths[n], reverse)
        if t < 0:
            clear_idle_forward(s, n, training, out, h_prev, hn_lin)
            continue
        if training:
            copy_vector(h_prev[t, n], h[n])
            cell_row(gates[t, n], gh[n], bias_x, bias_hn, h[n], out[t, n], hn_lin[t, n], True)
        else:
            cell_row(gates[t, n], gh[n], bias_x, bias_hn, h[n], out[t, n], h[n], False)


@njit(**_JIT)
def forward_small(gates, w_hh_t, bias_x, bias_hn, h, lengths, reverse, training, out, h_prev,
                  hn_lin):
    """The whole forward loop for at most SMALL_BATCH rows, without BLAS; w_hh_t (H, 3H) is W_hh
    transposed, C-contiguous; the rest as forward_step."""
    gh = np.empty((h.shape[0], gates.shape[2]), h.dtype)
    for s in range(gates.shape[0]):
        small_matmul(h, w_hh_t, gh)
        forward_step(s, gates, gh, bias_x, bias_hn, h, lengths, reverse, training, out, h_prev,
                     hn_lin)


@njit(**_JIT)
def backward_row(g, hp, hl, do_t, dh, d_r, d_z, d_nh, d_ni):
    """One row of the backward pass, the one body of the serial and the team loops
    (team_backward.py).

    g (3H,) activated r, z, n;  hp (H,) the state the step started from;  hl (H,) h W_hn^T + b_hn;
    do_t (H,) the output's gradient;  dh (H,) in: the recurrence's gradient of h_t, out: its direct
    part dh * z (the caller adds the recurrent product);  d_r, d_z (H,) out: gradients of the r and
    z pre-activations (both sides);  d_nh, d_ni (H,) out: of h W_hn + b_hn and of x W_in + b_in.
    The outputs alias nothing."""
    H = dh.shape[0]
    one = dh.dtype.type(1)
    for j in range(H):
        r = g[j]
        z = g[H + j]
        nn = g[2 * H + j]
        dhj = dh[j] + do_t[j]
        dan = dhj * (one - z) * (one - nn * nn)
        d_r[j] = dan * hl[j] * r * (one - r)
        d_z[j] = dhj * (hp[j] - nn) * z * (one - z)
        d_nh[j] = dan * r
        d_ni[j] = dan
        dh[j] = dhj * z


@njit(**_JIT)
def backward_step(s, gates, h_prev, hn_lin, lengths, reverse, dout, dh, dh_rec, pending, dg_step,
                  in_place, dgates, db):
    """The fused pointwise pass of backward loop step s (run for s = T-1 down to 0).

    gates   (T, N, 3H)  activated r, z, n from forward_step;  h_prev, hn_lin (T, N, H): read only.
    dout    (T, N, H)   read only where t < lengths[n].
    dh      (N, H)      in: gradient of the state after step s; out, for active rows: its direct
                        part dh * z (the caller adds dg_step @ W_hh).
    dh_rec  (N, H)      when pending: the previous step's GEMM result, added into dh first for the
                        rows that were active then.
    dg_step (N, 3H)     out: gradients of h W_hh^T (order r, z, n), 0 for idle rows.
    in_place            always False here (dg_step is narrower than dgates).
    dgates  (T, N, 4H)  out: [n_h, r, z, n_i] gradients in time order, 0 at idle (t, n).
    db      (4H,) float64  accumulates the column sums of dgates.
    No argument may alias another.
    """
    H = dh.shape[1]
    for n in range(dh.shape[0]):
        t = backward_row_start(s, n, lengths[n], reverse, pending, True, dh, dh_rec, dg_step,
                               dgates)
        if t < 0:
            continue
        dgn = dg_step[n]
        dgt = dgates[t, n]
        backward_row(gates[t, n], h_prev[t, n], hn_lin[t, n], dout[t, n], dh[n], dgn[:H],
                     dgn[H:2 * H], dgn[2 * H:], dgt[3 * H:])
        copy_vector(dgt[:H], dgn[2 * H:])
        copy_vector(dgt[H:3 * H], dgn[:2 * H])
        add_column_sums(db, dgt)


@njit(**_JIT)
def backward_small(gates, h_prev, hn_lin, w_hh, lengths, reverse, dout, dh, dgates, db):
    """The whole backward loop for at most SMALL_BATCH rows, without BLAS; as backward_step."""
    T, N, G = gates.shape
    dg_step = np.empty((N, G), dh.dtype)
    dh_rec = np.empty_like(dh)
    for s in range(T - 1, -1, -1):
        backward_step(s, gates, h_prev, hn_lin, lengths, reverse, dout, dh, dh_rec, s + 1 < T,
                      dg_step, False, dgates, db)
        small_matmul(dg_step, w_hh, dh_rec)
    dh += dh_rec


@njit(**_JIT)
def step_units(x, h, w_ih, w_hh, b_ih, b_hh, h_out, j0, j1):
    """One inference step of hidden units j0:j1 for at most STEP_BATCH rows: writes h_out[:, j0:j1]
    only (see lstm.step_units). x (N, I), h (N, H), w_ih (3H, I), w_hh (3H, H) in PyTorch layout,
    b_ih, b_hh (3H,) (zeros without bias); h_out (N, H) aliasing nothing."""
    N = x.shape[0]
    H = w_hh.shape[1]
    w = j1 - j0
    buf = np.empty((2 * N + 2, 3 * w), h.dtype)    # x side, h side, bias_x, spare: one allocation
    gx = buf[:N]
    gh = buf[N:2 * N]
    bias_x = buf[2 * N]
    spare = buf[2 * N + 1, :w]   # see lstm.step_units: a second destination that aliases nothing
    if w == H:            # all units: one product over all rows (see lstm.step_units)
        small_matmul_nt(x, w_ih, gx, False)
        small_matmul_nt(h, w_hh, gh, False)
    for gate in range(3):
        r0 = gate * H + j0
        if w < H:
            small_matmul_nt(x, w_ih[r0:r0 + w], gx[:, gate * w:(gate + 1) * w], False)
            small_matmul_nt(h, w_hh[r0:r0 + w], gh[:, gate * w:(gate + 1) * w], False)
        for j in range(w):
            b = b_ih[r0 + j]
            bias_x[gate * w + j] = b + b_hh[r0 + j] if gate < 2 else b
    bias_hn = b_hh[2 * H + j0:2 * H + j1]
    for n in range(N):
        h_n = h_out[n, j0:j1]
        copy_vector(h_n, h[n, j0:j1])
        cell_row(gx[n], gh[n], bias_x, bias_hn, h_n, spare, spare, False)


def _split_bias(b_ih, b_hh, H: int, dtype):
    """[b_ir + b_hr, b_iz + b_hz, b_in] and b_hn (zeros without bias)."""
    if b_ih is None:
        return np.zeros(3 * H, dtype=dtype), np.zeros(H, dtype=dtype)
    bias_x = b_ih.copy()
    bias_x[:2 * H] += b_hh[:2 * H]
    return bias_x, np.ascontiguousarray(b_hh[2 * H:])


def forward(req: ForwardRequest) -> ForwardResult:
    x, w, reverse, training = req.x, req.weights, req.reverse, req.training
    w_ih, w_hh = w.w_ih, w.w_hh
    T, N, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    bias_x, bias_hn = _split_bias(w.b_ih, w.b_hh, H, dtype)
    lens = full_lengths(req.lengths, T, N)
    on_team = team_loops.try_forward(team_loops.GRU, req, bias_x, lens, bias_hn=bias_hn)
    if on_team is not None:
        return on_team
    gates = project_input(x, w_ih)
    h = req.h0.copy()
    out = np.empty((T, N, H), dtype=dtype)
    if training:
        h_prev = np.empty((T, N, H), dtype=dtype)
        hn_lin = np.empty((T, N, H), dtype=dtype)
    else:
        h_prev = hn_lin = no_cache(dtype)
    if N <= SMALL_BATCH:
        forward_small(gates, transpose(w_hh), bias_x, bias_hn, h, lens, reverse, training, out,
                      h_prev, hn_lin)
    else:
        run_forward_loop(forward_step, gates,
                         (bias_x, bias_hn, h, lens, reverse, training, out, h_prev, hn_lin), w_hh, h)
    cache = None
    if training:
        cache = SequenceCache(x, w_ih, w_hh, w.has_bias, lens, reverse, gates, h_prev, hn_lin)
    return ForwardResult(out=out, h_n=h, c_n=None, cache=cache)


def backward(req: BackwardRequest) -> BackwardResult:
    cache = req.cache
    x, w_hh, lens = cache.x, cache.w_hh, cache.lengths
    T, N, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    dh = np.array(req.dh_n, dtype=dtype, order="C")
    dout = np.ascontiguousarray(req.dout)
    on_team = (team_backward.try_backward(team_loops.GRU, cache, dout, dh, None)
               if cache.team else None)
    if on_team is not None:
        dx, dw_ih, dw_hh, db_in, db_h = on_team
        db_ih = db_hh = None
        if cache.has_bias:
            db_ih, db_hh = db_in.astype(dtype), db_h.astype(dtype)
        return BackwardResult(dx=dx, dh0=dh, dc0=None, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih,
                              db_hh=db_hh)
    gates = cache.gates_in_cell_order()
    dgates = np.empty((T, N, 4 * H), dtype=dtype)
    db = np.zeros(4 * H, dtype=np.float64)
    if N <= SMALL_BATCH:
        backward_small(gates, cache.h_prev, cache.extra, w_hh, lens, cache.reverse, dout, dh,
                       dgates, db)
    else:
        run_backward_loop(backward_step,
                          (gates, cache.h_prev, cache.extra, lens, cache.reverse, dout, dh),
                          w_hh, lens, cache.reverse, dh, dgates, db, dg_width=3 * H, accumulate=True)
    dx, dw_ih = input_gradients(dgates[:, :, H:], x, cache.w_ih)
    dw_nrz = recurrent_weight_gradient(dgates[:, :, :3 * H], cache.h_prev)
    dw_hh = np.concatenate([dw_nrz[H:], dw_nrz[:H]])
    db_ih = db_hh = None
    if cache.has_bias:
        db_ih = db[H:].astype(dtype)
        db_hh = np.concatenate([db[H:3 * H], db[:H]]).astype(dtype)
    return BackwardResult(dx=dx, dh0=dh, dc0=None, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)


def step_inference(req: StepRequest) -> StepResult:
    x, w = req.x, req.weights
    if x.shape[0] > STEP_BATCH:
        return step_through_forward(forward, req)
    return StepResult(h=pair.stream(pair.GRU, False, x, req.h, None, w.w_ih, w.w_hh, w.b_ih,
                                    w.b_hh)[0])


# Last: the team modules and pair.py run this module's kernels on more threads, so they import it.
from . import pair, team_backward, team_loops  # noqa: E402
