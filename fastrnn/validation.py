"""Input checks for the modules: each failure is one sentence naming what was expected."""
from __future__ import annotations

import numpy as np

from .devices import device_of, to_host

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_module_array(a, what: str, device: str, dtype: np.dtype, xp):
    """Accept `a` for a module on `device` with `dtype`: never a silent copy across devices
    and never a silent change of precision."""
    if a is None:
        raise TypeError(f"{what} is None, expected a {dtype} array")
    got = device_of(a)
    if got != device:
        hint = ("move it with cupy.asarray(...) or use a module on 'cpu'" if device == "cuda"
                else "move it with cupy.asnumpy(...) or move the module with .to('cuda')")
        kind = "a CuPy (GPU) array" if got == "cuda" else f"a {type(a).__name__} on the CPU"
        raise TypeError(f"{what} is {kind}, but the module is on {device!r}: {hint}")
    given = a
    if not isinstance(a, xp.ndarray):
        a = xp.asarray(a)
    if a.dtype != dtype:
        raise TypeError(_dtype_mismatch(given, a.dtype, what, dtype))
    return a


def _dtype_mismatch(given, got: np.dtype, what: str, dtype: np.dtype) -> str:
    """The sentence for an array of the wrong dtype; it only suggests what the modules accept."""
    if not hasattr(given, "dtype"):   # a list, a tuple, a Python number: it had no dtype to keep
        return (f"{what} is a Python {type(given).__name__}, which NumPy reads as {got}, but the module "
                f"computes in {dtype}; convert it with np.asarray(..., dtype='{dtype}')")
    if got in FLOAT_DTYPES:   # the other precision: either side may move
        hint = f"or build the module with dtype='{got}' (fastrnn never changes precision silently)"
    else:
        hint = "(modules compute in float32 or float64 only, and never change precision silently)"
    return f"{what} has dtype {got}, but the module computes in {dtype}; convert it with " \
           f".astype('{dtype}') {hint}"


def check_shape(a, expected: tuple, what: str) -> None:
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{what} must have shape {tuple(expected)}, got {tuple(a.shape)}")


def check_lengths(lengths, T: int, N: int) -> np.ndarray:
    """Host int64 copy of `lengths`, each in 1..T, one per batch row. Lengths are whole numbers:
    an integer array, or a float array whose values are all integral (as torch accepts)."""
    host = to_host(lengths)
    if host.ndim != 1 or host.shape[0] != N:
        raise ValueError(f"lengths must have shape ({N},) (one length per sequence in the batch), "
                         f"got {tuple(host.shape)}")
    if host.dtype.kind == "f":
        fractional = host[~(np.isfinite(host) & (host == np.round(host)))]
        if fractional.size:
            raise TypeError(f"lengths must be whole numbers, got {fractional[0]}")
    elif host.dtype.kind not in "iu":
        raise TypeError(f"lengths must be whole numbers (integers, or floats with integral values), "
                        f"got dtype {host.dtype}")
    # Range-check in the dtype given, so that the message quotes the values given (a cast to int64
    # first would turn uint64's maximum into -1 and 1e20 into -2**63).
    if N and (host.min() < 1 or host.max() > T):
        raise ValueError(f"lengths must each be in 1..{T} (the sequence length T), "
                         f"got values from {host.min()} to {host.max()}")
    return host.astype(np.int64)
