"""Benchmarks: every fastrnn backend against PyTorch (and the GEMM floor), from one grid.

`fastrnn bench` (fastrnn.cli) and the pytest-benchmark suite under bench/ are built on this package:

    grid.py       the cases (quick, full, custom)         backends.py   who runs: registry, PyTorch, floor
    workloads.py  one contestant's timed call on a case   check.py      the check against the reference
    timing.py     warm-up, repeats, samples               floor.py      GEMM floor and peak GEMM rate
    threads.py    thread knobs, set and read back         worker.py     one contestant's process
    runner.py     rounds of workers -> the record         cost.py       predicted run time (the ETA)
    intervals.py  bootstrap intervals of speedups         machine.py    what it ran on
    report.py     JSON, verdicts and Markdown             summary.py    the short text for stdout
    plots.py      PNG charts                              compare.py    records side by side

Nothing is imported here, so a worker process loads only what its contestant needs.
"""
