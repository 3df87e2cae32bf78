"""MKL's GEMMs through ctypes on libmkl_rt (the optional extra fastrnn[mkl], the pip package `mkl`).

Loaded on first use only: `import fastrnn` never touches it, and a machine without it simply has no
"mkl" / "mkl-packed" providers. Two step products (out = a op(W), W fixed for a call):

  mkl         cblas_?gemm on W as it is.
  mkl-packed  cblas_?gemm_pack once per call (W into MKL's internal panel layout: the pack cost is
              paid once, inside the call), then cblas_?gemm_compute every step.

MKL's thread count follows fastrnn.set_num_threads (threads.on_change). Its threading layer is what
MKL_THREADING_LAYER says, else GNU (libgomp): not a second OpenMP runtime next to one that Numba or
torch may already have loaded.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from typing import Optional

import numpy as np

from .. import threads

_ROW_MAJOR, _NO_TRANS, _TRANS, _PACKED, _B_MATRIX = 101, 111, 112, 151, 162
_LAYERS = {"INTEL": 0, "SEQUENTIAL": 1, "PGI": 2, "GNU": 3, "TBB": 4}

_lib: Optional[ctypes.CDLL] = None
_reason: Optional[str] = None
_loaded = False


def _find() -> Optional[str]:
    for folder in (os.path.join(sys.prefix, "lib"), os.path.join(sys.base_prefix, "lib")):
        found = sorted(glob.glob(os.path.join(folder, "libmkl_rt.so*")))
        if found:
            return found[0]
    return ctypes.util.find_library("mkl_rt")


def library() -> Optional[ctypes.CDLL]:
    """libmkl_rt, loaded and configured on the first call; None where it cannot be loaded."""
    global _lib, _reason, _loaded
    if _loaded:
        return _lib
    _loaded = True
    path = _find()
    if path is None:
        _reason = "libmkl_rt not found (pip install 'fastrnn[mkl]')"
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        _reason = f"libmkl_rt did not load: {exc}"
        return None
    layer = os.environ.get("MKL_THREADING_LAYER", "GNU").upper()
    lib.MKL_Set_Threading_Layer(ctypes.c_int(_LAYERS.get(layer, _LAYERS["GNU"])))
    lib.MKL_Set_Num_Threads.argtypes = [ctypes.c_int]
    _declare(lib)
    _lib = lib
    threads.on_change(lib.MKL_Set_Num_Threads)
    return lib


def unavailable_reason() -> Optional[str]:
    library()
    return _reason


def _declare(lib) -> None:
    p, i = ctypes.c_void_p, ctypes.c_int
    for prefix, scalar in (("s", ctypes.c_float), ("d", ctypes.c_double)):
        getattr(lib, f"cblas_{prefix}gemm").argtypes = [i] * 6 + [scalar, p, i, p, i, scalar, p, i]
        getattr(lib, f"cblas_{prefix}gemm").restype = None
        size = getattr(lib, f"cblas_{prefix}gemm_pack_get_size")
        size.argtypes, size.restype = [i] * 4, ctypes.c_size_t
        getattr(lib, f"cblas_{prefix}gemm_pack").argtypes = [i] * 6 + [scalar, p, i, p]
        getattr(lib, f"cblas_{prefix}gemm_pack").restype = None
        getattr(lib, f"cblas_{prefix}gemm_compute").argtypes = [i] * 6 + [p, i, p, i, scalar, p, i]
        getattr(lib, f"cblas_{prefix}gemm_compute").restype = None


def _prefix(dtype) -> str:
    return "s" if np.dtype(dtype) == np.float32 else "d"


def plain(w: np.ndarray, transpose: bool, rows: int):
    """out (rows, M) = a (rows, K) @ op(W) by cblas_?gemm; W (M, K) when transpose else (K, M),
    C-contiguous."""
    lib = library()
    w = np.ascontiguousarray(w)
    gemm = getattr(lib, f"cblas_{_prefix(w.dtype)}gemm")
    K, M = (w.shape[1], w.shape[0]) if transpose else w.shape
    op, wp = (_TRANS if transpose else _NO_TRANS), w.ctypes.data

    def product(a, out):
        gemm(_ROW_MAJOR, _NO_TRANS, op, rows, M, K, 1.0, a.ctypes.data, K, wp, w.shape[1], 0.0,
             out.ctypes.data, M)
    product.keep = w
    return product


def packed(w: np.ndarray, transpose: bool, rows: int):
    """As plain, with op(W) packed once here by cblas_?gemm_pack and each step run by
    cblas_?gemm_compute on the packed copy (owned by the returned product)."""
    lib = library()
    w = np.ascontiguousarray(w)
    pre = _prefix(w.dtype)
    K, M = (w.shape[1], w.shape[0]) if transpose else w.shape
    size = getattr(lib, f"cblas_{pre}gemm_pack_get_size")(_B_MATRIX, rows, M, K)
    buffer = np.empty(size, dtype=np.uint8)
    getattr(lib, f"cblas_{pre}gemm_pack")(_ROW_MAJOR, _B_MATRIX, _TRANS if transpose else _NO_TRANS,
                                          rows, M, K, 1.0, w.ctypes.data, w.shape[1],
                                          buffer.ctypes.data)
    compute = getattr(lib, f"cblas_{pre}gemm_compute")
    bp = buffer.ctypes.data

    def product(a, out):
        compute(_ROW_MAJOR, _NO_TRANS, _PACKED, rows, M, K, a.ctypes.data, K, bp, w.shape[1], 0.0,
                out.ctypes.data, M)
    product.keep = buffer
    return product
