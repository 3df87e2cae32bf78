"""Host-side pieces shared by the three cells: lengths, the hoisted GEMMs, buffers.

The whole-sequence products run here (one call each, all T*N rows at once), the per-step ones in the
host loops; all through gemm.py's providers. Only the recurrence runs in the jitted loops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..contract import ForwardRequest, StepRequest, StepResult
from . import gemm


@dataclass
class SequenceCache:
    """What a training forward keeps for backward (arrays in time order, like x)."""

    x: np.ndarray            # (T, N, I) the layer input
    w_ih: np.ndarray         # (G*H, I)
    w_hh: np.ndarray         # (G*H, H)
    has_bias: bool
    lengths: np.ndarray      # (N,) int32
    reverse: bool
    gates: np.ndarray        # (T, N, G*H) activated gates (cell-specific content)
    h_prev: np.ndarray       # (T, N, H) state each (t, n) started from, 0 at idle (t, n)
    extra: Optional[np.ndarray] = None   # cell-specific: LSTM c_prev, GRU W_hn h + b_hn
    team: Optional[object] = None        # team_loops.TeamLayout when the forward ran on the team:
    #                                      gates are then in its members' regions (team_loops.py)

    def gates_in_cell_order(self) -> np.ndarray:
        """gates in the cells' own column order (a copy where the forward ran on the team): what
        the serial backward loops read."""
        return self.gates if self.team is None else self.team.gates_in_cell_order(self.gates)


def full_lengths(lengths: Optional[np.ndarray], T: int, N: int) -> np.ndarray:
    """(N,) int32 for the loops: the request's lengths (already int32 and C-contiguous: see
    fastrnn.contract), or T for every row when they are None."""
    return np.full(N, T, dtype=np.int32) if lengths is None else lengths


def step_through_forward(forward, req: StepRequest) -> StepResult:
    """A step for batches above STEP_BATCH: forward() over a sequence of one time step, where the
    hoisted GEMMs beat the step kernels' dot products."""
    result = forward(ForwardRequest(cell=req.cell, x=req.x[None], h0=req.h, c0=req.c,
                                    weights=req.weights))
    return StepResult(h=result.h_n, c=result.c_n)


def project_input(x: np.ndarray, w_ih: np.ndarray) -> np.ndarray:
    """x (T, N, I) @ w_ih.T as one GEMM over all T*N rows -> (T, N, G*H), a fresh buffer."""
    T, N, I = x.shape
    return gemm.matmul(x.reshape(T * N, I), w_ih.T).reshape(T, N, w_ih.shape[0])


def run_forward_loop(step_fn, gates, step_args, w_hh, h) -> None:
    """Forward time loop for batches above SMALL_BATCH: per step one GEMM gh = h W_hh^T (W_hh
    prepared once for the call by the chosen provider, see gemm.py) and the cell's fused pointwise
    pass step_fn(s, gates, gh, *step_args), which updates h in place."""
    N, G = h.shape[0], w_hh.shape[0]
    gh = np.empty((N, G), dtype=h.dtype)
    hidden_product = gemm.step_product(w_hh, transpose=True, rows=N)
    for s in range(gates.shape[0]):
        hidden_product(h, gh)
        step_fn(s, gates, gh, *step_args)


def run_backward_loop(step_fn, step_args, w_hh, lengths, reverse, dh, dgates, db, dg_width=None,
                      accumulate=False):
    """Backward time loop for batches above SMALL_BATCH: per step the cell's fused pointwise pass
    (step_fn, jitted) and one GEMM dh_prev = dg_step @ W_hh (W_hh prepared once, gemm.py).

    step_fn(s, *step_args, dh_rec, pending, dg_step, in_place, dgates, db) fills dg_step (N, G) with
    the step's gradients of the pre-activations that multiply W_hh (G = dg_width, default W_hh's
    rows). When `pending`, dh_rec holds the previous step's GEMM result, which the step first moves
    into dh (adds, for a cell whose dh_prev also has a direct term: accumulate=True) for the rows
    that were active then. While every row is active and nothing is to be added, the GEMM writes
    straight into dh; when in addition t is the same for every row, dgates[t] is the step's buffer.
    """
    T, N = dgates.shape[0], dgates.shape[1]
    G = w_hh.shape[0] if dg_width is None else dg_width
    shortest = int(lengths.min())
    in_place = shortest == T and G == dgates.shape[2]
    scratch = np.empty((N, G), dtype=dh.dtype)
    dh_rec = np.empty_like(dh)
    state_product = gemm.step_product(w_hh, transpose=False, rows=N)
    pending = False
    for s in range(T - 1, -1, -1):
        dg_step = dgates[T - 1 - s if reverse else s] if in_place else scratch
        step_fn(s, *step_args, dh_rec, pending, dg_step, in_place, dgates, db)
        if s < shortest and not accumulate:
            state_product(dg_step, dh)
            pending = False
        else:
            state_product(dg_step, dh_rec)
            pending = True
    if pending:
        dh += dh_rec


def transpose(w: np.ndarray) -> np.ndarray:
    """w.T, C-contiguous: the small-batch loops stream it in axpy order."""
    return np.ascontiguousarray(w.T)


def fused_bias(b_ih, b_hh, size: int, dtype) -> np.ndarray:
    """b_ih + b_hh, or zeros without bias."""
    if b_ih is None:
        return np.zeros(size, dtype=dtype)
    return b_ih + b_hh


def no_cache(dtype) -> np.ndarray:
    """(0, 0, 0) placeholder for the per-step buffers of an inference forward."""
    return np.empty((0, 0, 0), dtype=dtype)


def input_gradients(dgates: np.ndarray, x: np.ndarray, w_ih: np.ndarray):
    """dx = dgates @ w_ih and dw_ih = dgates^T @ x, each one GEMM over all T*N rows.

    dgates may be a column slice of a wider buffer (rows strided): BLAS takes it without a copy.
    """
    T, N, I = x.shape
    d2 = dgates.reshape(T * N, dgates.shape[2])
    dx = gemm.matmul(d2, w_ih).reshape(T, N, I)
    dw_ih = gemm.matmul(d2.T, x.reshape(T * N, I))
    return dx, dw_ih


def bias_gradients(db: np.ndarray, has_bias: bool, dtype):
    """(db_ih, db_hh) from the float64 accumulator of a cell whose b_ih and b_hh enter the same sum
    (both get the whole gradient), or (None, None) without bias."""
    if not has_bias:
        return None, None
    db_ih = db.astype(dtype)
    return db_ih, db_ih.copy()


def recurrent_weight_gradient(dgates: np.ndarray, h_prev: np.ndarray) -> np.ndarray:
    """dw_hh = sum over (t, n) of dgates[t, n]^T h_prev[t, n], one GEMM."""
    T, N, H = h_prev.shape
    return gemm.matmul(dgates.reshape(T * N, dgates.shape[2]).T, h_prev.reshape(T * N, H))
