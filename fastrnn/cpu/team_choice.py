"""Team or serial loops: which one a loop runs is measured on this machine on first use.

The thread team (team.py) wins where its members' per-step products on their own slices of W_hh
(packed.py) and their halves of the pointwise work beat the serial loop's BLAS call on the whole;
it pays a fixed cost per call (packing its weight blocks, waking its workers). How the two compare
depends on the machine: on 2 Zen 4 cores the team ran LSTM inference (32, 256) 1.4x faster, on 2
Zen 2 cores the two paths came out close. So, as for the GEMM providers (gemm.py), the first call
of a shape (cell, mode, dtype, batch, input and hidden size) times both paths on probe sequences of
SHORT_STEPS and LONG_STEPS steps (a training shape: forward and backward), in PASSES passes over
the two paths, fits each path's cost through its fastest calls as fixed + steps * per_step, and
caches the two lines on disk beside the GEMM choices; every call then takes the path that is
cheaper at its own sequence length (the team only when it wins by MARGIN).

The team's calls are timed first, after SETTLE_S of untimed team calls: BLAS threads that an
earlier serial call woke go on spinning for a while (OpenBLAS: about 0.1 s; measured on Zen 2, LSTM
training (100, 4, 256) on the team: 37 ms right after serial calls, 13.5 ms once they stopped) and
would slow the team calls timed meanwhile, which a loop of team calls does not see.

The two directions of a bidirectional layer are measured the same way (side_by_side): both
directions side by side (directions.py) against one after the other (each on the path chosen
above), under keys "both directions ..." in the same file.

FASTRNN_TEAM: unset or "auto" measures; "1" runs the team wherever it applies, and the directions
side by side (no measuring; the tests use it); "0" never runs it (team.unavailable_reason).
"""
from __future__ import annotations

import math
import os
import threading
import time
from typing import Optional

import numpy as np

from . import gemm, team
from .team import GRU, LSTM, RNN  # noqa: F401  (RNN: team_choice.RNN for callers)

CACHE_FILE = "team-choices.json"
# Part of the cache section's name: raise it when the team's or the serial loops' kernels change
# enough that costs measured before no longer hold (3: packed.py, fixed + per-step costs; 4: the
# 6-row packed tile and one projection GEMM a member; 5: thin tiles of 1-3 rows, and batches of
# 1-2 rows on the team; 6: probes in two passes, PASSES; 7: a training forward's projection into
# each member's own region, and the directions side by side; 8: probes of 48 steps, three passes;
# 9: the inference forwards' fused step, team_loops.FUSED_STEP_ROWS; 10: a training forward's
# h_prev is its out (no copy a step), the weight gradients' rows put back by the members).
KERNELS_VERSION = 10
# The long probe: the cost at the lengths people run (T ~ 100) is extrapolated from these two, so
# an error in the short probe weighs (T - SHORT) / (LONG - SHORT) - 1 times on it: with 24 steps a
# short probe taken in one of a VM's fast moments (6 ms off at LSTM training 64x512) moved the
# crossing from T = 11 to 270 and put T = 100 on the slower serial loops (540 against 481 ms).
SHORT_STEPS, LONG_STEPS = 4, 48
ROUNDS = 5            # timed calls per path and length; the fastest counts (noise only adds time)
# Passes over both paths (team, serial, team, ...), the fastest call of all counting: a machine
# that runs slower for a second or more at a time (shared VMs do) would otherwise slow every call
# of one path's probe and none of the other's (seen on a Zen 2 VM: LSTM inference (100,64,256)
# probed 774 us a team step against 602 serial, then ran 58 ms on the team and 66 serially).
PASSES = 3
SETTLE_S = 0.2        # untimed team calls first, for at least this long (see the docstring)
MARGIN = 0.03
PATHS = ("team", "serial")
BOTH = "both directions "           # the prefix of the directions' keys
BOTH_PATHS = ("side by side", "one after the other")

_costs: dict[str, dict] = {}    # shape key -> {"team": [fixed_s, per_step_s], "serial": [...]}
_loaded_for: Optional[str] = None
_lock = threading.RLock()
_local = threading.local()      # .forced: True/False while a probe runs one path


def mode() -> str:
    """FASTRNN_TEAM as "auto", "1" or "0"; anything else is an error naming those."""
    value = os.environ.get(team.ENV_SWITCH, "auto").strip().lower() or "auto"
    if value not in ("auto", "1", "0"):
        raise ValueError(f"{team.ENV_SWITCH}={value!r}: expected auto (measure per shape), 1 (always) "
                         f"or 0 (never)")
    return value


def _cell_name(cell: int, use_relu: bool) -> str:
    return {LSTM: "lstm", GRU: "gru"}.get(cell, "rnn_relu" if use_relu else "rnn_tanh")


def shape_key(cell: int, use_relu: bool, training: bool, rows: int, inputs: int, hidden: int,
              dtype) -> str:
    return (f"{_cell_name(cell, use_relu)} {'training' if training else 'inference'} "
            f"{np.dtype(dtype).name} {rows}x{inputs}x{hidden}")


def paths_of(key: str) -> tuple[str, str]:
    """The two paths a key's costs compare, the one taken on a win first."""
    return BOTH_PATHS if key.startswith(BOTH) else PATHS


def _valid(key: str, costs) -> bool:
    return (isinstance(costs, dict) and all(
        isinstance(costs.get(p), list) and len(costs[p]) == 2 for p in paths_of(key)))


def first_wins(costs: dict, steps: int, paths: tuple[str, str] = PATHS) -> bool:
    """Whether the first path's fitted cost at this sequence length beats the second's by MARGIN."""
    (first_fixed, first_step), (other_fixed, other_step) = costs[paths[0]], costs[paths[1]]
    return first_fixed + steps * first_step < (1 - MARGIN) * (other_fixed + steps * other_step)


def team_wins(costs: dict, steps: int) -> bool:
    """Whether the team's fitted cost at this sequence length beats the serial one by MARGIN."""
    return first_wins(costs, steps, PATHS)


def _unmeasured() -> Optional[bool]:
    """The answer where nothing is measured: a probe's forcing of one path in this thread, or
    FASTRNN_TEAM=1 / 0; None in auto mode (the directions' probe calls directions.py directly and
    forces nothing)."""
    forced = getattr(_local, "forced", None)
    if forced is not None:
        return forced
    chosen = mode()
    return None if chosen == "auto" else chosen == "1"


def use_team(cell: int, use_relu: bool, training: bool, steps: int, rows: int, inputs: int,
             hidden: int, dtype) -> bool:
    """Whether a loop of this shape and length runs on the team (the caller has checked that it
    can)."""
    settled = _unmeasured()
    if settled is not None:
        return settled
    key = shape_key(cell, use_relu, training, rows, inputs, hidden, dtype)
    return first_wins(_costs_for(key, lambda: measure(cell, use_relu, training, rows, inputs,
                                                      hidden, dtype)), steps, PATHS)


def side_by_side(cell: int, use_relu: bool, training: bool, steps: int, rows: int, inputs: int,
                 hidden: int, dtype) -> bool:
    """Whether the two directions of a bidirectional layer of this shape run side by side
    (directions.py; the caller has checked that they can)."""
    settled = _unmeasured()
    if settled is not None:
        return settled
    key = BOTH + shape_key(cell, use_relu, training, rows, inputs, hidden, dtype)
    return first_wins(_costs_for(key, lambda: measure_directions(
        cell, use_relu, training, rows, inputs, hidden, dtype)), steps, BOTH_PATHS)


def _costs_for(key: str, measure_costs) -> dict:
    """The cost lines of key: from memory, from the cache file, or measured now and saved."""
    global _loaded_for
    with _lock:
        section = _section()
        if _loaded_for != section:
            _costs.clear()
            _costs.update({k: v for k, v in gemm.read_cache_file(CACHE_FILE).get(section, {}).items()
                           if _valid(k, v)})
            _loaded_for = section
        if key not in _costs:
            _costs[key] = measure_costs()
            gemm.save_cache_section(CACHE_FILE, section, _costs)
        return _costs[key]


def _section() -> str:
    return f"{gemm.machine_id()} | team kernels {KERNELS_VERSION}"


class _Probe:
    """Random data of one shape, the cell module of it, and calls of either length on it."""

    def __init__(self, cell: int, use_relu: bool, training: bool, rows: int, inputs: int,
                 hidden: int, dtype, directions: int = 1):
        from ..cells import CELLS
        from ..contract import LayerWeights
        from . import gru, lstm, rnn

        self.module = {LSTM: lstm, GRU: gru}.get(cell, rnn)
        self.spec = CELLS[_cell_name(cell, use_relu)]
        self.training = training
        G = self.spec.gates * hidden
        rng = np.random.default_rng(0)

        def u(*shape):
            return rng.uniform(-0.5, 0.5, shape).astype(dtype)

        self.weights = [LayerWeights(w_ih=u(G, inputs), w_hh=u(G, hidden), b_ih=u(G), b_hh=u(G))
                        for _ in range(directions)]
        self.h0, self.dh = u(rows, hidden), u(rows, hidden)
        self.c0 = u(rows, hidden) if self.spec.has_cell_state else None
        self.dc = u(rows, hidden) if self.spec.has_cell_state else None
        self.data = {steps: (u(steps, rows, inputs), u(steps, rows, hidden))
                     for steps in (SHORT_STEPS, LONG_STEPS)}

    def forward_requests(self, steps: int) -> list:
        from ..contract import ForwardRequest

        return [ForwardRequest(cell=self.spec, x=self.data[steps][0], h0=self.h0, c0=self.c0,
                               weights=w, reverse=direction == 1, training=self.training)
                for direction, w in enumerate(self.weights)]

    def backward_requests(self, results, steps: int) -> list:
        from ..contract import BackwardRequest

        return [BackwardRequest(cell=self.spec, cache=r.cache, dout=self.data[steps][1],
                                dh_n=self.dh, dc_n=self.dc) for r in results]


def _cost_lines(call, paths: tuple[str, str]) -> dict:
    """Each path's cost line {path: [fixed_s, per_step_s]}, fitted through its fastest calls
    call(path, steps) at SHORT_STEPS and LONG_STEPS steps; the first path (one on the team) is
    timed first in each pass, after SETTLE_S of its untimed calls (see the module docstring)."""
    best = {(path, steps): float("inf") for path in paths for steps in (SHORT_STEPS, LONG_STEPS)}
    for _ in range(PASSES):
        for path in paths:
            settle_until = time.perf_counter() + (SETTLE_S if path == paths[0] else 0.0)
            call(path, SHORT_STEPS)
            while time.perf_counter() < settle_until:
                call(path, SHORT_STEPS)
            for steps in (SHORT_STEPS, LONG_STEPS):
                call(path, steps)
                for _ in range(ROUNDS):
                    t0 = time.perf_counter()
                    call(path, steps)
                    best[path, steps] = min(best[path, steps], time.perf_counter() - t0)
    costs = {}
    for path in paths:
        short, long = best[path, SHORT_STEPS], best[path, LONG_STEPS]
        per_step = max(0.0, (long - short) / (LONG_STEPS - SHORT_STEPS))
        costs[path] = [max(0.0, short - SHORT_STEPS * per_step), per_step]
    return costs


def measure(cell: int, use_relu: bool, training: bool, rows: int, inputs: int, hidden: int,
            dtype) -> dict:
    """Each path's cost line {"team": [fixed_s, per_step_s], "serial": [...]}, fitted through its
    fastest calls at SHORT_STEPS and LONG_STEPS steps on random data of this shape."""
    probe = _Probe(cell, use_relu, training, rows, inputs, hidden, dtype)

    def call(path, steps):
        _local.forced = path == "team"
        request, = probe.forward_requests(steps)
        r = probe.module.forward(request)
        if training:
            probe.module.backward(*probe.backward_requests([r], steps))

    try:
        return _cost_lines(call, PATHS)
    finally:
        _local.forced = None


def measure_directions(cell: int, use_relu: bool, training: bool, rows: int, inputs: int,
                       hidden: int, dtype) -> dict:
    """As measure, for a bidirectional layer's two directions: {"side by side": [fixed_s,
    per_step_s], "one after the other": [...]} (each direction on its own measured path)."""
    from . import directions

    probe = _Probe(cell, use_relu, training, rows, inputs, hidden, dtype, directions=2)

    def call(path, steps):
        requests = probe.forward_requests(steps)
        if path == BOTH_PATHS[0]:
            results = directions.run_side_by_side(probe.module.forward, requests)
            if results is None:         # another thread's call holds the team: time it in turn
                return call(BOTH_PATHS[1], steps)
            if training:
                directions.run_side_by_side(probe.module.backward,
                                            probe.backward_requests(results, steps))
        else:
            results = [probe.module.forward(request) for request in requests]
            if training:
                for request in probe.backward_requests(results, steps):
                    probe.module.backward(request)

    return _cost_lines(call, BOTH_PATHS)


def team_lengths(costs: dict, paths: tuple[str, str] = PATHS) -> str:
    """The sequence lengths that take the first path, in words: "team from T = a", "team up to
    T = b" (its per-step cost the higher one, its fixed cost the lower), "team" or "serial" (for
    the directions' keys: "side by side from T = a", ...). Both costs are lines in T, so the first
    path wins on one side of a single crossing."""
    (first_fixed, first_step), (other_fixed, other_step) = costs[paths[0]], costs[paths[1]]
    keep = 1 - MARGIN
    slope = first_step - keep * other_step            # the first wins where slope * T < offset
    offset = keep * other_fixed - first_fixed
    if slope == 0:
        return paths[0] if offset > 0 else paths[1]
    crossing = offset / slope
    if slope < 0:                                     # wins for T > crossing
        first = max(1, math.floor(crossing) + 1)
        return paths[0] if first == 1 else f"{paths[0]} from T = {first}"
    last = math.ceil(crossing) - 1                    # wins for T < crossing
    return paths[1] if last < 1 else f"{paths[0]} up to T = {last}"


def report() -> list[str]:
    """The measured shapes for this machine, for `fastrnn info`."""
    entries = {k: v for k, v in gemm.read_cache_file(CACHE_FILE).get(_section(), {}).items()
               if _valid(k, v)}
    if not entries:
        return ["  no loop shape measured yet"]
    lines = []
    for key, costs in sorted(entries.items()):
        paths = paths_of(key)
        verdict = team_lengths(costs, paths)
        (ff, fs), (of, os_) = costs[paths[0]], costs[paths[1]]
        names = ("team", "serial") if paths == PATHS else ("side by side", "in turn")
        lines.append(f"  {key:50s} {verdict:24s} (per step: {names[0]} {fs * 1e6:.0f} us, "
                     f"{names[1]} {os_ * 1e6:.0f} us; per call: {names[0]} {ff * 1e3:.2f} ms, "
                     f"{names[1]} {of * 1e3:.2f} ms)")
    return lines
