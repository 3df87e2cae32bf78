"""The root conftest drops the CPU kernels' Numba cache when any fastrnn/cpu source changed: Numba's
own check sees only each kernel's file, not the helpers (_rows.py, _math.py, _blas.py) compiled in."""
import importlib.util
from pathlib import Path


def _root_conftest():
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("fastrnn_root_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_helper_edit_drops_the_cached_kernels(tmp_path):
    drop = _root_conftest().drop_outdated_numba_cache
    cpu = tmp_path / "fastrnn" / "cpu"
    (cpu / "__pycache__").mkdir(parents=True)
    (cpu / "lstm.py").write_text("kernels\n")
    (cpu / "_rows.py").write_text("helpers v1\n")
    cached = [cpu / "__pycache__" / "lstm.forward_step-10.py311.nbi",
              cpu / "__pycache__" / "lstm.forward_step-10.py311.1.nbc"]

    def fill():
        for path in cached:
            path.write_bytes(b"compiled")

    fill()
    assert drop(tmp_path / "fastrnn")                  # no stamp yet: start over
    assert not any(path.exists() for path in cached)
    fill()
    assert not drop(tmp_path / "fastrnn")              # nothing changed: the cache stays
    assert all(path.exists() for path in cached)
    (cpu / "_rows.py").write_text("helpers v2\n")
    assert drop(tmp_path / "fastrnn")                  # a helper changed: dropped
    assert not any(path.exists() for path in cached)
