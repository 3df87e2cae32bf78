"""The small matrix products inside the time loops, callable from jitted code.

Inside a loop step the product is (N, K) x (K, M) with N the batch. For a batch of a few rows a call
into BLAS costs more than the arithmetic (argument checks, packing W, waking the BLAS threads: ~3 us
for 1 x 128 x 512), so up to SMALL_BATCH rows the whole loop runs in jitted code with these
products, which LLVM vectorizes and which stream W once per row. Larger batches use NumPy's BLAS
from the host loop.

np.dot is deliberately not used in jitted code: Numba routes it to SciPy's OpenBLAS, a second
OpenBLAS with its own thread pool next to NumPy's; the two pools spinning on 2 cores made a
training step ~20x slower when interleaved.

Why the batch-1 loops stay on one core, although a step is bound by that core's L2 bandwidth
(W_hh of 1 x 128 x 512 fp32 is 256 KB, ~2.3 us a step; the cell step's W_ih + W_hh ~5.5 us): a
prange split of the hidden units over both cores (one OpenMP region for the whole sequence, the
threads meeting once a step on atomic counters) did take LSTM (1000, 1, 128) from 2.9 to 2.1 ms in
isolation, and a per-call region took the cell step from 7.4 to 6.0 us. But after a region,
libgomp's worker busy-waits for ~6 ms by default, and after a GEMM OpenBLAS's worker yield-spins for
~0.1 s; on 2 cores each starves the other. Measured: a 256 x 256 GEMM right after the parallel cell
step went from 0.19 to 8.6 ms; the parallel sequence loop plus the next layer's input GEMM took
9.4 ms against 4.0 ms serial, and still no gain with GOMP_SPINCOUNT=1000 or OMP_WAIT_POLICY=passive
(then the region start alone is ~50 us). So no Numba threading here; the batches above
SMALL_BATCH split their inference loops over the cores on fastrnn's own thread team (team.py),
whose workers sleep between calls.
"""
from __future__ import annotations

from numba import njit

# Rows at or below which the hand-written loop beats BLAS (measured on 2 Zen 4 cores, H = 128..512).
SMALL_BATCH = 2
# Rows up to which the single-step path (the *Cell modules) uses the dot-product loop.
STEP_BATCH = 4

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_JIT_FMA = dict(_JIT, fastmath={"contract"})
_JIT_REDUCE = dict(_JIT, fastmath={"contract", "reassoc"})


@njit(**_JIT_FMA)
def small_matmul(a, b, out):
    """out (N, M) = a (N, K) @ b (K, M); all C-contiguous, out must not alias a or b.

    Four rows of b are folded per pass over out so that each out element is loaded and stored once
    per four multiply-adds instead of once per one.
    """
    N, K = a.shape
    M = b.shape[1]
    zero = out.dtype.type(0)
    for n in range(N):
        o = out[n]
        for m in range(M):
            o[m] = zero
        k = 0
        while k + 4 <= K:
            a0 = a[n, k]
            a1 = a[n, k + 1]
            a2 = a[n, k + 2]
            a3 = a[n, k + 3]
            b0 = b[k]
            b1 = b[k + 1]
            b2 = b[k + 2]
            b3 = b[k + 3]
            for m in range(M):
                o[m] += a0 * b0[m] + a1 * b1[m] + a2 * b2[m] + a3 * b3[m]
            k += 4
        while k < K:
            ak = a[n, k]
            bk = b[k]
            for m in range(M):
                o[m] += ak * bk[m]
            k += 1


@njit(**_JIT_REDUCE)
def small_matmul_nt(a, b, out, accumulate):
    """out (N, M) (+)= a (N, K) @ b.T with b (M, K) row-major, as dot products (no transposed copy).

    Four rows of b share each load of a; reassociation lets LLVM split each dot product over SIMD
    lanes (it changes the summation order only, as any GEMM does). out must not alias a or b.
    """
    N, K = a.shape
    M = b.shape[0]
    zero = out.dtype.type(0)
    for n in range(N):
        an = a[n]
        m = 0
        while m + 4 <= M:
            b0 = b[m]
            b1 = b[m + 1]
            b2 = b[m + 2]
            b3 = b[m + 3]
            s0 = zero
            s1 = zero
            s2 = zero
            s3 = zero
            for k in range(K):
                ak = an[k]
                s0 += ak * b0[k]
                s1 += ak * b1[k]
                s2 += ak * b2[k]
                s3 += ak * b3[k]
            if accumulate:
                s0 += out[n, m]
                s1 += out[n, m + 1]
                s2 += out[n, m + 2]
                s3 += out[n, m + 3]
            out[n, m] = s0
            out[n, m + 1] = s1
            out[n, m + 2] = s2
            out[n, m + 3] = s3
            m += 4
        while m < M:
            bm = b[m]
            s0 = zero
            for k in range(K):
                s0 += an[k] * bm[k]
            if accumulate:
                s0 += out[n, m]
            out[n, m] = s0
            m += 1


@njit(**_JIT)
def copy_vector(dst, src):
    """dst[:] = src for 1-D arrays that do not overlap. Numba's slice assignment cannot prove that
    and copies through a temporary, ~4x slower in the per-row copies of the time loops."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@njit(**_JIT)
def gather_rows(dst, src, rows):
    """dst[k] = src[rows[k]] for every k: rows of 2-D arrays that do not overlap (W's gate rows in
    a team's order)."""
    for k in range(rows.shape[0]):
        copy_vector(dst[k], src[rows[k]])


@njit(**_JIT)
def put_rows(dst, rows, src):
    """dst[rows[k]] = src[k] for every k: gather_rows's inverse (gradient rows back in the cells'
    order)."""
    for k in range(rows.shape[0]):
        copy_vector(dst[rows[k]], src[k])


@njit(**_JIT)
def transpose_into(src, dst):
    """dst (N, M) = src (M, N).T, both C-contiguous, not overlapping. Row by row of dst: reading
    src down a column is as fast here as 8 x 8 or 16-wide tiles (measured, N = 8..64, M up to 2048)."""
    M, N = src.shape
    for n in range(N):
        d = dst[n]
        for m in range(M):
            d[m] = src[m, n]
