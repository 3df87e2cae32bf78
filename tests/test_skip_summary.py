"""The end-of-run summary lists each skip reason once, with its count (the root conftest.py)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SKIPPING_TESTS = '''
import pytest

@pytest.mark.parametrize("i", range(3))
def test_no_gpu(i):
    pytest.skip("no GPU here")

@pytest.mark.skipif(True, reason="needs a newer numpy")
def test_numpy():
    pass

def test_runs():
    pass
'''


def test_skips_are_counted_once_per_reason(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_skipping.py").write_text(SKIPPING_TESTS)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rfE",
                          str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    header = [i for i, line in enumerate(lines) if "skipped: 4 tests for 2 reasons" in line]
    assert header, run.stdout
    summary = []
    for line in lines[header[0] + 1:]:
        if line.startswith("="):
            break
        if line.strip():
            summary.append(line.split(None, 1))
    assert summary == [["3", "no GPU here"], ["1", "needs a newer numpy"]], run.stdout
