"""The row preamble the three cells' loop steps share: which time step a batch row visits at loop
step s, and what an idle row leaves behind.

Row n of a batch with lengths L runs while s < L[n]; forward in time it visits t = s, in reverse
t = L[n]-1-s. At every loop step s >= L[n] (idle) it is visited at t = s, where every per-step
output is zero (so that the whole-sequence GEMMs over all T*N rows read finite zeros there).

These are compiled into the cells' kernels: Numba's disk cache notices a change to a kernel's own
file only, so after editing this file (or _math.py, _blas.py) delete fastrnn/cpu/__pycache__/*.nb*.
"""
from __future__ import annotations

from numba import njit

from ._blas import copy_vector

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def visited_time(s, length, reverse):
    """The time step a row of this length visits at loop step s, or -1 once it is idle."""
    if s >= length:
        return -1
    return length - 1 - s if reverse else s


@njit(**_JIT)
def clear_idle_forward(s, n, training, out, cache_a, cache_b):
    """An idle row n at loop step s: out (T, N, H)[s, n] = 0 and, when training, the cell's two
    per-step caches (T, N, H) at (s, n) too (a cell with one cache passes it twice)."""
    zero = out.dtype.type(0)
    out[s, n, :] = zero
    if training:
        cache_a[s, n, :] = zero
        cache_b[s, n, :] = zero


@njit(**_JIT)
def backward_row_start(s, n, length, reverse, pending, accumulate, dh, dh_rec, dg_step, dgates):
    """The preamble of backward loop step s for row n; returns the time step it visits, or -1.

    dh, dh_rec (N, H); dg_step (N, G) the step's gradients for the recurrent GEMM; dgates
    (T, N, G') all steps' gradients in time order (G' >= G: GRU keeps one more block).

    When `pending` and the row was active at step s+1, the previous step's GEMM result dh_rec[n]
    is first moved into dh[n] (added when `accumulate`: a cell whose dh_prev also has a direct term).
    An idle row gets dgates[s, n] = 0 and dg_step[n] = 0.
    """
    if pending and s + 1 < length:
        dhn = dh[n]
        rec = dh_rec[n]
        if accumulate:
            for j in range(dhn.shape[0]):
                dhn[j] += rec[j]
        else:
            copy_vector(dhn, rec)
    if s >= length:
        zero = dh.dtype.type(0)
        dgates[s, n, :] = zero
        dg_step[n, :] = zero
        return -1
    return visited_time(s, length, reverse)


@njit(**_JIT)
def add_column_sums(db, rows):
    """db (G,) float64 += rows (G,) (the bias gradient's running sum over (t, n))."""
    for j in range(rows.shape[0]):
        db[j] += rows[j]

