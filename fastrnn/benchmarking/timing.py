"""Timing inside one worker process: warm up, calibrate, repeat; and the summary of samples.

CPU work is timed with time.perf_counter around whole calls. GPU work is timed with CUDA events
recorded on the stream around the calls (then synchronized), so host-side timer noise and the final
synchronization are not in the number; the first calls (NVRTC / Numba compilation, CUDA context,
cuDNN plan selection) are warm-up and are reported separately as `first_call_s`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Optional

import numpy as np


@dataclass
class Stats:
    """Seconds per call over `n` samples; each sample averaged `inner` back-to-back calls."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int
    inner: int
    first_call_s: Optional[float] = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_samples(cls, samples, inner: int = 1, first_call_s: Optional[float] = None) -> "Stats":
        s = np.asarray(samples, dtype=np.float64)
        q1, med, q3 = np.percentile(s, [25, 50, 75])
        return cls(float(med), float(q1), float(q3), float(s.min()), float(s.max()), int(s.size),
                   int(inner), first_call_s)


class Timer:
    """Times `inner` back-to-back calls of fn; returns seconds for all of them."""

    def __call__(self, fn: Callable[[], object], inner: int) -> float:
        raise NotImplementedError


class HostTimer(Timer):
    """perf_counter around the calls, then `sync` (a no-op on the CPU) before reading the clock."""

    def __init__(self, sync: Callable[[], None] = lambda: None):
        self.sync = sync

    def __call__(self, fn, inner):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        self.sync()
        return time.perf_counter() - t0


class CudaEventTimer(Timer):
    """CUDA events on the current stream, from CuPy or PyTorch (`lib` is "cupy" or "torch")."""

    def __init__(self, lib: str):
        if lib == "cupy":
            import cupy

            self._event = lambda: cupy.cuda.Event()
            self._elapsed_ms = cupy.cuda.get_elapsed_time
        elif lib == "torch":
            import torch

            self._event = lambda: torch.cuda.Event(enable_timing=True)
            self._elapsed_ms = lambda a, b: a.elapsed_time(b)
        else:
            raise ValueError(f"lib must be 'cupy' or 'torch', got {lib!r}")

    def __call__(self, fn, inner):
        start, end = self._event(), self._event()
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        return self._elapsed_ms(start, end) / 1e3


@dataclass(frozen=True)
class Budget:
    """How long to spend on one contestant and one case in one round.

    warmup: untimed calls after the first (compilation) call, besides the calibration call.
    target_s: time of the timed samples to aim for.
    min_repeats / max_repeats: bounds on the number of samples.
    min_sample_s: calls shorter than this are batched `inner` at a time so timer resolution and
    per-sample overhead do not dominate.
    """

    warmup: int = 0
    target_s: float = 0.15
    min_repeats: int = 3
    max_repeats: int = 30
    min_sample_s: float = 2e-3


QUICK = Budget()
FULL = Budget(warmup=1, target_s=0.3, min_repeats=4, max_repeats=60)

# Untimed calls a model case (a whole char-LM training step or forward) gets at least: what is
# timed is the steady state of a training loop. In the first records (2026-12-02) the converted
# model's first three timed steps in each fresh process fell from ~400 to ~320 ms, torch.nn's did
# not move: both now get the same warm-up.
MODEL_WARMUP = 3


def budget_for(case, budget: "Budget") -> "Budget":
    """The budget a case is timed with: `budget`, with at least MODEL_WARMUP warm-up calls for a
    model case."""
    if getattr(case, "kind", None) == "model" and budget.warmup < MODEL_WARMUP:
        return replace(budget, warmup=MODEL_WARMUP)
    return budget
SMOKE = Budget(target_s=0.0, min_repeats=2, max_repeats=2, min_sample_s=0.0)

# Rounds each preset takes by default: every contestant is timed once per round, in a fresh process.
# Five, not three, for the quick grid too: PyTorch's time differs from one fresh process to the next
# (bimodal on some cases), and with three rounds two back-to-back quick runs on an idle 2-core EPYC
# gave LSTM inference intervals 0.71-1.27x and 0.61-0.70x, which do not overlap (2026-12-02).
ROUNDS = {"quick": 5, "full": 5}


def measure(fn: Callable[[], object], timer: Timer, budget: Budget = QUICK) -> tuple[list[float], int]:
    """Samples of fn's time per call, and how many calls each sample averaged.

    fn must have been called once already (compilation is not timed here). Then budget.warmup
    untimed calls, one untimed calibration call that sizes the samples (calls shorter than
    budget.min_sample_s are repeated `inner` times per sample; about budget.target_s of samples within
    [min_repeats, max_repeats]), and the samples."""
    for _ in range(budget.warmup):
        timer(fn, 1)
    estimate = timer(fn, 1)
    inner = 1
    if budget.min_sample_s > 0 and estimate < budget.min_sample_s:
        inner = max(1, math.ceil(budget.min_sample_s / max(estimate, 1e-7)))
    per_sample = max(estimate * inner, 1e-9)
    n = int(min(budget.max_repeats, max(budget.min_repeats, budget.target_s / per_sample)))
    return [timer(fn, inner) / inner for _ in range(n)], inner


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 0) -> float:
    """Median milliseconds per call of `repeats` timed calls of fn, after one untimed first call
    (compilation, allocation) and `warmup` more: the timing of the example programs and scripts."""
    fn()
    budget = Budget(warmup=warmup, target_s=0.0, min_repeats=repeats, max_repeats=repeats,
                    min_sample_s=0.0)
    samples, _ = measure(fn, HostTimer(), budget)
    return 1000 * float(np.median(samples))
