"""The numerics contract in one place: how two results are compared, and how close they must be.

Tests, benchmarks and the docs all read this module, so a tolerance is stated once.

The measure is the relative error of one tensor, ``max|a - b| / max|b|`` over its finite entries, with
the non-finite entries (NaN, +inf, -inf) required to sit at the same places in both: a NaN where the
expected value is finite (or the reverse) is an infinite error, never a silent pass.
"""
from __future__ import annotations

import numpy as np

#: fastrnn against PyTorch (outputs and every gradient), per dtype: a contract, not a tuning knob.
TORCH_PARITY = {"float64": 1e-10, "float32": 1e-5}

#: A backend registered later and missing from BACKEND_VS_REFERENCE is held to this, per dtype.
DEFAULT_VS_REFERENCE = {"float64": 1e-11, "float32": 1e-5}

#: (backend, dtype) -> bound on a backend's results against the float64 NumPy reference run on the
#: same (dtype-rounded) inputs and parameters.
BACKEND_VS_REFERENCE = {
    # float32 reference vs float64 reference: rounding of a few dozen float32 operations per step
    ("numpy", "float64"): 1e-13,
    ("numpy", "float32"): 1e-5,
    # summation order of the fused kernels and GEMMs differs from NumPy's
    ("numba", "float64"): 1e-11,
    ("numba", "float32"): 1e-5,
    # cuBLAS with TF32 off; fast-math intrinsics are not allowed to cost more than float32 rounding
    ("cupy", "float64"): 1e-11,
    ("cupy", "float32"): 1e-5,
}

#: One backend's two code paths for the same numbers, per dtype (the numba backend's jitted
#: small-batch loop against its BLAS loop, its step kernel against a one-step forward): the same
#: arithmetic in a different summation order, so tighter than any bound against the reference.
SAME_BACKEND_PATHS = {"float32": 2e-6, "float64": 1e-13}

#: The CUDA kernels' bodies compiled for the host with g++ and driven by the cupy backend's layer code
#: with NumPy GEMMs (tests/test_cuda_host.py), against the float64 reference, per dtype. float64: both
#: sides in double, only the summation order differs (worst seen 2.4e-15). float32: the cupy
#: backend's own bound (worst seen 1.8e-6).
CUDA_HOST_VS_REFERENCE = {"float64": 1e-12, "float32": BACKEND_VS_REFERENCE[("cupy", "float32")]}

#: The benchmark runner's check of each contestant against the float64 reference before timing it,
#: per dtype: looser than BACKEND_VS_REFERENCE because benchmark cases are long (errors grow with T
#: and H) and include PyTorch, whose kernels (oneDNN, cuDNN) sum in their own order. It catches a
#: wrong kernel, not last-digit differences.
BENCHMARK_CHECK = {"float32": 1e-4, "float64": 1e-9}

#: Central finite differences in float64 with step FD_EPS: truncation ~eps^2, rounding ~1e-16/eps.
FD_EPS = 1e-6
#: Bound on the reference backward against those finite differences.
FD_TOLERANCE = 1e-7


def vs_reference(backend: str, dtype: str) -> float:
    """The bound for `backend`'s results in `dtype` against the float64 reference."""
    return BACKEND_VS_REFERENCE.get((backend, str(dtype)), DEFAULT_VS_REFERENCE[str(dtype)])


def relative_error(actual, expected) -> float:
    """``max|actual - expected| / max|expected|`` over the finite entries, as a Python float.

    Parameters
    ----------
    actual, expected : array_like
        Same shape (NumPy or CuPy arrays, or anything ``np.asarray`` takes); compared in float64.

    Returns
    -------
    float
        0.0 for empty arrays; ``max|actual|`` when ``expected`` is all zero (so both must be zero for
        0.0); ``inf`` when the NaN / +inf / -inf entries are not at the same places in both.

    Raises
    ------
    ValueError
        When the shapes differ.
    """
    a = _as_float64(actual)
    b = _as_float64(expected)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare shape {a.shape} with expected shape {b.shape}")
    if b.size == 0:
        return 0.0
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(finite_a, finite_b):
        return float("inf")
    if not finite_b.all():
        same_kind = (np.isnan(a) == np.isnan(b)) & ((a == b) | np.isnan(b) | finite_b)
        if not same_kind.all():
            return float("inf")
        a, b = a[finite_b], b[finite_b]
        if b.size == 0:
            return 0.0
    diff = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(b)))
    return diff / scale if scale > 0 else diff


def _as_float64(x) -> np.ndarray:
    get = getattr(x, "get", None)   # a CuPy array comes to the host for the comparison
    host = get() if callable(get) and type(x).__module__.split(".")[0] == "cupy" else x
    return np.asarray(host, dtype=np.float64)
