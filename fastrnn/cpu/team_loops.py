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
carry their state over and get out = 0, as in the serial loops. An inference forward of
FUSED_STEP_ROWS rows or more has no projection pass: each step's product takes [x_t | h] through
[W_ih; W_hh]^T, the x rows of the next step put beside h in the other buffer (each member its
share of the rows) before the barrier.

A training forward leaves the activated gates where each member projected them, in its own region
of the gates buffer (the backward's members read them there; TeamLayout.gates_in_cell_order gathers
them for the serial backward), and h_prev (out shifted by a step: states_beside_out) and extra in
unit order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from numba import njit

from ..contract import ForwardRequest, ForwardResult
from . import packed, team, team_choice
from . import gru, lstm, rnn
from ._blas import copy_vector, gather_rows
from ._common import SequenceCache
from ._rows import visited_time
from ._spin import arrive_and_wait
from .team import GRU, LSTM, RNN

_JIT = dict(cache=True, nogil=True, error_model="numpy")

@njit(**_JIT)
def put_x_rows(xh, x, lens, s, reverse, r0, r1):
    """xh (N, I + H)[n, :I] = the x row (x (T, N, I)) that batch row n visits at loop step s, 0 once
    it is idle, for rows r0:r1 (the fused step's input beside h)."""
    I = x.shape[2]
    for n in range(r0, r1):
        t = visited_time(s, lens[n], reverse)
        if t >= 0:
            copy_vector(xh[n, 0:I], x[t, n])
        else:
            xh[n, 0:I] = x.dtype.type(0)


@njit(**_JIT)
def forward_loop(member, members, cell, use_relu, training, fused, fn, x, w_ih, w_hh, order, gates,
                 gh, bias, bias_hn, xh_bufs, c, lens, reverse, out, extra, bounds, flags):
    """One member's share of a forward (inference or training).

    x        (T, N, I)  the input, C-contiguous.
    w_ih, w_hh (G, I), (G, H)  in PyTorch's layout (the cells' gate order); member p packs the
                        rows of its units, order[b0:b1] (its team-order columns b0:b1), at the
                        start of the call (stacked when fused).
    order    (G,)       the team order (team.gate_order).
    gates    (T, N, G)  member p's columns (team order b0:b1) as one (T, N, b1 - b0) block at
                        T*N*b0, its region: the projection's buffer, and in training the activated
                        gates (the backward's cache); when fused (1, N, G): member p's region
                        (N, b1 - b0) is its scratch for each step's pre-activations (LSTM, RNN:
                        x and h sides summed; GRU: r and z so, and x W_in^T apart);
    gh       (N, G)     scratch, team order: each step's h side (when fused: zero but for the
                        GRU's h W_hn^T).
    bias     (G,)       team order: LSTM, RNN b_ih + b_hh; GRU [b_ir + b_hr, b_iz + b_hz, b_in].
    bias_hn  (H,)       GRU's b_hn in unit order (unused otherwise).
    xh_bufs  (2, N, I' + H)  double-buffered state rows, h in the last H columns; I' = I when
                        fused (the first I columns then hold the x row each batch row visits at
                        that step, put_x_rows), else 0. xh_bufs[0] holds h0 (and the x rows of
                        step 0); after T steps h_n is xh_bufs[T % 2, :, I':].
    c        (N, H)     LSTM's c0, updated in place to c_n (unused otherwise).
    lens     (N,) int32 (all T in training);  out (T, N, H);  bounds (members+1,) int64;
                        flags team.new_flags(). A training forward's out lies in a (T + 1, N, H)
                        buffer beside h0, whose other T planes are the states each step started
                        from (forward_job): the loop writes no copy of them.
    extra    (T, N, H)  when training, else (0, 0, 0): the cell's second cache (its
                        SequenceCache.extra: LSTM c_prev, GRU h W_hn^T + b_hn; RNN none).
    cell     LSTM, GRU or RNN;  use_relu, training, fused: bools (fused: inference only,
             fused_step).
    fn       the cblas_?gemm address for the dtype (team.gemm_address).
    """
    T, N, I = x.shape
    h0_col = I if fused else 0
    n_gates = team.gate_count(cell)
    j0, j1 = bounds[member], bounds[member + 1]
    b0, b1 = n_gates * j0, n_gates * j1
    zero = gates.dtype.type(0)
    width = b1 - b0
    mine = team.member_region(gates, b0, b1)
    bias_p = bias[b0:b1]
    r0, r1 = N * member // members, N * (member + 1) // members
    # fused: each step's pre-activations from [x_t | h] @ [W_ih; W_hh]^T of the member's rows, no
    # projection pass whose output goes to memory and comes back a step at a time. The GRU's n
    # gate needs x W_in^T and h W_hn^T apart: its r and z rows go that way, its n rows as two
    # products of the same step (columns n0:b1 of the member's block).
    n0 = b0 + 2 * (j1 - j0) if cell == GRU else b1
    step_x = mine[0]        # fused: the member's scratch (N, b1 - b0), its columns (else unused)
    if fused:
        w_p = packed.pack_rows_transposed_stacked(w_ih, w_hh, order[b0:n0])
        w_n_x = packed.pack_rows_transposed(w_ih, order[n0:b1])
        w_n_h = packed.pack_rows_transposed(w_hh, order[n0:b1])
    else:
        w_n_x = w_n_h = packed.pack_rows_transposed(w_hh, order[b0:b0])      # (fused only)
        # One GEMM over the member's gate rows gathered (one per gate block ran 20% slower), into
        # its region, which the member alone writes and reads: the two GEMMs side by side writing
        # interleaved halves of every row ran 15-20% slower (GRU (100,32,256): 9.5-9.9 against
        # 8.1-8.4 ms; LSTM training (100,32,256) forward 28.5 against 25.7 ms, on 2 Zen 2 cores).
        w_ih_mine = np.empty((width, I), dtype=w_ih.dtype)
        gather_rows(w_ih_mine, w_ih, order[b0:b1])
        team.gemm_nt_into(fn, x.reshape((T * N, I)), w_ih_mine, mine.reshape((T * N, width)), 0.0)
        w_p = packed.pack_rows_transposed(w_hh, order[b0:b1])
    gh_p = gh[:, b0:b1]
    for s in range(T):
        cur = xh_bufs[s % 2]
        nxt = xh_bufs[(s + 1) % 2]
        if not fused:
            packed.matmul_into(cur, w_p, gh_p)
        else:
            packed.matmul_into(cur, w_p, step_x[:, 0:n0 - b0])
            if n0 < b1:
                packed.matmul_into(cur[:, 0:I], w_n_x, step_x[:, n0 - b0:width])
                packed.matmul_into(cur[:, I:], w_n_h, gh_p[:, n0 - b0:width])
        for n in range(N):
            t = visited_time(s, lens[n], reverse)
            hn = nxt[n, h0_col + j0:h0_col + j1]
            hc = cur[n, h0_col + j0:h0_col + j1]
            if t < 0:             # (inference only: every row of a training batch runs all T)
                out[s, n, j0:j1] = zero
                copy_vector(hn, hc)
                continue
            g = step_x[n] if fused else mine[t, n]
            ghn = gh[n, b0:b1]
            o_t = out[t, n, j0:j1]
            if cell == LSTM and training:
                copy_vector(extra[t, n, j0:j1], c[n, j0:j1])
                lstm.cell_row(g, ghn, bias_p, c[n, j0:j1], hn, o_t, True)
            elif cell == LSTM:
                lstm.cell_row(g, ghn, bias_p, c[n, j0:j1], hn, o_t, False)
            elif cell == GRU and training:
                copy_vector(hn, hc)
                gru.cell_row(g, ghn, bias_p, bias_hn[j0:j1], hn, o_t, extra[t, n, j0:j1], True)
            elif cell == GRU:
                copy_vector(hn, hc)
                gru.cell_row(g, ghn, bias_p, bias_hn[j0:j1], hn, o_t, o_t, False)
            elif training and use_relu:
                rnn.cell_row(g, ghn, bias_p, True, hn, o_t, True)
            elif training:
                rnn.cell_row(g, ghn, bias_p, False, hn, o_t, True)
            elif use_relu:
                rnn.cell_row(g, ghn, bias_p, True, hn, o_t, False)
            else:
                rnn.cell_row(g, ghn, bias_p, False, hn, o_t, False)
        if fused and s + 1 < T:
            put_x_rows(nxt, x, lens, s + 1, reverse, r0, r1)
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


# The batch rows from which an inference forward's members take x_t with h in one step product,
# [x_t | h] @ [W_ih; W_hh]^T (forward_loop's fused way), instead of reading a whole-sequence
# projection. Measured on 2 Zen 2 cores, LSTM team forward (100, N, I, H), ms, projected against
# fused, alternating: (N=8, 256, 256) 6.43 / 6.56; (16, 256, 256) 12.3 / 12.0; (32, 256, 256)
# 21.5 / 19.9; (64, 256, 256) 52.7 / 47.4; (64, 512, 512) 160 / 153; (16, 64, 128) 4.30 / 4.12;
# GRU (8, 256, 256) 5.68 / 5.81, (16, ...) 10.4 / 10.1, (32, ...) 19.9 / 19.1, (64, ...) 40.9 /
# 38.1; RNN (32, 256, 256) 9.9 / 7.9. A bidirectional layer's directions side by side (each a team
# of one, its whole [W_ih; W_hh] packed: 2 MiB at LSTM H = 256): LSTM (32, 256, 256) 44.6 / 40.4,
# (64, ...) 85.8 / 79.8, GRU (32, ...) 32.9 / 30.6.
# The packed [W_ih; W_hh] rows of a member no longer fit its L2, which costs at a few rows, where a
# step is bound by reading W; from a dozen rows on the product is bound by arithmetic, and the
# gates are no longer projected to memory and read back a step at a time. A training forward
# gained nothing this way ((32, 256, 256): 22.1 / 21.8, and its backward then ran 1-1.5 ms
# slower): training keeps the projection.
FUSED_STEP_ROWS = 16


def fused_step(rows: int, training: bool) -> bool:
    """Whether a team forward of this batch runs the fused step (forward_loop)."""
    return not training and rows >= FUSED_STEP_ROWS


def states_beside_out(h0: np.ndarray, T: int, reverse: bool):
    """(out, h_prev), both (T, N, H) views of one (T + 1, N, H) buffer holding h0 and out, for a
    training forward in which every row runs all T steps: the state step t started from is then
    the output of the step visited before it, or h0 (forward in time h_prev[t] = out[t - 1],
    reversed out[t + 1]). The team's training forward writes out and gets h_prev without a copy."""
    N, H = h0.shape
    states = np.empty((T + 1, N, H), dtype=h0.dtype)
    if reverse:
        states[T] = h0
        return states[:T], states[1:]
    states[0] = h0
    return states[1:], states[:T]


def forward_job(cell: int, x, w_ih, w_hh, bias, h0, lens, reverse, c0, bias_hn, use_relu,
                training: bool, members: int):
    """forward_loop's arguments for a team of `members` (after the member index and count), and
    a function that returns the call's results from them once the loop has run: (out, h_n, c_n,
    gates, h_prev, extra, TeamLayout)."""
    T, N, I = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    fused = fused_step(N, training)
    bounds = team.unit_bounds(H, members)
    order = team.gate_order(H, team.gate_count(cell), bounds)
    bias_p = np.ascontiguousarray(bias[order])
    gates = np.empty((1 if fused else T, N, len(order)), dtype=dtype)
    gh = (np.zeros if fused else np.empty)((N, len(order)), dtype=dtype)
    x = np.ascontiguousarray(x)
    h0_col = I if fused else 0
    xh_bufs = np.empty((2, N, h0_col + H), dtype=dtype)
    xh_bufs[0, :, h0_col:] = h0
    if fused:
        put_x_rows(xh_bufs[0], x, lens, 0, reverse, 0, N)
    c = np.array(c0, dtype=dtype, order="C") if c0 is not None else np.empty((0, 0), dtype=dtype)
    hn_bias = bias_hn if bias_hn is not None else np.empty(0, dtype=dtype)
    if training:
        out, h_prev = states_beside_out(h0, T, reverse)
    else:
        out, h_prev = np.empty((T, N, H), dtype=dtype), np.empty((0, 0, 0), dtype=dtype)
    extra = (np.empty((T, N, H), dtype=dtype) if training and cell != RNN
             else np.empty((0, 0, 0), dtype=dtype))
    args = (cell, bool(use_relu), training, fused, team.gemm_address(dtype), x,
            np.ascontiguousarray(w_ih), np.ascontiguousarray(w_hh), order, gates, gh, bias_p,
            hn_bias, xh_bufs, c, lens, reverse, out, extra, bounds, team.new_flags(members))

    def results():
        return (out, xh_bufs[T % 2, :, h0_col:].copy(), (c if c0 is not None else None), gates,
                h_prev, extra, TeamLayout(members, bounds, order))

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
    return ForwardResult(out=out, h_n=h_n, c_n=c_n, cache=cache, out_in_cache=req.training)
