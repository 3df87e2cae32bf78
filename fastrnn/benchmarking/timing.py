"""Timing: warm up, calibrate, repeat, and summarize as a median with its spread.

CPU work is timed with time.perf_counter around whole calls. GPU work is timed with CUDA events
recorded on the stream around the calls (then synchronized), so host-side timer noise and the final
synchronization are not in the number; the first calls (NVRTC / Numba compilation, CUDA context,
cuDNN plan selection) are warm-up and are reported separately as `first_call_s`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

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
    """How long to spend on one measurement.

    warmup: extra untimed calls after the first (compilation) call.
    target_s: time of the timed samples to aim for, per contestant.
    min_repeats / max_repeats: bounds on the number of samples per contestant.
    min_sample_s: calls shorter than this are batched `inner` at a time so timer resolution and
    per-sample overhead do not dominate.
    blocks: how many blocks each contestant's samples are split into, the contestants taking turns
    block by block (see measure_together).
    """

    warmup: int = 0
    target_s: float = 0.5
    min_repeats: int = 5
    max_repeats: int = 50
    min_sample_s: float = 2e-3
    blocks: int = 1


QUICK = Budget(blocks=2)
FULL = Budget(warmup=1, target_s=1.0, min_repeats=7, max_repeats=100, blocks=3)
SMOKE = Budget(target_s=0.0, min_repeats=2, max_repeats=2, min_sample_s=0.0)


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def measure_together(calls: Sequence[tuple[Callable[[], object], Timer]], budget: Budget = QUICK,
                     on_block: Optional[Callable[[int, int], None]] = None) -> list[Stats]:
    """Median and spread of each call's time; the calls take turns in blocks of samples.

    Each contestant's samples are split into budget.blocks blocks, and the contestants take turns
    block by block (in a rotated order), so that a slow spell of the machine (another process, a
    frequency change) is shared among them. Each block starts with one untimed call: switching
    libraries costs something real but foreign to the contestant (another library's BLAS or OpenMP
    threads still spinning for a while after its last call, caches refilled), and that first call
    absorbs it. The first block's untimed call also sizes the samples: calls shorter than
    budget.min_sample_s are repeated `inner` times per sample, and each contestant gets about
    budget.target_s of samples within [min_repeats, max_repeats]. The calls must have been made
    once already (compilation is not timed here). on_block(done, total) reports progress."""
    k = len(calls)
    blocks = max(1, budget.blocks)
    inners = [1] * k
    shares: list[list[int]] = [[] for _ in calls]
    samples: list[list[float]] = [[] for _ in calls]
    for b in range(blocks):
        for j in range(k):
            i = (j + b) % k
            fn, timer = calls[i]
            if b == 0:
                for _ in range(budget.warmup):
                    timer(fn, 1)
            estimate = timer(fn, 1)
            if b == 0:
                if budget.min_sample_s > 0 and estimate < budget.min_sample_s:
                    inners[i] = max(1, math.ceil(budget.min_sample_s / max(estimate, 1e-7)))
                per_sample = max(estimate * inners[i], 1e-9)
                n = int(min(budget.max_repeats, max(budget.min_repeats, budget.target_s / per_sample)))
                shares[i] = _split(n, min(blocks, n))
            if b < len(shares[i]):
                for _ in range(shares[i][b]):
                    samples[i].append(timer(fn, inners[i]) / inners[i])
        if on_block:
            on_block(b + 1, blocks)
    return [Stats.from_samples(s, inner) for s, inner in zip(samples, inners)]


def measure(fn: Callable[[], object], timer: Timer, budget: Budget = QUICK) -> Stats:
    """Median and spread of fn's time per call; the first call (compilation) is timed separately
    as first_call_s and excluded, like the warm-up."""
    first = timer(fn, 1)
    stats = measure_together([(fn, timer)], budget)[0]
    stats.first_call_s = first
    return stats
