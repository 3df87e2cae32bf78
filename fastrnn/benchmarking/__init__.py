"""Benchmarks: every fastrnn backend against PyTorch (and the GEMM floor), from one grid.

`fastrnn bench` (fastrnn.cli) and the pytest-benchmark suite under bench/ are built on this package:

    grid.py       the cases (quick, full, custom)       backends.py   who runs: registry + PyTorch
    workloads.py  one contestant on one case            timing.py     warm-up, repeats, median, IQR
    floor.py      GEMM floor and peak GEMM rate         machine.py    what it ran on
    runner.py     check, time, record                   report.py     JSON and Markdown
    plots.py      PNG charts                            compare.py    two records side by side
"""
from .grid import Case, build_grid, full_grid, issue3_cases, quick_grid
from .runner import run_benchmarks

__all__ = ["Case", "build_grid", "full_grid", "issue3_cases", "quick_grid", "run_benchmarks"]
