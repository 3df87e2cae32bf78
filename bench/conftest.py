"""The pytest-benchmark suite is generated from fastrnn.benchmarking's grid and contestants.

Two modes, chosen by pytest-benchmark's own switch:

* benchmarks enabled (`pytest bench --benchmark-enable`): every case of the quick and full grids on
  every contestant (registry backends, PyTorch CPU, PyTorch cuDNN), grouped per shape so each group's
  table puts fastrnn and PyTorch side by side. Cases outside the quick grid are marked `slow`
  (`-m slow` to run them, `-m ""` for everything).
* benchmarks disabled (`--benchmark-disable`, as in the normal test run): the same grid shrunk to tiny
  shapes (fastrnn.benchmarking.grid.Case.shrunk), deduplicated, nothing slow: a smoke test of every
  code path the benchmarks use, in seconds, so they cannot rot.

Contestants that cannot run here are skipped with the reason; CUDA ones carry the `gpu` marker.
"""
from __future__ import annotations

import pytest

from fastrnn.benchmarking.backends import all_contestants
from fastrnn.benchmarking.grid import full_grid, quick_grid


def benchmarks_enabled(config) -> bool:
    if config.getoption("benchmark_enable", False):
        return True
    return not config.getoption("benchmark_disable", False)


def bench_params(enabled: bool) -> list:
    quick = quick_grid()
    cases = list(dict.fromkeys(quick + full_grid()))
    if not enabled:
        cases = list(dict.fromkeys(c.shrunk() for c in cases))
    params = []
    for case in cases:
        slow = enabled and case not in quick
        for contestant in (c for c in all_contestants() if c.runs(case)):
            marks = ([pytest.mark.slow] if slow else []) + (
                [pytest.mark.gpu] if contestant.device == "cuda" else [])
            params.append(pytest.param(case, contestant, marks=marks,
                                       id=f"{case.key}-{contestant.name}"))
    return params


def pytest_generate_tests(metafunc):
    if {"bench_case", "contestant"} <= set(metafunc.fixturenames):
        metafunc.parametrize(("bench_case", "contestant"),
                             bench_params(benchmarks_enabled(metafunc.config)))
