"""The inference forward loop on the thread team (team.py), one body for the three cells.

Member p owns hidden units bounds[p]:bounds[p+1]. The gate rows of W_ih, W_hh and the fused bias
are permuted so that its rows sit side by side (team.gate_order): its block of the gate columns is
[gate 0 of its units, gate 1, ...], which is exactly the layout each cell's cell_row reads for a
hidden size of its unit count. So the members run the cells' own row bodies, unchanged.

Per call each member runs its slice of the input projection (no wait: step 0 reads only its own
columns and h0), then per loop step its slice of gh = h W_hh^T, the pointwise pass of its units,
and the barrier. h is double-buffered: the next step's GEMM of every member reads all of h, so a
member writes the other buffer while slower ones may still read this one. Idle rows (lengths)
carry their state over and get out = 0, as in the serial loops.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import literally, njit

from . import team
from . import gru, lstm, rnn
from ._rows import visited_time
from ._spin import arrive_and_wait

_JIT = dict(cache=True, nogil=True, error_model="numpy")

LSTM, GRU, RNN = 0, 1, 2
GATES = {LSTM: 4, GRU: 3, RNN: 1}


@njit(**_JIT)
def forward_inference(member, members, cell, use_relu, fn, x2d, w_ih_t, w_hh_t, gates, gh, bias,
                      bias_hn, h_bufs, c, lens, reverse, out, bounds, flags):
    """One member's share of an inference forward (cell and use_relu literal).

    x2d      (T*N, I)   the input, C-contiguous.
    w_ih_t   (I*G,)     each member's gate rows of W_ih, transposed: member p's (I, width_p)
                        block, C-contiguous, at I*G_p (G_p its first team-order gate column), so
                        that its slice of W streams from one contiguous region of its own cache;
    w_hh_t   (H*G,)     the same for W_hh.
    gates    (T, N, G)  scratch for the projection, team order;  gh (N, G) scratch, team order.
    bias     (G,)       team order: LSTM, RNN b_ih + b_hh; GRU [b_ir + b_hr, b_iz + b_hz, b_in].
    bias_hn  (H,)       GRU's b_hn in unit order (unused otherwise).
    h_bufs   (2, N, H)  h_bufs[0] = h0; after T steps h_n is h_bufs[T % 2].
    c        (N, H)     LSTM's c0, updated in place to c_n (unused otherwise).
    lens     (N,) int32;  out (T, N, H);  bounds (members+1,) int64;  flags team.new_flags().
    fn       the cblas_?gemm address for the dtype (team.gemm_address).
    """
    literally(cell)
    literally(use_relu)
    T, N, G = gates.shape
    n_gates = 4 if cell == LSTM else (3 if cell == GRU else 1)
    j0, j1 = bounds[member], bounds[member + 1]
    b0, b1 = n_gates * j0, n_gates * j1
    zero = gates.dtype.type(0)
    I = x2d.shape[1]
    H = h_bufs.shape[2]
    team.gemm_into(fn, x2d, w_ih_t[I * b0:I * b1].reshape(I, b1 - b0),
                   gates.reshape(T * N, G)[:, b0:b1], 0.0)
    bias_p = bias[b0:b1]
    w_p = w_hh_t[H * b0:H * b1].reshape(H, b1 - b0)
    for s in range(T):
        cur = h_bufs[s % 2]
        nxt = h_bufs[(s + 1) % 2]
        team.gemm_into(fn, cur, w_p, gh[:, b0:b1], 0.0)
        for n in range(N):
            t = visited_time(s, lens[n], reverse)
            hn = nxt[n, j0:j1]
            if t < 0:
                out[s, n, j0:j1] = zero
                hn[:] = cur[n, j0:j1]
                continue
            g = gates[t, n, b0:b1]
            ghn = gh[n, b0:b1]
            o_t = out[t, n, j0:j1]
            if cell == LSTM:
                lstm.cell_row(g, ghn, bias_p, c[n, j0:j1], hn, o_t, False)
            elif cell == GRU:
                hn[:] = cur[n, j0:j1]
                gru.cell_row(g, ghn, bias_p, bias_hn[j0:j1], hn, o_t, o_t, False)
            else:
                rnn.cell_row(g, ghn, bias_p, use_relu, hn, o_t, False)
        arrive_and_wait(flags, member, members, s + 1)


# The entry points the team calls from Python: cell and use_relu become literals here, inside
# jitted code, so that dispatch from Python never re-resolves them.

@njit(**_JIT)
def _lstm_entry(member, members, fn, x2d, w_ih_t, w_hh_t, gates, gh, bias, bias_hn, h_bufs, c, lens,
                reverse, out, bounds, flags):
    forward_inference(member, members, LSTM, False, fn, x2d, w_ih_t, w_hh_t, gates, gh, bias,
                      bias_hn, h_bufs, c, lens, reverse, out, bounds, flags)


@njit(**_JIT)
def _gru_entry(member, members, fn, x2d, w_ih_t, w_hh_t, gates, gh, bias, bias_hn, h_bufs, c, lens,
               reverse, out, bounds, flags):
    forward_inference(member, members, GRU, False, fn, x2d, w_ih_t, w_hh_t, gates, gh, bias,
                      bias_hn, h_bufs, c, lens, reverse, out, bounds, flags)


@njit(**_JIT)
def _rnn_tanh_entry(member, members, fn, x2d, w_ih_t, w_hh_t, gates, gh, bias, bias_hn, h_bufs, c, lens,
                    reverse, out, bounds, flags):
    forward_inference(member, members, RNN, False, fn, x2d, w_ih_t, w_hh_t, gates, gh, bias,
                      bias_hn, h_bufs, c, lens, reverse, out, bounds, flags)


@njit(**_JIT)
def _rnn_relu_entry(member, members, fn, x2d, w_ih_t, w_hh_t, gates, gh, bias, bias_hn, h_bufs, c, lens,
                    reverse, out, bounds, flags):
    forward_inference(member, members, RNN, True, fn, x2d, w_ih_t, w_hh_t, gates, gh, bias,
                      bias_hn, h_bufs, c, lens, reverse, out, bounds, flags)


_ENTRIES = {(LSTM, False): _lstm_entry, (GRU, False): _gru_entry, (RNN, False): _rnn_tanh_entry,
            (RNN, True): _rnn_relu_entry}


def _member_blocks(w: np.ndarray, order: np.ndarray, bounds: np.ndarray, n_gates: int):
    """w (G, K) -> (K*G,): member p's team-order gate rows, transposed to (K, width_p) and
    C-contiguous, one after the other (forward_inference's w_ih_t, w_hh_t)."""
    K = w.shape[1]
    flat = np.empty(w.shape[0] * K, dtype=w.dtype)
    for p in range(len(bounds) - 1):
        b0, b1 = n_gates * bounds[p], n_gates * bounds[p + 1]
        flat[K * b0:K * b1].reshape(K, b1 - b0)[...] = w[order[b0:b1]].T
    return flat


def try_inference(cell: int, x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, bias: np.ndarray,
                  h0: np.ndarray, lens: np.ndarray, reverse: bool, c0: Optional[np.ndarray] = None,
                  bias_hn: Optional[np.ndarray] = None, use_relu: bool = False):
    """The inference forward on the team: (out, h_n, c_n or None), or None where the team does not
    apply (see team.members_for) or another call holds it; the caller then runs the serial loop.

    bias is the fused bias in the cells' own gate order (the caller's), permuted here."""
    T, N, I = x.shape
    H = w_hh.shape[1]
    members = team.members_for(H, N)
    if members == 0 or T == 0:
        return None
    dtype = x.dtype
    bounds = team.unit_bounds(H, members)
    order = team.gate_order(H, GATES[cell], bounds)
    w_ih_t = _member_blocks(w_ih, order, bounds, GATES[cell])
    w_hh_t = _member_blocks(w_hh, order, bounds, GATES[cell])
    bias_p = np.ascontiguousarray(bias[order])
    gates = np.empty((T, N, len(order)), dtype=dtype)
    gh = np.empty((N, len(order)), dtype=dtype)
    h_bufs = np.empty((2, N, H), dtype=dtype)
    h_bufs[0] = h0
    c = np.array(c0, dtype=dtype, order="C") if c0 is not None else np.empty((0, 0), dtype=dtype)
    hn_bias = bias_hn if bias_hn is not None else np.empty(0, dtype=dtype)
    out = np.empty((T, N, H), dtype=dtype)
    args = (team.gemm_address(dtype), np.ascontiguousarray(x).reshape(T * N, I), w_ih_t, w_hh_t,
            gates, gh, bias_p, hn_bias, h_bufs, c, lens, reverse, out, bounds,
            team.new_flags(members))
    if not team.try_run(members, _ENTRIES[(cell, bool(use_relu))], args):
        return None
    return out, h_bufs[T % 2].copy(), (c if c0 is not None else None)
