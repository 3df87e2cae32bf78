"""Repository-wide pytest hooks (tests/ and bench/ both run under them).

The end-of-run summary lists skipped tests once per reason, with a count: the suite skips hundreds
of parametrized cases for a handful of reasons (no GPU here, a backend without a kernel for a cell),
and pytest's own ``-rs`` prints one line per skipping location. pyproject.toml's ``-rfExX`` keeps
pytest's lines for failures, errors and xfails; the skips come from here.

It also fixes the GEMM provider and the team choice for the whole run, and drops Numba cache files that the CPU
kernels' helper modules have outdated (both below).
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

# The suite never measures GEMM providers (fastrnn/cpu/gemm.py): it forces one, "numpy" unless the
# run names another (FASTRNN_GEMM=numba pytest ... runs the whole suite on that provider).
# tests/test_gemm.py checks the measuring chooser itself, with a private cache directory.
os.environ.setdefault("FASTRNN_GEMM", "numpy")
# Nor whether a loop runs on the thread team (fastrnn/cpu/team_choice.py): wherever it applies, it
# does, so the team loops are what the suite checks (FASTRNN_TEAM=0 runs it on the serial loops);
# tests/test_team.py checks the measuring choice with a private cache directory.
os.environ.setdefault("FASTRNN_TEAM", "1")


def drop_outdated_numba_cache(package: Path) -> bool:
    """Delete the Numba cache of fastrnn/cpu when any of its sources changed since it was written.

    Numba's disk cache notices a change to a kernel's own file only, but the kernels compile in the
    helpers they call (_rows.py, _math.py, _blas.py): after an edit to one of those, the cached
    kernels would still run the old code, and the tests would pass or fail on code that is no
    longer there. A stamp of every source's hash, kept beside the cache, says when to start over.
    Returns True when it deleted anything. (An installed package's files do not change in place: a
    new version rewrites every file, which Numba's own check catches.)
    """
    cache = package / "cpu" / "__pycache__"
    digest = hashlib.sha256()
    for source in sorted((package / "cpu").glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    stamp = cache / "fastrnn-sources.sha256"
    current = digest.hexdigest()
    try:
        if stamp.read_text() == current:
            return False
    except OSError:
        pass
    dropped = False
    for path in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
        path.unlink(missing_ok=True)
        dropped = True
    try:
        cache.mkdir(exist_ok=True)
        stamp.write_text(current)
    except OSError:
        pass
    return dropped


drop_outdated_numba_cache(Path(__file__).resolve().parent / "fastrnn")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    counts = Counter(_skip_reason(report) for report in skipped)
    reasons = "1 reason" if len(counts) == 1 else f"{len(counts)} reasons"
    terminalreporter.section(f"skipped: {len(skipped)} tests for {reasons}")
    for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        terminalreporter.write_line(f"{count:6d}  {reason}")
