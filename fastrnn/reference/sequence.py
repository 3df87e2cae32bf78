"""The time loop shared by the reference cells: hoisted input projection, lengths, reverse, BPTT.

A cell contributes two pointwise functions (see rnn.py, lstm.py, gru.py):

    step(gx, gh, h, c) -> (h_new, c_new, saved)
        gx = x_t W_ih^T + b_ih and gh = h W_hh^T + b_hh, both (N, G*H); c is None without a cell state.
    step_backward(dh, dc, saved, h, c) -> (dgx, dgh, dh_direct, dc_prev)
        dgx, dgh: gradients with respect to gx and gh (they differ only for the GRU's n gate);
        dh_direct: the part of dh_prev that does not flow through W_hh (0 when there is none);
        dc_prev: gradient with respect to c (None without a cell state).

The loop runs step s = 0..T-1; row n is active while s < lengths[n] and then visits time index
t = s (forward) or lengths[n] - 1 - s (reverse). Idle rows keep their state and write no output.
The request's lengths are already an int32 array or None (fastrnn.contract normalises them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..contract import BackwardRequest, BackwardResult, ForwardRequest, ForwardResult


@dataclass
class ReferenceCache:
    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    has_bias: bool
    lengths: np.ndarray
    reverse: bool
    steps: list = field(default_factory=list)  # per step: (t, active, h_prev, c_prev, saved) or None


def _time_index(s: int, lens: np.ndarray, reverse: bool):
    active = s < lens
    t = (lens - 1 - s) if reverse else np.full(lens.shape, s, dtype=lens.dtype)
    return np.where(active, t, 0), active


def sequence_forward(ops, req: ForwardRequest) -> ForwardResult:
    cell, x, h0, c0, w = req.cell, req.x, req.h0, req.c0, req.weights
    reverse, training = req.reverse, req.training
    w_ih, w_hh = w.w_ih, w.w_hh
    T, N, _ = x.shape
    H = w_hh.shape[1]
    lens = np.full(N, T, dtype=np.int32) if req.lengths is None else req.lengths
    rows = np.arange(N)
    gx_all = x @ w_ih.T
    if w.has_bias:
        gx_all += w.b_ih
    out = np.zeros((T, N, H), dtype=x.dtype)
    h = h0.copy()
    c = c0.copy() if cell.has_cell_state else None
    cache = ReferenceCache(x, w_ih, w_hh, w.has_bias, lens, reverse) if training else None
    for s in range(T):
        t, active = _time_index(s, lens, reverse)
        if not active.any():
            if training:
                cache.steps.append(None)
            continue
        gh = h @ w_hh.T
        if w.has_bias:
            gh += w.b_hh
        h_new, c_new, saved = ops.step(gx_all[t, rows], gh, h, c)
        if training:
            cache.steps.append((t, active, h, c, saved))
        keep = active[:, None]
        h = np.where(keep, h_new, h)
        if c is not None:
            c = np.where(keep, c_new, c)
        out[t[active], rows[active]] = h_new[active]
    return ForwardResult(out=out, h_n=h, c_n=c, cache=cache)


def sequence_backward(ops, req: BackwardRequest) -> BackwardResult:
    cell, cache, dout, dh_n, dc_n = req.cell, req.cache, req.dout, req.dh_n, req.dc_n
    x, w_ih, w_hh = cache.x, cache.w_ih, cache.w_hh
    T, N, I = x.shape
    H = w_hh.shape[1]
    GH = w_hh.shape[0]
    rows = np.arange(N)
    dgx_all = np.zeros((T, N, GH), dtype=x.dtype)   # indexed by time, like x
    dgh_all = np.zeros((T, N, GH), dtype=x.dtype)   # indexed by step, like h_prev_all
    h_prev_all = np.zeros((T, N, H), dtype=x.dtype)
    dh = dh_n.copy()
    dc = dc_n.copy() if cell.has_cell_state else None
    for s in range(T - 1, -1, -1):
        record = cache.steps[s]
        if record is None:
            continue
        t, active, h_prev, c_prev, saved = record
        keep = active[:, None]
        dh_total = dh + np.where(keep, dout[t, rows], 0)
        dgx, dgh, dh_direct, dc_prev = ops.step_backward(dh_total, dc, saved, h_prev, c_prev)
        dgx = np.where(keep, dgx, 0)
        dgh = np.where(keep, dgh, 0)
        dh = np.where(keep, dgh @ w_hh + dh_direct, dh)
        if dc is not None:
            dc = np.where(keep, dc_prev, dc)
        dgx_all[t[active], rows[active]] = dgx[active]
        dgh_all[s] = dgh
        h_prev_all[s] = h_prev
    dx = dgx_all @ w_ih
    dw_ih = dgx_all.reshape(T * N, GH).T @ x.reshape(T * N, I)
    dw_hh = dgh_all.reshape(T * N, GH).T @ h_prev_all.reshape(T * N, H)
    db_ih = dgx_all.sum(axis=(0, 1)) if cache.has_bias else None
    db_hh = dgh_all.sum(axis=(0, 1)) if cache.has_bias else None
    return BackwardResult(dx=dx, dh0=dh, dc0=dc, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)
