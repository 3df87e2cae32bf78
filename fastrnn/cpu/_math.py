"""Scalar activations for the Numba kernels, written so that LLVM can vectorize the loops using them.

Numba lowers np.exp / np.tanh to libm calls, which LLVM cannot vectorize without SVML (not installed
here): a scalar np.tanh costs ~15 ns. These helpers compute exp with a Cody-Waite range reduction, a
Taylor polynomial and an exponent built by bit manipulation, all plain arithmetic, so a loop over
them becomes SIMD code. Each helper is typed on its argument: float32 arguments keep float32
constants (no silent float64 promotion), float64 arguments get a longer polynomial.

Accuracy: relative error of exp below ~2e-7 (float32) and ~2e-16 (float64) where exp is a normal
number; within half a ln 2 of the ends exp goes to 0 or inf early (absolute error below the smallest
normal number, or an inf where exp is above ~2.4e38 / ~9e307). sigmoid and tanh are then accurate to
a few ulp in absolute terms, which is what the tolerance on the outputs and gradients measures, and
saturate exactly (sigmoid(-inf) = 0, tanh(+-inf) = +-1), so non-finite input gives the reference's
pattern of NaN and inf. NaN propagates: the clamps compare so that a NaN falls through.

The cells' kernels compile with fastmath={"contract"} only: LLVM may fuse a multiply and an add into
one FMA (one rounding instead of two: no less accurate), which made sigmoid + tanh 1.35x faster on
Zen 2 (AVX2). The other fast-math flags would drop the clamps' NaN and inf handling (measured: an
error of 0.2 at the ends), so they stay off.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload


# The round-to-integer shifters 1.5 * 2**23 and 1.5 * 2**52 and their bit patterns: after
# y = x + shifter (|x| well below 2**22 resp. 2**51) y's low bits hold round(x) as an integer.
_SHIFTER32, _SHIFTER64 = 12582912.0, 6755399441055744.0
_SHIFTER32_BITS, _SHIFTER64_BITS = 0x4B400000, 0x4338000000000000


@intrinsic
def _pow2_of_shifted(typingctx, shifted):
    """2**k as a float from shifted = k + shifter (float32: 1.5 * 2**23, float64: 1.5 * 2**52), k an
    integer within the exponent range (-127 gives 0.0, 128 inf; -1023 and 1024 in float64).

    Pure integer arithmetic on the float's bit pattern, in the float's own width, so that a loop
    over it stays SIMD on AVX2 too: a float-to-integer conversion would go through int64 (Numba
    widens int32 arithmetic), and AVX2 has no vector float-to-int64 conversion (AVX-512DQ has),
    which made LLVM scalarize the whole exp (measured on Zen 2: sigmoid 1.05 ns an element)."""
    if shifted == types.float32:
        width, shifter_bits, bias, mantissa = 32, _SHIFTER32_BITS, 127, 23
    elif shifted == types.float64:
        width, shifter_bits, bias, mantissa = 64, _SHIFTER64_BITS, 1023, 52
    else:
        return None

    def codegen(context, builder, signature, args):
        int_t = ir.IntType(width)
        bits = builder.bitcast(args[0], int_t)
        exponent = builder.add(builder.sub(bits, ir.Constant(int_t, shifter_bits)),
                               ir.Constant(int_t, bias))
        return builder.bitcast(builder.shl(exponent, ir.Constant(int_t, mantissa)),
                               context.get_value_type(shifted))

    return shifted(shifted), codegen


def fexp(x):
    """exp(x), vectorizable; only callable from jitted code."""
    raise NotImplementedError


def sigmoid(x):
    """1 / (1 + exp(-x)), vectorizable; only callable from jitted code."""
    raise NotImplementedError


def ftanh(x):
    """tanh(x), vectorizable; only callable from jitted code."""
    raise NotImplementedError


def relu(x):
    """max(x, 0) that keeps a NaN; only callable from jitted code."""
    raise NotImplementedError


@overload(fexp)
def _fexp(x):
    if x == types.float32:
        def impl(x):
            # Clamp so that the exponent k lands on exactly -127 or 128 at the ends: the bit pattern
            # below is then 0.0 or +inf, so exp(-inf) is exactly 0 and exp(inf) is inf, as in libm
            # (sigmoid(-inf) must be 0, not ~1e-39, or a later 0 * inf = NaN becomes inf). A NaN
            # passes both comparisons unchanged and poisons r below.
            x = np.float32(-88.0) if x < np.float32(-88.0) else x
            x = np.float32(89.0) if x > np.float32(89.0) else x
            # Round to nearest by adding and removing 1.5 * 2**23 (np.floor is a libm call).
            shifted = x * np.float32(1.4426950408889634) + np.float32(_SHIFTER32)
            kf = shifted - np.float32(_SHIFTER32)
            # ln 2 split in two so that kf * ln2_hi is exact in float32 (ln2_hi has 9 bits).
            r = x - kf * np.float32(0.693359375) - kf * np.float32(-2.12194440e-4)
            # Degree 6 Taylor on |r| <= ln2/2: truncation error r^7/7! < 1.3e-7, about 1 ulp.
            p = np.float32(1.0 / 720.0)
            p = p * r + np.float32(1.0 / 120.0)
            p = p * r + np.float32(1.0 / 24.0)
            p = p * r + np.float32(1.0 / 6.0)
            p = p * r + np.float32(0.5)
            p = p * r + np.float32(1.0)
            p = p * r + np.float32(1.0)
            # 2**k from the shifted sum's bits (a NaN x gives a NaN p: the product stays NaN).
            return p * _pow2_of_shifted(shifted)
        return impl
    if x == types.float64:
        def impl(x):
            # As for float32: the ends give k = -1023 (0.0) and k = 1024 (+inf).
            x = -709.0 if x < -709.0 else x
            x = 710.0 if x > 710.0 else x
            shifted = x * 1.4426950408889634 + _SHIFTER64
            kf = shifted - _SHIFTER64
            # ln2_hi has 32 significant bits so kf * ln2_hi is exact for |kf| < 2**21.
            r = x - kf * 0.6931471803691238 - kf * 1.9082149292705877e-10
            p = 1.0 / 479001600.0
            p = p * r + 1.0 / 39916800.0
            p = p * r + 1.0 / 3628800.0
            p = p * r + 1.0 / 362880.0
            p = p * r + 1.0 / 40320.0
            p = p * r + 1.0 / 5040.0
            p = p * r + 1.0 / 720.0
            p = p * r + 1.0 / 120.0
            p = p * r + 1.0 / 24.0
            p = p * r + 1.0 / 6.0
            p = p * r + 0.5
            p = p * r + 1.0
            p = p * r + 1.0
            return p * _pow2_of_shifted(shifted)
        return impl
    return None


@overload(sigmoid)
def _sigmoid(x):
    if isinstance(x, types.Float):
        dt = np.float32 if x == types.float32 else np.float64

        def impl(x):
            return dt(1.0) / (dt(1.0) + fexp(-x))
        return impl
    return None


@overload(ftanh)
def _ftanh(x):
    if isinstance(x, types.Float):
        dt = np.float32 if x == types.float32 else np.float64

        def impl(x):
            # 1 - 2/(1+e^{2x}): saturates cleanly at both ends; absolute error ~ 1 ulp of 1.
            return dt(1.0) - dt(2.0) / (dt(1.0) + fexp(dt(2.0) * x))
        return impl
    return None


@overload(relu)
def _relu(x):
    if isinstance(x, types.Float):
        dt = np.float32 if x == types.float32 else np.float64

        def impl(x):
            return dt(0.0) if x < dt(0.0) else x
        return impl
    return None
