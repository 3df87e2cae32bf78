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
"""
from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import intrinsic, overload


@intrinsic
def _bits_as_float(typingctx, bits):
    """Reinterpret an int32 (int64) as a float32 (float64): builds 2**k without a libm call."""
    if bits == types.int32:
        ret = types.float32
    elif bits == types.int64:
        ret = types.float64
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(ret))

    return ret(bits), codegen


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
            kf = (x * np.float32(1.4426950408889634) + np.float32(12582912.0)) - np.float32(12582912.0)
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
            # Numba widens int32 arithmetic to int64: narrow before the bit cast.
            k = np.int32(kf) if kf == kf else np.int32(0)
            return p * _bits_as_float(np.int32((k + 127) << 23))
        return impl
    if x == types.float64:
        def impl(x):
            # As for float32: the ends give k = -1023 (0.0) and k = 1024 (+inf).
            x = -709.0 if x < -709.0 else x
            x = 710.0 if x > 710.0 else x
            kf = (x * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0
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
            k = np.int64(kf) if kf == kf else np.int64(0)
            return p * _bits_as_float(np.int64((k + 1023) << 52))
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
