"""The suite's tolerances are the package's: see fastrnn.numerics (one table for tests, benchmarks, docs)."""
from fastrnn.numerics import (BACKEND_VS_REFERENCE, DEFAULT_VS_REFERENCE, FD_EPS, FD_TOLERANCE,  # noqa: F401
                              TORCH_PARITY, vs_reference)
