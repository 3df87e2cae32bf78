"""The backward loop of LSTM and RNN on the thread team (team.py), after a team training forward
(team_loops.try_training) whose gates it reads in the same team order.

Member p owns hidden units bounds[p]:bounds[p+1], and so the gate columns of those units (team
order: one contiguous block) and the columns j0:j1 of dh. Per loop step (t from the last visited
back to the first) each member runs the cells' own backward row body on its units, writing its
block of dgates[t], meets the others at the barrier (the GEMM reads all of dgates[t]), then runs
its slice of the recurrent product, dh[:, j0:j1] = dgates[t] @ W_hh[team order][:, j0:j1], with
packed.py's kernel on its own block of W_hh, packed once per call. Nothing else is shared: dh and dc
columns belong to one member, and each step writes its own plane of dgates, so one barrier a step
suffices. Only batches whose rows all run the whole sequence come here (try_training).

The whole-sequence products follow in the same call, each member with single-threaded GEMMs: dx for
its share of the T*N rows (W_ih's rows permuted to team order), dW_ih and dW_hh for its own gate
rows (from its own columns of dgates); the host then puts the weight gradients' rows back in the
cells' order (TeamLayout). So a training call never wakes BLAS's own threads, which spin for a
while after each call and would steal the team's cores from the next one.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit

from . import lstm, packed, rnn, team
from ._rows import add_column_sums
from ._spin import arrive_and_wait
from .team import LSTM

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def backward_loop(member, members, cell, use_relu, fn, gates, c_prev, dout, dh, dc, w_hh, order,
                  dgates, db, reverse, bounds, flags, x2d, h_prev2d, w_ih_team, dx2d, dw_ih, dw_hh):
    """One member's share of the backward of a full-length batch: the recurrence, then its share of
    the whole-sequence products (no BLAS threads wake during a team call).

    gates        (T, N, G)  activated gates from the team training forward, team order.
    c_prev       (T, N, H)  LSTM: the cell state each step started from (unused for RNN).
    dout         (T, N, H)  the output's gradient.
    dh, dc       (N, H)     in: gradients of h_n (c_n); out: of h0 (c0). dc unused for RNN.
    w_hh         (G, H)     in PyTorch's layout; member p packs W_hh[order, j0:j1] (packed.py) at
                            the start of the call;  order (G,) the team order (TeamLayout).
    dgates       (T, N, G)  out: pre-activation gradients, team order.
    db           (G,) float64  accumulates the bias gradient, team order (members add disjoint
                            columns).
    cell         LSTM or RNN;  use_relu (RNN) bool;  fn the cblas_?gemm address (team.gemm_address).
    bounds, flags as team_loops.forward_loop's.
    x2d (T*N, I), h_prev2d (T*N, H)  the input and the states each step started from.
    w_ih_team    (G, I)     W_ih's rows in team order.
    dx2d         (T*N, I)   out: dgates @ W_ih (member p: its share of the rows).
    dw_ih (G, I), dw_hh (G, H)  out, team order: dgates^T x, dgates^T h_prev (member p: its own
                            gate rows, from its own columns of dgates).
    """
    T, N, G = gates.shape
    n_gates = 4 if cell == LSTM else 1
    j0, j1 = bounds[member], bounds[member + 1]
    b0, b1 = n_gates * j0, n_gates * j1
    w_p = packed.pack_row_block(w_hh, order, j0, j1)
    db_p = db[b0:b1]
    for s in range(T - 1, -1, -1):
        t = T - 1 - s if reverse else s
        for n in range(N):
            dg = dgates[t, n, b0:b1]
            if cell == LSTM:
                lstm.backward_row(gates[t, n, b0:b1], c_prev[t, n, j0:j1], dout[t, n, j0:j1],
                                  dh[n, j0:j1], dc[n, j0:j1], dg)
            elif use_relu:
                rnn.backward_row(gates[t, n, b0:b1], dout[t, n, j0:j1], dh[n, j0:j1], dg, True)
            else:
                rnn.backward_row(gates[t, n, b0:b1], dout[t, n, j0:j1], dh[n, j0:j1], dg, False)
            add_column_sums(db_p, dg)
        arrive_and_wait(flags, member, members, T - s)
        packed.matmul_into(dgates[t], w_p, dh[:, j0:j1])
    # Every plane of dgates was written before its step's barrier, so all of it is complete here.
    rows = T * N
    r0, r1 = rows * member // members, rows * (member + 1) // members
    d2 = dgates.reshape(rows, G)
    team.gemm_into(fn, d2[r0:r1], w_ih_team, dx2d[r0:r1], 0.0)
    team.gemm_tn_into(fn, d2[:, b0:b1], x2d, dw_ih[b0:b1], 0.0)
    team.gemm_tn_into(fn, d2[:, b0:b1], h_prev2d, dw_hh[b0:b1], 0.0)


def try_backward(cell: int, cache, dout: np.ndarray, dh: np.ndarray, dc: Optional[np.ndarray],
                 use_relu: bool = False):
    """The backward of a team training forward's cache (SequenceCache with .team set):
    (dx, dw_ih, dw_hh, db) with the weight gradients in the cells' own row order and db the float64
    bias gradient (cells' order), dh (dc) updated in place to the gradients of h0 (c0); or None when
    another call holds the team (the caller then runs the serial loop on
    layout.to_cell_order(cache.gates, axis=2)). dout C-contiguous."""
    layout = cache.team
    gates, x = cache.gates, cache.x
    T, N, G = gates.shape
    I, H = x.shape[2], dh.shape[1]
    dtype = gates.dtype
    dgates = np.empty_like(gates)
    db = np.zeros(G, dtype=np.float64)
    dc_arg = dc if dc is not None else np.empty((0, 0), dtype=dtype)
    c_prev = cache.extra if cache.extra is not None else np.empty((0, 0, 0), dtype=dtype)
    dx = np.empty((T, N, I), dtype=dtype)
    dw_ih = np.empty((G, I), dtype=dtype)
    dw_hh = np.empty((G, H), dtype=dtype)
    args = (cell, bool(use_relu), team.gemm_address(dtype), gates, c_prev, dout, dh, dc_arg,
            np.ascontiguousarray(cache.w_hh), layout.order, dgates, db, cache.reverse, layout.bounds, team.new_flags(layout.members),
            np.ascontiguousarray(x).reshape(T * N, I), cache.h_prev.reshape(T * N, H),
            np.ascontiguousarray(cache.w_ih[layout.order]), dx.reshape(T * N, I), dw_ih, dw_hh)
    if not team.try_run(layout.members, backward_loop, args):
        return None
    return dx, layout.to_cell_order(dw_ih), layout.to_cell_order(dw_hh), layout.to_cell_order(db)
