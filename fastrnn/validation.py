"""Input checks for the modules: each failure is one sentence naming what was expected."""
from __future__ import annotations

import numpy as np

from .devices import device_of, to_host


def as_module_array(a, what: str, device: str, dtype: np.dtype, xp):
    """Accept `a` for a module on `device` with `dtype`: never a silent copy across devices
    and never a silent change of precision."""
    got = device_of(a)
    if got != device:
        hint = ("move it with cupy.asarray(...) or use a module on 'cpu'" if device == "cuda"
                else "move it with cupy.asnumpy(...) or move the module with .to('cuda')")
        kind = "a CuPy (GPU) array" if got == "cuda" else f"a {type(a).__name__} on the CPU"
        raise TypeError(f"{what} is {kind}, but the module is on {device!r}: {hint}")
    if not isinstance(a, xp.ndarray):
        a = xp.asarray(a)
    if a.dtype != dtype:
        raise TypeError(
            f"{what} has dtype {a.dtype}, but the module computes in {dtype}; convert it with "
            f".astype('{dtype}') or build the module with dtype='{a.dtype}' (fastrnn never "
            "changes precision silently)")
    return a


def check_shape(a, expected: tuple, what: str) -> None:
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{what} must have shape {tuple(expected)}, got {tuple(a.shape)}")


def check_lengths(lengths, T: int, N: int) -> np.ndarray:
    """Host int64 copy of `lengths`, each in 1..T, one per batch row."""
    host = to_host(lengths)
    if host.ndim != 1 or host.shape[0] != N:
        raise ValueError(f"lengths must have shape ({N},) (one length per sequence in the batch), "
                         f"got {tuple(host.shape)}")
    if host.dtype.kind not in "iu":
        if host.dtype.kind == "f" and np.all(np.isfinite(host)) and np.all(host == np.round(host)):
            host = host.astype(np.int64)
        else:
            raise TypeError(f"lengths must be integers, got dtype {host.dtype}")
    host = host.astype(np.int64)
    if N and (host.min() < 1 or host.max() > T):
        raise ValueError(f"lengths must each be in 1..{T} (the sequence length T), "
                         f"got values from {host.min()} to {host.max()}")
    return host
