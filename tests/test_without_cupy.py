"""The device and dispatch tests, run again in a process where `import cupy` fails (see block_cupy.py),
inside the ordinary `python -m pytest`: what a machine without CuPy sees (a documented
BackendUnavailableError for device="cuda", backends() without "cupy", ...) is tested even where CI
has CuPy installed.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent
# The device and dispatch tests: test_dispatch.py, and the device and backend cases of
# test_bad_input.py (the rest of that file checks each backend's arithmetic and messages).
TARGETS = ["test_dispatch.py"] + [f"test_bad_input.py::{name}" for name in (
    "test_bad_device", "test_unknown_backend_lists_what_is_available",
    "test_unavailable_backend_says_why_and_what_is_available", "test_backend_for_another_device",
    "test_numpy_array_into_cuda_module", "test_cupy_array_into_cpu_module")]


def test_device_and_dispatch_tests_pass_without_cupy():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(TESTS), str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("FASTRNN_BACKEND", None)
    cmd = [sys.executable, "-m", "pytest", "-p", "block_cupy", "-p", "no:cacheprovider", "-rs"]
    result = subprocess.run(cmd + [str(TESTS / t) for t in TARGETS], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    report = result.stdout + result.stderr
    # conftest's header lists every backend: proof that the blocker was in place
    assert "cupy is not importable (ModuleNotFoundError" in report, report[-3000:]
    assert result.returncode == 0, f"failed without CuPy:\n{report[-6000:]}"
    assert " passed" in report.splitlines()[-1], report[-3000:]
