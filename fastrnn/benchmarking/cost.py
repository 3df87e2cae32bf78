"""How long a run will take: the progress bar's time left, from the first case on.

Before anything is measured, each (contestant, case) is predicted from a cost model of the case: its
GEMM work at a contestant-typical rate plus a per-time-step overhead, as many calls as timing.measure
will make, plus the first call, the reference check and the worker's start-up. Those rates were measured
on a 2-core AMD EPYC; as cases finish, the model is corrected: the ratio of measured to predicted wall
time, per contestant (or over everything measured, for a contestant not yet seen), scales what is left
of the first round, and from the second round on a (contestant, case) is predicted by its own last time.

A model case (the char-LM) is costed the same way: its GEMM work (grid.Case.flops counts every layer
and the read-out) plus the per-step overhead of each of its layers, at the rates of its contestants'
priors; its check runs the model in float64 (MODEL_CHECK_FACTOR) and its reference is the torch.nn
model in float64 on one thread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from .check import check_steps
from .grid import Case
from .timing import Budget, budget_for


@dataclass(frozen=True)
class Prior:
    gflops: float            # GEMM rate of a whole-sequence call
    step_s: float            # overhead per time step, inference
    train_step_s: float      # overhead per time step, training (forward + backward)
    cell_step_s: float       # one *Cell call
    first_call_s: float      # the first call's cost beyond a plain call (compilation, cache load)
    startup_s: float         # starting the worker: interpreter, imports


PRIORS = {
    "numpy": Prior(100, 35e-6, 100e-6, 50e-6, 0.01, 0.5),
    "numba": Prior(155, 2.5e-6, 20e-6, 10e-6, 0.3, 1.0),
    "torch-cpu": Prior(150, 5e-6, 55e-6, 32e-6, 0.05, 2.5),
    # the char-LM pair: PyTorch's rates, plus the adapter's overhead and Numba's first call when
    # converted; both workers import torch and fastrnn
    "torch.nn-cpu": Prior(150, 5e-6, 55e-6, 32e-6, 0.1, 3.0),
    "fastrnn.torch-cpu": Prior(150, 5e-6, 40e-6, 32e-6, 2.0, 3.5),   # + float64 kernels for the check
    "gemm-floor-cpu": Prior(175, 3e-6, 20e-6, 7e-6, 0.0, 0.5),
    "reference": Prior(30, 40e-6, 120e-6, 60e-6, 0.0, 0.5),   # float64, one thread
}
DEFAULT_PRIOR = {"cpu": PRIORS["numba"], "cuda": Prior(5000, 20e-6, 60e-6, 30e-6, 2.0, 4.0)}
BUILD_S = 0.005   # making the case's data and module, per case
MODEL_CHECK_FACTOR = 2.0   # a model case's check runs in float64: about twice its float32 call per step


def per_call_s(prior: Prior, case: Case) -> float:
    if case.kind == "step":
        step = prior.cell_step_s
    else:
        step = prior.train_step_s if case.mode == "training" else prior.step_s
    return case.flops / (prior.gflops * 1e9) + case.T * case.layers * step


def timed_calls(t: float, budget: Budget) -> float:
    """Calls timing.measure makes for a call of t seconds: warm-up, calibration and the samples."""
    inner = math.ceil(budget.min_sample_s / t) if 0 < t < budget.min_sample_s else 1
    n = min(budget.max_repeats, max(budget.min_repeats, budget.target_s / max(t * inner, 1e-9)))
    return budget.warmup + 1 + int(n) * inner


def predict_case_s(prior: Prior, case: Case, budget: Budget, check: bool) -> float:
    """Wall time of one case in one worker: build, first call, check, warm-up and samples."""
    t = per_call_s(prior, case)
    wall = BUILD_S + prior.first_call_s + t + timed_calls(t, budget_for(case, budget)) * t
    if check:
        factor = MODEL_CHECK_FACTOR if case.kind == "model" else 1.0
        wall += factor * t * check_steps(case) / case.T
    return wall


def predict_reference_s(case: Case) -> float:
    return BUILD_S + per_call_s(PRIORS["reference"], case) * check_steps(case) / case.T


@dataclass
class Job:
    """One worker run of the plan: `unit` (a contestant name, or "reference") on `cases`."""
    unit: str
    device: str
    cases: Sequence[Case]
    round: int
    check: bool = False
    done: set = field(default_factory=set)
    started: bool = False
    finished: bool = False


class CostModel:
    """Predicted seconds left of a plan of worker jobs, corrected by what has been measured."""

    def __init__(self, jobs: Sequence[Job], budget: Budget):
        self.jobs = list(jobs)
        self.budget = budget
        self._ratios: dict[str, list[float]] = {}      # unit -> measured / predicted, first round
        self._last: dict[tuple[str, str], float] = {}  # (unit, case key) -> last timed wall
        self._startup: dict[str, float] = {}

    def prior(self, job: Job) -> Prior:
        return PRIORS.get(job.unit, DEFAULT_PRIOR.get(job.device, PRIORS["numba"]))

    def _prior_case_s(self, job: Job, case: Case) -> float:
        if job.unit == "reference":
            return predict_reference_s(case)
        return predict_case_s(self.prior(job), case, self.budget, job.check)

    def scale(self, unit: str) -> float:
        # A unit not yet seen borrows the other contestants' correction, never the reference's: the
        # reference runs float64 on one thread, and its ratio (about 3 on 2026-12-02's EPYC, against
        # about 1.6 for the contestants) made the time left after the first case 1.8x too long.
        ratios = self._ratios.get(unit) or [r for u, rs in self._ratios.items() if u != "reference"
                                            for r in rs]
        return math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else 1.0

    def case_s(self, job: Job, case: Case) -> float:
        last = self._last.get((job.unit, case.key))
        if last is not None and not job.check:
            return last
        return self._prior_case_s(job, case) * self.scale(job.unit)

    def startup_s(self, job: Job) -> float:
        return self._startup.get(job.unit, self.prior(job).startup_s * self.scale(job.unit))

    def observe_startup(self, job: Job, seconds: float) -> None:
        self._startup[job.unit] = max(seconds, 0.0)

    def observe_case(self, job: Job, case: Case, wall_s: float, check_s: float = 0.0) -> None:
        predicted = self._prior_case_s(job, case)
        if job.round <= 0 and wall_s > 0 and predicted > 0:   # the reference, then the first round
            self._ratios.setdefault(job.unit, []).append(wall_s / predicted)
        self._last[(job.unit, case.key)] = max(wall_s - (check_s if job.check else 0.0), 0.0)
        job.done.add(case.key)

    def remaining_s(self, in_case_s: float = 0.0) -> float:
        """Seconds left; in_case_s is how long the case now running has already run."""
        left = 0.0
        for job in self.jobs:
            if job.finished:
                continue
            if not job.started:
                left += self.startup_s(job)
            pending = [c for c in job.cases if c.key not in job.done]
            for i, case in enumerate(pending):
                s = self.case_s(job, case)
                left += max(s - in_case_s, 0.0) if job.started and i == 0 else s
        return left

