"""The backward loop of the three cells on the thread team (team.py), after a team training forward
(team_loops.try_forward) whose gates each member reads in its own region of that forward's buffer.

Member p owns hidden units bounds[p]:bounds[p+1], and so the gate columns of those units (team
order: one contiguous block) and the columns j0:j1 of dh. Per loop step (t from the last visited
back to the first) each member runs the cells' own backward row body on its units, writing its
block of dgates[t], meets the others at the barrier (the GEMM reads all of dgates[t]), then runs
its slice of the recurrent product, dh[:, j0:j1] = dgates[t] @ W_hh[team order][:, j0:j1], with
packed.py's kernel on its own block of W_hh, packed once per call. Nothing else is shared: dh and dc
columns belong to one member, and each step writes its own plane of dgates, so one barrier a step
suffices. The GRU's hidden-side gradients differ from its input-side ones in the n block (n_h = n_i
* r), so its step product reads a separate (N, G) buffer, double-buffered by step parity (a member
writing step s-1's while a slower one still reads step s's), and adds into dh, which already holds
the direct term dh * z. Only batches whose rows all run the whole sequence come here
(try_forward).

The whole-sequence products follow in the same call, each member with single-threaded GEMMs: dx for
its share of the T*N rows (through W_ih's rows in team order, each member gathering its own block
before the loop, whose barriers complete them all), dW_ih and dW_hh for its own gate rows (from its
own columns of dgates), which it then puts in the cells' row order itself (its rows are its alone;
host passes over W_ih and the two gradients took ~0.6 ms a layer at LSTM H = 256). So a training
call never wakes BLAS's own threads, which spin for a while after each call and would steal the
team's cores from the next one.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit

from . import gru, lstm, packed, rnn, team
from ._blas import copy_vector, gather_rows, put_rows
from ._rows import add_column_sums
from ._spin import arrive_and_wait
from .team import GRU, LSTM

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def backward_loop(member, members, cell, use_relu, fn, gates, extra, h_prev, dout, dh, dc, w_hh,
                  order, dgates, dg_nh, dg_step, db, db_nh, reverse, bounds, flags, x2d, w_ih,
                  w_ih_team, dx2d, dw_ih, dw_hh):
    """One member's share of the backward of a full-length batch: the recurrence, then its share of
    the whole-sequence products (no BLAS threads wake during a team call).

    gates        (T, N, G)  activated gates from the team training forward: member p's columns
                            (team order b0:b1) as one (T, N, b1 - b0) block at T*N*b0.
    extra        (T, N, H)  the forward's second cache: LSTM c_prev, GRU h W_hn^T + b_hn (unused
                            for RNN);  h_prev (T, N, H) the states each step started from.
    dout         (T, N, H)  the output's gradient.
    dh, dc       (N, H)     in: gradients of h_n (c_n); out: of h0 (c0). dc: LSTM only.
    w_hh         (G, H)     in PyTorch's layout; member p packs W_hh[order, j0:j1] (packed.py) at
                            the start of the call;  order (G,) the team order (TeamLayout).
    dgates       (T, N, G)  out: the input-side pre-activation gradients, team order (LSTM, RNN:
                            the only ones; GRU: r, z and x W_in's).
    dg_nh        (T, N, H)  GRU out: the gradient of h W_hn^T + b_hn, unit order (else unused).
    dg_step      (2, N, G)  GRU scratch: each step's hidden-side gradients (r, z, n_h; team order),
                            double-buffered by step parity (else unused).
    db (G,), db_nh (H,) float64  accumulate the bias gradients (team order; unit order), members
                            adding disjoint columns.
    cell         LSTM, GRU or RNN;  use_relu (RNN) bool;  fn the cblas_?gemm address.
    bounds, flags as team_loops.forward_loop's.
    x2d (T*N, I)            the input;  w_ih (G, I) in PyTorch's layout.
    w_ih_team    (G, I)     scratch: W_ih's rows in team order (member p gathers rows b0:b1).
    dx2d         (T*N, I)   out: dgates @ W_ih (member p: its share of the rows).
    dw_ih (G, I), dw_hh (G, H)  out, the cells' own row order: dgates^T x and the hidden side's
                            ^T h_prev (member p: its own gate rows, order[b0:b1], from its own
                            columns, through a scratch in team order).
    """
    T, N, G = gates.shape
    H = h_prev.shape[2]
    n_gates = team.gate_count(cell)
    j0, j1 = bounds[member], bounds[member + 1]
    b0, b1 = n_gates * j0, n_gates * j1
    width = j1 - j0
    w_p = packed.pack_row_block(w_hh, order, j0, j1)
    gather_rows(w_ih_team[b0:b1], w_ih, order[b0:b1])    # read by every member after the loop
    mine = team.member_region(gates, b0, b1)
    db_p = db[b0:b1]
    recurrent = np.empty((N, width), dtype=dh.dtype)      # GRU: the product, added into dh
    for s in range(T - 1, -1, -1):
        t = T - 1 - s if reverse else s
        for n in range(N):
            dg = dgates[t, n, b0:b1]
            if cell == LSTM:
                lstm.backward_row(mine[t, n], extra[t, n, j0:j1], dout[t, n, j0:j1],
                                  dh[n, j0:j1], dc[n, j0:j1], dg)
            elif cell == GRU:
                d_nh = dg_nh[t, n, j0:j1]
                gru.backward_row(mine[t, n], h_prev[t, n, j0:j1], extra[t, n, j0:j1],
                                 dout[t, n, j0:j1], dh[n, j0:j1], dg[:width],
                                 dg[width:2 * width], d_nh, dg[2 * width:])
                step_row = dg_step[s % 2, n, b0:b1]
                copy_vector(step_row[:2 * width], dg[:2 * width])
                copy_vector(step_row[2 * width:], d_nh)
                add_column_sums(db_nh[j0:j1], d_nh)
            elif use_relu:
                rnn.backward_row(mine[t, n], dout[t, n, j0:j1], dh[n, j0:j1], dg, True)
            else:
                rnn.backward_row(mine[t, n], dout[t, n, j0:j1], dh[n, j0:j1], dg, False)
            add_column_sums(db_p, dg)
        arrive_and_wait(flags, member, members, T - s)
        if cell == GRU:
            packed.matmul_into(dg_step[s % 2], w_p, recurrent)
            dh[:, j0:j1] += recurrent
        else:
            packed.matmul_into(dgates[t], w_p, dh[:, j0:j1])
    # Every plane of dgates was written before its step's barrier, so all of it is complete here.
    rows = T * N
    r0, r1 = rows * member // members, rows * (member + 1) // members
    d2 = dgates.reshape(rows, G)
    h2 = h_prev.reshape(rows, H)
    team.gemm_into(fn, d2[r0:r1], w_ih_team, dx2d[r0:r1], 0.0)
    mine_ih = np.empty((b1 - b0, x2d.shape[1]), dtype=dh.dtype)
    team.gemm_tn_into(fn, d2[:, b0:b1], x2d, mine_ih, 0.0)
    put_rows(dw_ih, order[b0:b1], mine_ih)
    mine_hh = np.empty((b1 - b0, H), dtype=dh.dtype)
    if cell == GRU:
        team.gemm_tn_into(fn, d2[:, b0:b0 + 2 * width], h2, mine_hh[:2 * width], 0.0)
        team.gemm_tn_into(fn, dg_nh.reshape(rows, H)[:, j0:j1], h2, mine_hh[2 * width:], 0.0)
    else:
        team.gemm_tn_into(fn, d2[:, b0:b1], h2, mine_hh, 0.0)
    put_rows(dw_hh, order[b0:b1], mine_hh)


def try_backward(cell: int, cache, dout: np.ndarray, dh: np.ndarray, dc: Optional[np.ndarray],
                 use_relu: bool = False):
    """The backward of a team training forward's cache (SequenceCache with .team set):
    (dx, dw_ih, dw_hh, db_ih, db_hh) with the weight gradients in the cells' own row order and the
    bias gradients in float64 (cells' order; LSTM and RNN: the same array twice, their biases enter
    one sum), dh (dc) updated in place to the gradients of h0 (c0); or None when another call holds
    the team (the caller then runs the serial loop on cache.gates_in_cell_order()).
    dout C-contiguous."""
    layout = cache.team
    gates, x = cache.gates, cache.x
    T, N, G = gates.shape
    I, H = x.shape[2], dh.shape[1]
    dtype = gates.dtype
    gru_only = (T, N, H) if cell == GRU else (0, 0, 0)
    dgates = np.empty_like(gates)
    dg_nh = np.empty(gru_only, dtype=dtype)
    dg_step = np.empty((2, N, G) if cell == GRU else (0, 0, 0), dtype=dtype)
    db = np.zeros(G, dtype=np.float64)
    db_nh = np.zeros(H if cell == GRU else 0, dtype=np.float64)
    dc_arg = dc if dc is not None else np.empty((0, 0), dtype=dtype)
    extra = cache.extra if cache.extra is not None else np.empty((0, 0, 0), dtype=dtype)
    dx = np.empty((T, N, I), dtype=dtype)
    dw_ih = np.empty((G, I), dtype=dtype)
    dw_hh = np.empty((G, H), dtype=dtype)
    args = (cell, bool(use_relu), team.gemm_address(dtype), gates, extra, cache.h_prev, dout, dh,
            dc_arg, np.ascontiguousarray(cache.w_hh), layout.order, dgates, dg_nh, dg_step, db,
            db_nh, cache.reverse, layout.bounds, team.new_flags(layout.members),
            np.ascontiguousarray(x).reshape(T * N, I), np.ascontiguousarray(cache.w_ih),
            np.empty((G, I), dtype=dtype), dx.reshape(T * N, I), dw_ih, dw_hh)
    if not team.try_run(layout.members, backward_loop, args):
        return None
    db_ih = layout.to_cell_order(db)
    db_hh = db_ih
    if cell == GRU:            # the hidden side's n block is b_hn's gradient, not b_in's
        db_hh_team = db.copy()
        bounds = layout.bounds
        for p in range(layout.members):
            j0, j1 = bounds[p], bounds[p + 1]
            db_hh_team[3 * j0 + 2 * (j1 - j0):3 * j1] = db_nh[j0:j1]
        db_hh = layout.to_cell_order(db_hh_team)
    return dx, dw_ih, dw_hh, db_ih, db_hh

