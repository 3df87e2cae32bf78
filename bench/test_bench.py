"""One benchmark per (case, contestant) of the grid; see conftest.py for how the grid is chosen.

Each test first checks the contestant against the float64 NumPy reference on the case (its first T
steps when the full case would make the reference slow), then makes one untimed call (compilation,
CUDA context, cuDNN plans), then lets pytest-benchmark time the call. GPU calls synchronize inside
the timed function, because pytest-benchmark reads a host clock.
"""
from __future__ import annotations

from functools import lru_cache

import pytest

from fastrnn.benchmarking.check import check_against_reference, reference_for
from fastrnn.benchmarking.workloads import make_problem, make_workload


@lru_cache(maxsize=2)  # tests of one case run one after the other
def _reference(case):
    return reference_for(case)


@lru_cache(maxsize=2)
def _problem(case):
    return make_problem(case)


def test_bench(benchmark, bench_case, contestant):
    if not contestant.available:
        pytest.skip(f"{contestant.name} unavailable: {contestant.reason}")
    case = bench_case
    problem = _problem(case)
    work = make_workload(case, problem.params, contestant)
    verdict = check_against_reference(case, work, _reference(case))
    assert verdict["passed"], (
        f"{contestant.name} on {case.label}: {verdict['tensor']} differs from the reference by "
        f"{verdict['max_rel_err']:.3g} (relative), tolerance {verdict['tolerance']:g}")

    call = work.prepare(problem)

    def timed():
        call()
        work.sync()

    timed()
    benchmark.group = case.label
    benchmark.extra_info.update(backend=contestant.name, device=contestant.device, case=case.key,
                                gflop=case.flops / 1e9, max_rel_err=verdict["max_rel_err"])
    benchmark(timed)
