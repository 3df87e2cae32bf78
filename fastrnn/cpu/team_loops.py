"""The forward loop on the thread team (team.py): one body for the three cells' inference and
training forwards (team_backward.py runs their backward).

Member p owns hidden units bounds[p]:bounds[p+1]. The gate columns (of the projection, of each
step's h W_hh^T and of the fused bias) are in team order (team.gate_order): member p's block is
[gate 0 of its units, gate 1, ...], which is exactly the layout each cell's cell_row reads for a
hidden size of its unit count. So the members run the cells' own row bodies, unchanged. The
weights stay in PyTorch's layout: a member projects through its gate blocks of W_ih (contiguous
rows) and packs its rows of W_hh for packed.py at the start of the call.

Per call each member runs its slice of the input projection (no wait: step 0 reads only its own
columns and h0), then per loop step its slice of gh = h W_hh^T, the pointwise pass of its units,
and the barrier. h is double-buffered: the next step's GEMM of every member reads all of h, so a
member writes the other buffer while slower ones may still read this one. Idle rows (lengths)
carry their state over and get out = 0, as in the serial loops.

A training forward leaves the activated gates where each member projected them, in its own region
of the gates buffer (the backward's members read them there; TeamLayout.gates_in_cell_order gathers
them for the serial backward), and h_prev, extra in unit order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from numba import njit

from ..contract import ForwardRequest, ForwardResult
from . import packed, team, team_choice
from . import gru, lstm, rnn
from ._blas import copy_vector
from ._common import SequenceCache
from ._rows import visited_time
from ._spin import arrive_and_wait
from .team import GRU, LSTM, RNN

_JIT = dict(cache=True, nogil=True, error_model="numpy")

@njit(**_JIT)
def forward_loop(member, members, cell, use_relu, training, fn, x2d, w_ih, w_hh, order, gates, gh,
                 bias, bias_hn, h_bufs, c, lens, reverse, out, h_prev, extra, bounds, flags):
    """One member's share of a forward (inference or training).

    x2d      (T*N, I)   the input, C-contiguous.
    w_ih, w_hh (G, I), (G, H)  in PyTorch's layout (the cells' gate order); member p gathers
                        the rows of its units, order[b0:b1] (its team-order columns b0:b1), of
                        W_ih for its share of the projection and packs those of W_hh for
                        packed.matmul_into, at the start of the call.
    order    (G,)       the team order (team.gate_order).
    gates    (T, N, G)  the projection's buffer: member p's columns (team order b0:b1) as one
                        (T, N, b1 - b0) block at T*N*b0, its region; a training forward leaves
                        the activated gates there (the backward's cache);
    gh       (N, G)     scratch, team order.
    bias     (G,)       team order: LSTM, RNN b_ih + b_hh; GRU [b_ir + b_hr, b_iz + b_hz, b_in].
    bias_hn  (H,)       GRU's b_hn in unit order (unused otherwise).
    h_bufs   (2, N, H)  h_bufs[0] = h0; after T steps h_n is h_bufs[T % 2].
    c        (N, H)     LSTM's c0, updated in place to c_n (unused otherwise).
    lens     (N,) int32;  out (T, N, H);  bounds (members+1,) int64;  flags team.new_flags().
    h_prev, extra (T, N, H) when training, else (0, 0, 0): the state each (t, n) started from
                        and the cell's second cache (its SequenceCache.extra: LSTM c_prev, GRU
                        h W_hn^T + b_hn; RNN none), 0 at idle (t, n); unused in inference.
    cell     LSTM, GRU or RNN;  use_relu, training: bools.
    fn       the cblas_?gemm address for the dtype (team.gemm_address).
    """
    T, N, G = gates.shape
    n_gates = team.gate_count(cell)
    j0, j1 = bounds[member], bounds[member + 1]
    b0, b1 = n_gates * j0, n_gates * j1
    zero = gates.dtype.type(0)
    # One GEMM over the member's gate rows gathered (one per gate block ran 20% slower), into a
    # contiguous region of the buffer, (T, N, b1 - b0) at T*N*b0, which the member alone writes
    # and reads: the two GEMMs side by side writing interleaved halves of every row ran 15-20%
    # slower (GRU (100,32,256): 9.5-9.9 against 8.1-8.4 ms; LSTM training (100,32,256) forward
    # 28.5 against 25.7 ms, (100,32,64,256) 22.6 against 19.2 ms, on 2 Zen 2 cores).
    width = b1 - b0
    mine = team.member_region(gates, b0, b1)
    team.gemm_nt_into(fn, x2d, w_ih[order[b0:b1]], mine.reshape((T * N, width)), 0.0)
    bias_p = bias[b0:b1]
    w_p = packed.pack_rows_transposed(w_hh, order[b0:b1])
    for s in range(T):
        cur = h_bufs[s % 2]
        nxt = h_bufs[(s + 1) % 2]
        packed.matmul_into(cur, w_p, gh[:, b0:b1])
        for n in range(N):
            t = visited_time(s, lens[n], reverse)
            hn = nxt[n, j0:j1]
            if t < 0:
                out[s, n, j0:j1] = zero
                copy_vector(hn, cur[n, j0:j1])
                if training:
                    h_prev[s, n, j0:j1] = zero
                    if cell != RNN:
                        extra[s, n, j0:j1] = zero
                continue
            g = mine[t, n]
            ghn = gh[n, b0:b1]
            o_t = out[t, n, j0:j1]
            if training:
                copy_vector(h_prev[t, n, j0:j1], cur[n, j0:j1])
            if cell == LSTM and training:
                copy_vector(extra[t, n, j0:j1], c[n, j0:j1])
                lstm.cell_row(g, ghn, bias_p, c[n, j0:j1], hn, o_t, True)
            elif cell == LSTM:
                lstm.cell_row(g, ghn, bias_p, c[n, j0:j1], hn, o_t, False)
            elif cell == GRU and training:
                copy_vector(hn, cur[n, j0:j1])
                gru.cell_row(g, ghn, bias_p, bias_hn[j0:j1], hn, o_t, extra[t, n, j0:j1], True)
            elif cell == GRU:
                copy_vector(hn, cur[n, j0:j1])
                gru.cell_row(g, ghn, bias_p, bias_hn[j0:j1], hn, o_t, o_t, False)
            elif training and use_relu:
                rnn.cell_row(g, ghn, bias_p, True, hn, o_t, True)
            elif training:
                rnn.cell_row(g, ghn, bias_p, False, hn, o_t, True)
            elif use_relu:
                rnn.cell_row(g, ghn, bias_p, True, hn, o_t, False)
            else:
                rnn.cell_row(g, ghn, bias_p, False, hn, o_t, False)
        arrive_and_wait(flags, member, members, s + 1)


@dataclass
class TeamLayout:
    """How a team call split the gate columns: what a training forward's cache needs for backward.

    members   the team's size;  bounds (members+1,) int64 the unit split (team.unit_bounds);
    order     (G,) the team order of the gate rows (team.gate_order): team column k holds gate row
              order[k] of the cells' own order.
    """
    members: int
    bounds: np.ndarray
    order: np.ndarray

    def gates_in_cell_order(self, gates: np.ndarray) -> np.ndarray:
        """A (T, N, G) copy, columns in the cells' own order, of a team forward's gates buffer,
        member p's columns held as one (T, N, b1 - b0) block at T*N*b0 (forward_loop)."""
        per_unit = gates.shape[2] // int(self.bounds[-1])
        out = np.empty_like(gates)
        for p in range(self.members):
            b0, b1 = per_unit * int(self.bounds[p]), per_unit * int(self.bounds[p + 1])
            out[:, :, self.order[b0:b1]] = team.member_region(gates, b0, b1)
        return out

    def to_cell_order(self, a: np.ndarray) -> np.ndarray:
        """A copy of `a` (gate rows first: a bias or weight gradient in team order) with its rows
        in the cells' own order."""
        out = np.empty_like(a)
        out[self.order] = a
        return out


def forward_job(cell: int, x, w_ih, w_hh, bias, h0, lens, reverse, c0, bias_hn, use_relu,
                training: bool, members: int):
    """forward_loop's arguments for a team of `members` (after the member index and count), and
    a function that returns the call's results from them once the loop has run: (out, h_n, c_n,
    gates, h_prev, extra, TeamLayout)."""
    T, N, I = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    bounds = team.unit_bounds(H, members)
    order = team.gate_order(H, team.gate_count(cell), bounds)
    bias_p = np.ascontiguousarray(bias[order])
    gates = np.empty((T, N, len(order)), dtype=dtype)
    gh = np.empty((N, len(order)), dtype=dtype)
    h_bufs = np.empty((2, N, H), dtype=dtype)
    h_bufs[0] = h0
    c = np.array(c0, dtype=dtype, order="C") if c0 is not None else np.empty((0, 0), dtype=dtype)
    hn_bias = bias_hn if bias_hn is not None else np.empty(0, dtype=dtype)
    out = np.empty((T, N, H), dtype=dtype)
    h_prev = np.empty((T, N, H), dtype=dtype) if training else np.empty((0, 0, 0), dtype=dtype)
    extra = (np.empty((T, N, H), dtype=dtype) if training and cell != RNN
             else np.empty((0, 0, 0), dtype=dtype))
    args = (cell, bool(use_relu), training, team.gemm_address(dtype),
            np.ascontiguousarray(x).reshape(T * N, I), np.ascontiguousarray(w_ih),
            np.ascontiguousarray(w_hh), order, gates, gh, bias_p, hn_bias,
            h_bufs, c, lens, reverse, out, h_prev, extra, bounds, team.new_flags(members))

    def results():
        return (out, h_bufs[T % 2].copy(), (c if c0 is not None else None), gates, h_prev, extra,
                TeamLayout(members, bounds, order))

    return args, results


def _run_forward(cell: int, x, w_ih, w_hh, bias, h0, lens, reverse, c0, bias_hn, use_relu,
                 training: bool):
    T, N, I = x.shape
    H = w_hh.shape[1]
    members = team.members_for(H, N)
    if members == 0 or T == 0:
        return None
    if not team.alone() and not team_choice.use_team(cell, bool(use_relu), training, T, N, I, H,
                                                     x.dtype):
        return None
    args, results = forward_job(cell, x, w_ih, w_hh, bias, h0, lens, reverse, c0, bias_hn,
                                use_relu, training, members)
    if not team.try_run(members, forward_loop, args):
        return None
    return results()


def try_forward(cell: int, req: ForwardRequest, bias: np.ndarray, lens: np.ndarray,
                bias_hn: Optional[np.ndarray] = None,
                use_relu: bool = False) -> Optional[ForwardResult]:
    """The cell's forward on the team, as the cell's forward() would return it (a training forward's
    cache holds the activated gates in team order, with its TeamLayout, for
    team_backward.try_backward); or None where the team does not apply (team.members_for, the
    measured choice, a training batch with a row shorter than the sequence) or another call holds
    it: the caller then runs the serial loop.

    bias is the fused bias in the cells' own gate order (GRU: [b_ir + b_hr, b_iz + b_hz, b_in] and
    bias_hn = b_hn), lens the full lengths (N,) int32."""
    x, w = req.x, req.weights
    if req.training and int(lens.min(initial=x.shape[0])) < x.shape[0]:
        return None
    run = _run_forward(cell, x, w.w_ih, w.w_hh, bias, req.h0, lens, req.reverse, req.c0, bias_hn,
                       use_relu, req.training)
    if run is None:
        return None
    out, h_n, c_n, gates, h_prev, extra, layout = run
    cache = None
    if req.training:
        cache = SequenceCache(x, w.w_ih, w.w_hh, w.has_bias, lens, req.reverse, gates, h_prev,
                              extra if cell != RNN else None, team=layout)
    return ForwardResult(out=out, h_n=h_n, c_n=c_n, cache=cache)
