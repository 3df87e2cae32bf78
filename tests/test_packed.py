"""fastrnn/cpu/packed.py: the packed recurrent GEMM of the thread team, against NumPy's matmul."""
from __future__ import annotations

import numpy as np
import pytest

from fastrnn import dispatch
from fastrnn.numerics import SAME_BACKEND_PATHS, relative_error

pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("numba") is not None,
                                reason=f"numba backend unavailable: {dispatch.unavailable_reason('numba')}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("N, K, M", [(32, 256, 512), (4, 16, 16), (5, 13, 67), (3, 7, 9),
                                     (1, 1, 1), (33, 100, 70), (8, 64, 8), (6, 9, 20),
                                     (7, 32, 16), (12, 5, 33), (11, 40, 24),
                                     (1, 7, 20), (1, 2, 16), (2, 5, 17), (8, 3, 16), (13, 6, 9)])
def test_matmul_into_matches_numpy(dtype, N, K, M):
    """Full tiles, every count of rows left below a full tile (1..ROWS-1: their own tiles; the
    thin ones of 1 and 2 rows with K split over accumulator sets, K below, at and off a multiple
    of the split), columns that do not fill a panel (the zero-padded path), into a column
    slice of a wider array whose other columns stay untouched, from a strided row view of A."""
    from fastrnn.cpu import packed

    rng = np.random.default_rng(N * 1000 + K + M)
    a_wide = rng.uniform(-1, 1, (N, K + 3)).astype(dtype)
    a = a_wide[:, 2:2 + K]
    w = rng.uniform(-1, 1, (M, K)).astype(dtype).T          # (K, M), not contiguous
    c = np.full((N, M + 5), 7.0, dtype=dtype)
    panels = packed.pack(w)
    assert panels.shape == (-(-M // packed.panel_width(dtype)), K, packed.panel_width(dtype))
    packed.matmul_into(a, panels, c[:, 2:2 + M])
    assert relative_error(c[:, 2:2 + M], a @ w) < SAME_BACKEND_PATHS[dtype]
    assert (c[:, :2] == 7).all() and (c[:, 2 + M:] == 7).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_team_members_pack_their_rows_as_pack_does(dtype):
    """The jitted packers a team member runs on W in PyTorch's layout give pack()'s panels."""
    from fastrnn.cpu import packed

    rng = np.random.default_rng(0)
    w = rng.standard_normal((40, 24)).astype(dtype)          # (G, K)
    rows = np.array([3, 17, 5, 39, 0, 8, 9, 10, 11, 12, 13, 14, 15, 16, 30, 31, 32, 33, 2])
    assert np.array_equal(packed.pack_rows_transposed(w, rows), packed.pack(w[rows].T))
    assert np.array_equal(packed.pack_row_block(w, rows, 5, 22), packed.pack(w[rows, 5:22]))
    w_top = rng.standard_normal((40, 11)).astype(dtype)      # the fused step's [W_ih; W_hh]^T
    assert np.array_equal(packed.pack_rows_transposed_stacked(w_top, w, rows),
                          packed.pack(np.concatenate([w_top[rows].T, w[rows].T])))


def test_empty_product_writes_nothing():
    from fastrnn.cpu import packed

    c = np.empty((0, 5), dtype=np.float32)
    packed.matmul_into(np.empty((0, 3), np.float32), packed.pack(np.ones((3, 5), np.float32)), c)
