"""Repository-wide pytest hooks (tests/ and bench/ both run under them).

The end-of-run summary lists skipped tests once per reason, with a count: the suite skips hundreds
of parametrized cases for a handful of reasons (no GPU here, a backend without a kernel for a cell),
and pytest's own ``-rs`` prints one line per skipping location. pyproject.toml's ``-rfExX`` keeps
pytest's lines for failures, errors and xfails; the skips come from here.

It also fixes the GEMM provider for the whole run (below).
"""
from __future__ import annotations

import os
from collections import Counter

# The suite never measures GEMM providers (fastrnn/cpu/gemm.py): it forces one, "numpy" unless the
# run names another (FASTRNN_GEMM=numba pytest ... runs the whole suite on that provider).
# tests/test_gemm.py checks the measuring chooser itself, with a private cache directory.
os.environ.setdefault("FASTRNN_GEMM", "numpy")


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
