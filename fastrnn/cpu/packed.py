"""fastrnn's own GEMM for the recurrent products on the thread team: W packed once per call into
column panels, every step's product run by a register-tiled SIMD kernel written in LLVM IR.

Why: a team member multiplies the same slice of W_hh every step, (N, K) @ (K, width) with N a
batch of a few dozen rows. OpenBLAS repacks W on every call, and two single-threaded OpenBLAS
calls in one process slow each other down (measured on 2 Zen 2 cores, (32, 256) @ (256, 512):
120 us alone, 170-215 us each side by side). Packed once, the product below runs 92 us alone
(91 GFLOP/s on one core; 99 at 64 rows, of a ~105 FMA peak; a 4-row tile ran 106 us).

Layout. W (K, M) is cut into P = ceil(M / PW) panels of PW columns (PW = two SIMD vectors: 16
float32 or 8 float64 on a 32-byte vector), each stored (K, PW) C-contiguous, the last one padded
with zeros: packed (P, K, PW). The kernel computes a tile of C, ROWS rows by PW columns, keeping
the 2*ROWS accumulator vectors in registers over the whole K loop (12 of AVX2's 16: enough
independent FMAs in flight to cover their latency on two FMA pipes): per k it loads two vectors of
the panel, broadcasts ROWS values of A and issues 2*ROWS fused multiply-adds. Panels outside,
row blocks inside, so a panel (K * PW elements: 16 KiB at K = 256) stays in L1 while every row
block of A passes over it. The last rows of a batch that do not fill a tile run a tile of exactly
their count (of 1-3 rows: with K split over sets of accumulators, see _make_tile); columns that do
not fill a panel go through a zero-padded copy of C.

The FMAs are llvm.fma vector intrinsics: fused on any CPU with FMA (x86-64-v3 and later, every
AArch64), a correct (slow) library call elsewhere.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

ROWS = 6              # rows of C per tile: 12 accumulators, 2 panel vectors, 1 broadcast
VECTOR_BYTES = 32     # one SIMD vector (AVX2); AVX-512 machines run it too


def panel_width(dtype) -> int:
    """PW: the columns of one panel, two vectors of the dtype."""
    return 2 * VECTOR_BYTES // np.dtype(dtype).itemsize


def _make_tile(rows: int, splits: int = 1):
    """The tile intrinsic for `rows` rows of C (1..ROWS): tile(k, a, lda, b, c, ldc, like) sets
    C[0:rows, 0:PW] = A[0:rows, 0:k] @ Bp[0:k, 0:PW] (C overwritten). a, b, c: data addresses
    (int64) of A's first row, the panel and C's first row; lda, ldc: row strides in elements; the
    panel is (k, PW) C-contiguous. like: any value of the dtype (float32 or float64).

    splits > 1 (thin tiles): the K loop runs `splits` values of k an iteration into as many sets of
    accumulators, summed at the end (a remainder loop takes the last k % splits values into the
    first set). With 1 or 2 rows the 2 or 4 accumulators of a plain tile are each one chain of
    dependent FMAs, so the tile waited on the FMA's latency (one row of (1, 128) @ (128, 256) took
    3.4 us, against 2.4 us for a plain axpy loop on W^T); 8 independent chains cover it."""

    @intrinsic
    def tile(typingctx, k, a, lda, b, c, ldc, like):
        if like == types.float32:
            lanes, real_t, suffix = 8, ir.FloatType(), "v8f32"
        elif like == types.float64:
            lanes, real_t, suffix = 4, ir.DoubleType(), "v4f64"
        else:
            return None

        def codegen(context, builder, sig, args):
            i64, i32 = ir.IntType(64), ir.IntType(32)
            vec = ir.VectorType(real_t, lanes)
            k_n, a_i, lda_v, b_i, c_i, ldc_v = (
                context.cast(builder, args[i], sig.args[i], types.int64) for i in range(6))
            real_p, vec_p = real_t.as_pointer(), vec.as_pointer()
            a_p = builder.inttoptr(a_i, real_p)
            b_p = builder.inttoptr(b_i, real_p)
            c_p = builder.inttoptr(c_i, real_p)
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.{suffix}")
            zero = ir.Constant(vec, [0.0] * lanes)
            splat_mask = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)

            def load_vec(base, offset):
                return builder.load(builder.bitcast(builder.gep(base, [offset]), vec_p), align=1)

            def multiply_add(k_index, accs):
                """accs (2 * rows vectors) + A[:, k_index] x the panel's row k_index."""
                b_off = builder.mul(k_index, ir.Constant(i64, 2 * lanes))
                b0 = load_vec(b_p, b_off)
                b1 = load_vec(b_p, builder.add(b_off, ir.Constant(i64, lanes)))
                updated = []
                for r in range(rows):
                    offset = builder.add(builder.mul(ir.Constant(i64, r), lda_v), k_index)
                    a_val = builder.load(builder.gep(a_p, [offset]))
                    one = builder.insert_element(ir.Constant(vec, ir.Undefined), a_val,
                                                 ir.Constant(i32, 0))
                    splat = builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), splat_mask)
                    updated.append(builder.call(fma, [splat, b0, accs[2 * r]]))
                    updated.append(builder.call(fma, [splat, b1, accs[2 * r + 1]]))
                return updated

            width = 2 * rows      # accumulator vectors of one set: two a row

            def k_loop(name, start_block, start_k, start_accs, step, sets):
                """A loop over k from start_k while k + step <= K, `sets` accumulator sets (each
                `width` vectors) updated with k, k+1, .., k+sets-1 an iteration; returns k and the
                accumulators as the loop leaves them."""
                head = builder.append_basic_block(f"{name}.head")
                body = builder.append_basic_block(f"{name}.body")
                builder.branch(head)
                builder.position_at_end(head)
                kk = builder.phi(i64)
                kk.add_incoming(start_k, start_block)
                accs = []
                for value in start_accs:
                    acc = builder.phi(vec)
                    acc.add_incoming(value, start_block)
                    accs.append(acc)
                more = builder.icmp_signed("<=", builder.add(kk, ir.Constant(i64, step)), k_n)
                exit_block = builder.append_basic_block(f"{name}.exit")
                builder.cbranch(more, body, exit_block)
                builder.position_at_end(body)
                updated = []
                for s in range(sets):
                    updated += multiply_add(builder.add(kk, ir.Constant(i64, s)),
                                            accs[s * width:(s + 1) * width])
                kk.add_incoming(builder.add(kk, ir.Constant(i64, step)), builder.block)
                for acc, value in zip(accs, updated):
                    acc.add_incoming(value, builder.block)
                builder.branch(head)
                builder.position_at_end(exit_block)
                return kk, accs

            kk, accs = k_loop("tile", builder.block, ir.Constant(i64, 0),
                              [zero] * (width * splits), splits, splits)
            if splits > 1:        # the last K % splits values of k, into the first set
                _, first = k_loop("tile.rest", builder.block, kk, accs[:width], 1, 1)
                sums = list(first)
                for s in range(1, splits):
                    sums = [builder.fadd(total, part)
                            for total, part in zip(sums, accs[s * width:(s + 1) * width])]
            else:
                sums = accs
            for r in range(rows):
                row = builder.mul(ir.Constant(i64, r), ldc_v)
                for half in range(2):
                    target = builder.gep(c_p, [builder.add(row, ir.Constant(i64, half * lanes))])
                    builder.store(sums[2 * r + half], builder.bitcast(target, vec_p), align=1)
            return context.get_dummy_value()

        return types.void(types.int64, types.int64, types.int64, types.int64, types.int64,
                          types.int64, like), codegen

    return tile


# Thin tiles split K: one row 4 sets of 2 accumulators, two rows 2 sets of 4, three rows 2 sets
# of 6 (measured on a Zen 2 core, (N, 256) @ (256, 512): N = 1 13.0 -> 7.5 us, 2 13.4 -> 8.9,
# 3 14.0 -> 10.8, and 7 = 6 + 1 rows 29.9 -> 21.0; 4 rows and more keep one set).
_tile1, _tile2 = _make_tile(1, splits=4), _make_tile(2, splits=2)
_tile3 = _make_tile(3, splits=2)
_tile4, _tile5, _tile6 = (_make_tile(r) for r in range(4, ROWS + 1))


@njit(cache=True, nogil=True)
def _tile(rows, k, a, lda, b, c, ldc, like):
    """The tile of `rows` rows (1..ROWS): the full blocks run _tile6, the last block of a batch
    that is not a multiple of ROWS the tile of exactly its rows (no padded rows computed)."""
    if rows == 6:
        _tile6(k, a, lda, b, c, ldc, like)
    elif rows == 5:
        _tile5(k, a, lda, b, c, ldc, like)
    elif rows == 4:
        _tile4(k, a, lda, b, c, ldc, like)
    elif rows == 3:
        _tile3(k, a, lda, b, c, ldc, like)
    elif rows == 2:
        _tile2(k, a, lda, b, c, ldc, like)
    else:
        _tile1(k, a, lda, b, c, ldc, like)


def pack(w: np.ndarray) -> np.ndarray:
    """W (K, M) (any strides) -> its panels (P, K, PW), C-contiguous, the last zero-padded: the
    layout's plain NumPy statement (the team's members pack with the jitted packers below, which
    the tests hold to this)."""
    K, M = w.shape
    pw = panel_width(w.dtype)
    panels = -(-M // pw)
    packed = np.zeros((panels, K, pw), dtype=w.dtype)
    for p in range(panels):
        cols = min(pw, M - p * pw)
        packed[p, :, :cols] = w[:, p * pw:p * pw + cols]
    return packed


@njit(cache=True, nogil=True)
def _put_rows_transposed(out, w, rows, k0):
    """out's panels (P, K, PW), rows k0:k0 + w.shape[1] = w[rows, :].T."""
    PW = out.shape[2]
    for col in range(rows.shape[0]):
        src = w[rows[col]]
        p, j = col // PW, col % PW
        for k in range(src.shape[0]):
            out[p, k0 + k, j] = src[k]


@njit(cache=True, nogil=True)
def pack_rows_transposed(w, rows):
    """pack(w[rows, :].T), built by a team member from W in PyTorch's layout: B (K, M) with
    K = w.shape[1], M = len(rows), B[k, col] = w[rows[col], k] (the forward's h W_hh^T)."""
    PW = 2 * VECTOR_BYTES // w.itemsize
    out = np.zeros(((rows.shape[0] + PW - 1) // PW, w.shape[1], PW), dtype=w.dtype)
    _put_rows_transposed(out, w, rows, 0)
    return out


@njit(cache=True, nogil=True)
def pack_rows_transposed_stacked(w_top, w_bottom, rows):
    """pack of [w_top[rows, :].T; w_bottom[rows, :].T] (K = K_top + K_bottom rows): the fused
    step's [x | h] @ [W_ih; W_hh]^T, both in PyTorch's layout."""
    PW = 2 * VECTOR_BYTES // w_top.itemsize
    K = w_top.shape[1] + w_bottom.shape[1]
    out = np.zeros(((rows.shape[0] + PW - 1) // PW, K, PW), dtype=w_top.dtype)
    _put_rows_transposed(out, w_top, rows, 0)
    _put_rows_transposed(out, w_bottom, rows, w_top.shape[1])
    return out


@njit(cache=True, nogil=True)
def pack_row_block(w, rows, j0, j1):
    """pack(w[rows, j0:j1]): B (K, M) with K = len(rows), M = j1 - j0 (the backward's dG W_hh)."""
    K, M = rows.shape[0], j1 - j0
    PW = 2 * VECTOR_BYTES // w.itemsize
    P = (M + PW - 1) // PW
    out = np.zeros((P, K, PW), dtype=w.dtype)
    for k in range(K):
        src = w[rows[k], j0:j1]
        for p in range(P):
            # One panel's row: contiguous on both sides (a division per element made this 8x
            # slower: 0.59 ms for the 1024 x 128 block of an LSTM H = 256 member).
            dst = out[p, k]
            for j in range(min(PW, M - p * PW)):
                dst[j] = src[p * PW + j]
    return out


@njit(cache=True, nogil=True)
def matmul_into(a, packed, c):
    """c (N, M) = a (N, K) @ W, with W given as pack(W) (P, K, PW), P*PW >= M; c overwritten.

    a and c are 2-D views whose rows are contiguous (any row stride), in packed's dtype; c must not
    alias a or packed. Single-threaded: each team member calls it on its own slice.
    """
    N, K = a.shape
    M = c.shape[1]
    P, _, PW = packed.shape
    if N == 0 or M == 0:
        return
    size = a.itemsize
    lda = a.strides[0] // size
    ldc = c.strides[0] // size
    like = c.dtype.type(0)
    c_pad = np.empty((ROWS, PW), dtype=c.dtype)    # a last panel narrower than PW lands here
    a0, c0 = a.ctypes.data, c.ctypes.data
    for p in range(P):
        panel = packed[p].ctypes.data
        col = p * PW
        cols = min(PW, M - col)
        for r0 in range(0, N, ROWS):
            rows = min(ROWS, N - r0)
            a_rows = a0 + r0 * lda * size
            if cols == PW:
                _tile(rows, K, a_rows, lda, panel, c0 + (r0 * ldc + col) * size, ldc, like)
            else:
                _tile(rows, K, a_rows, lda, panel, c_pad.ctypes.data, PW, like)
                for r in range(rows):
                    for j in range(cols):
                        c[r0 + r, col + j] = c_pad[r, j]
