"""The one tolerance table of the suite: relative error max|a - b| / max|b| per tensor.

BACKEND_VS_REFERENCE is keyed by (backend, dtype): a backend's outputs and gradients against the NumPy
reference run in float64 on the same (dtype-rounded) inputs and parameters. A backend registered later
and missing here gets DEFAULT_VS_REFERENCE for its dtype, so it is tested at once; give it its own row
only with a reason.

TORCH_PARITY is issue 2's bar for fastrnn against PyTorch; it is a contract, not a tuning knob.
"""

TORCH_PARITY = {"float64": 1e-10, "float32": 1e-5}

DEFAULT_VS_REFERENCE = {"float64": 1e-11, "float32": 1e-5}

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

# central differences in float64 with step FD_EPS: truncation ~eps^2, rounding ~1e-16/eps
FD_EPS = 1e-6
FD_TOLERANCE = 1e-7


def vs_reference(backend: str, dtype: str) -> float:
    return BACKEND_VS_REFERENCE.get((backend, dtype), DEFAULT_VS_REFERENCE[dtype])
