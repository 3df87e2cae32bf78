"""95% intervals for speedups, by bootstrap over the rounds' samples.

A speedup is the ratio of two medians (the baseline's time over the contestant's), each over all the
samples of all rounds. Its interval must cover what changes from one round to the next (a library that
is 55 ms in one process and 98 ms in the next), not only the spread within a round, so the bootstrap
resamples in two stages: first the rounds, with replacement (the same rounds for both contestants,
since a round is a stretch of the machine's time that both shared), then the samples within each drawn
round, and takes the ratio of the two pooled medians. With three rounds the interval is wide whenever
the rounds disagree: that is the point.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000


def pooled_median(rounds: Sequence[Sequence[float]]) -> Optional[float]:
    values = [v for r in rounds for v in r]
    return float(np.median(values)) if values else None


def _resampled(rounds, picks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B,) pooled medians: for each resample b, the rounds picks[b] with their samples resampled."""
    B, R = picks.shape
    width = max(len(r) for r in rounds)
    table = np.full((len(rounds), B, width), np.nan)
    for i, r in enumerate(rounds):
        r = np.asarray(r, dtype=np.float64)
        table[i, :, :r.size] = r[rng.integers(0, r.size, size=(B, r.size))]
    pooled = np.concatenate([table[picks[:, j], np.arange(B)] for j in range(R)], axis=1)
    return np.nanmedian(pooled, axis=1)


def ratio_interval(baseline: Sequence[Sequence[float]], contestant: Sequence[Sequence[float]],
                   level: float = LEVEL, resamples: int = RESAMPLES,
                   seed: int = 0) -> Optional[tuple[float, float]]:
    """Bootstrap interval of median(baseline) / median(contestant); each argument holds one list of
    samples per round, the rounds in the same order. Rounds where either side has no sample are left
    out; None when no round is left."""
    pairs = [(b, c) for b, c in zip(baseline, contestant) if len(b) and len(c)]
    if not pairs:
        return None
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(pairs), size=(resamples, len(pairs)))
    ratios = (_resampled([b for b, _ in pairs], picks, rng)
              / _resampled([c for _, c in pairs], picks, rng))
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def verdict(speedup: Optional[float], interval: Optional[Sequence[float]],
            target: Optional[float]) -> Optional[str]:
    """"yes" when the whole interval reaches the target, "no" when it all falls short, "unstable" when it
    straddles the target; from the speedup alone when there is no interval; None without a target."""
    if target is None or speedup is None:
        return None
    if interval is None:
        return "yes" if speedup >= target else "no"
    low, high = interval
    if low >= target:
        return "yes"
    if high < target:
        return "no"
    return "unstable"
