"""The numba backend's GEMM providers (fastrnn/cpu/gemm.py) and the per-machine choice between them,
and the one thread-count setting (fastrnn/threads.py).

Every provider is checked against a float64 product on the recurrent shapes (forward h W^T and
backward dG W) in both dtypes; the chooser is checked for measuring once, caching on disk per
machine, and obeying FASTRNN_GEMM. The measurement itself runs only on tiny shapes here: the rest
of the suite forces a provider (conftest.py).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from fastrnn import dispatch
from fastrnn.numerics import SAME_BACKEND_PATHS, relative_error

pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("numba") is not None,
                                reason=f"numba backend unavailable: {dispatch.unavailable_reason('numba')}")

DTYPES = ("float32", "float64")
# (rows, H, G): LSTM/GRU/RNN gate widths, a tiny batch, an odd H, a batch above NUMBA_MAX_ROWS.
SHAPES = [(1, 4, 4), (3, 5, 20), (4, 128, 512), (32, 33, 99), (9, 64, 192), (64, 16, 16)]


@pytest.fixture
def gemm(monkeypatch, tmp_path):
    """fastrnn.cpu.gemm with a private cache directory, nothing forced and no choice in memory."""
    from fastrnn.cpu import gemm as module

    monkeypatch.delenv(module.ENV_FORCE, raising=False)
    monkeypatch.setenv(module.ENV_CACHE_DIR, str(tmp_path))
    monkeypatch.setattr(module, "_choices", {})
    monkeypatch.setattr(module, "_loaded_for", None)
    return module


def _mkl_reason():
    from fastrnn.cpu.gemm import mkl_unavailable_reason

    return mkl_unavailable_reason()


def _provider_params():
    from fastrnn.cpu.gemm import MKL_PROVIDERS, PROVIDERS

    skip_mkl = pytest.mark.skipif(dispatch.unavailable_reason("numba") is None
                                  and _mkl_reason() is not None,
                                  reason="MKL unavailable (pip install 'fastrnn[mkl]')")
    return [pytest.param(name, marks=[skip_mkl] if name in MKL_PROVIDERS else [])
            for name in PROVIDERS]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, H, G", SHAPES)
@pytest.mark.parametrize("transpose", [True, False], ids=["h_WT", "dG_W"])
@pytest.mark.parametrize("provider", _provider_params())
def test_every_provider_matches_numpy(gemm, monkeypatch, provider, transpose, rows, H, G, dtype):
    rng = np.random.default_rng(1)
    w = rng.uniform(-1, 1, (G, H)).astype(dtype)
    K = H if transpose else G
    a = rng.uniform(-1, 1, (rows, K)).astype(dtype)
    exact = a.astype(np.float64) @ (w.T if transpose else w).astype(np.float64)
    monkeypatch.setenv(gemm.ENV_FORCE, provider)
    product = gemm.step_product(w, transpose=transpose, rows=rows)
    out = np.full(exact.shape, np.nan, dtype=dtype)
    for _ in range(2):            # reused, as in the time loops
        product(a, out)
        assert relative_error(out, exact) < 10 * SAME_BACKEND_PATHS[dtype]


def test_forcing_numba_leaves_large_batches_to_blas(gemm, monkeypatch):
    monkeypatch.setenv(gemm.ENV_FORCE, "numba")
    assert gemm.provider_for(gemm._shape_key(True, gemm.NUMBA_MAX_ROWS, 8, 32, "float32")) == "numba"
    assert gemm.provider_for(gemm._shape_key(True, gemm.NUMBA_MAX_ROWS + 1, 8, 32, "float32")) == "numpy"


def test_unknown_forced_provider_is_an_error(gemm, monkeypatch):
    monkeypatch.setenv(gemm.ENV_FORCE, "mkl-typo")
    with pytest.raises(ValueError, match="FASTRNN_GEMM='mkl-typo' is not a GEMM provider"):
        gemm.step_product(np.ones((4, 4), np.float32), transpose=True, rows=4)


def test_choice_is_measured_once_and_cached_on_disk(gemm, monkeypatch, tmp_path):
    calls = []
    real = gemm.measure

    def counting(key):
        calls.append(key)
        return real(key)

    monkeypatch.setattr(gemm, "measure", counting)
    key = gemm._shape_key(True, 3, 8, 32, "float32")
    name = gemm.provider_for(key)
    assert name in gemm.candidates(3) and calls == [key]
    assert gemm.provider_for(key) == name and len(calls) == 1

    data = json.loads((tmp_path / gemm.CACHE_FILE).read_text())
    assert data == {gemm.machine_id(): {key: name}}

    # A new process (no choice in memory) reads the file instead of measuring.
    monkeypatch.setattr(gemm, "_choices", {})
    monkeypatch.setattr(gemm, "_loaded_for", None)
    monkeypatch.setattr(gemm, "measure", lambda k: pytest.fail("measured again"))
    assert gemm.provider_for(key) == name
    assert name in gemm.choices_report()


def test_cache_is_per_machine_and_ignores_bad_entries(gemm, monkeypatch, tmp_path):
    key = gemm._shape_key(False, 2, 8, 8, "float64")
    (tmp_path / gemm.CACHE_FILE).write_text(json.dumps({
        "another machine": {key: "numba"},
        gemm.machine_id(): {key: "no-such-provider"},
    }))
    monkeypatch.setattr(gemm, "measure", lambda k: "numpy-t")
    assert gemm.provider_for(key) == "numpy-t"
    data = json.loads((tmp_path / gemm.CACHE_FILE).read_text())
    assert data["another machine"] == {key: "numba"}
    assert data[gemm.machine_id()] == {key: "numpy-t"}


def test_unreadable_or_unwritable_cache_still_chooses(gemm, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(gemm.ENV_CACHE_DIR, str(blocker / "sub"))
    monkeypatch.setattr(gemm, "measure", lambda k: "numpy")
    assert gemm.provider_for(gemm._shape_key(True, 5, 8, 8, "float32")) == "numpy"


def test_measurement_is_short(gemm):
    import time

    t0 = time.perf_counter()
    gemm.measure(gemm._shape_key(True, 32, 256, 1024, "float32"))
    assert time.perf_counter() - t0 < 1.0


def test_cache_dir_follows_the_environment(gemm, monkeypatch, tmp_path):
    assert gemm.cache_dir() == tmp_path
    monkeypatch.delenv(gemm.ENV_CACHE_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gemm.cache_dir() == tmp_path / "xdg" / "fastrnn"


# -- threads --------------------------------------------------------------------------------------

def test_set_num_threads_reaches_openblas():
    import ctypes

    import fastrnn
    from fastrnn import threads

    getters = []
    for lib, name in threads.openblas_libraries():
        getter = getattr(lib, name.replace("set_num_threads", "get_num_threads"))
        getter.restype = ctypes.c_int
        getters.append(getter)
    assert getters, "NumPy's OpenBLAS was not found among the loaded libraries"
    before = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(1)
        assert fastrnn.get_num_threads() == 1
        assert [g() for g in getters] == [1] * len(getters)
    finally:
        fastrnn.set_num_threads(before)
    assert [g() for g in getters] == [before] * len(getters)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects_bad_counts(bad):
    import fastrnn

    with pytest.raises(ValueError, match="positive int"):
        fastrnn.set_num_threads(bad)


def test_default_follows_omp_num_threads(monkeypatch):
    from fastrnn import threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "nonsense")
    assert threads.default_num_threads() >= 1
