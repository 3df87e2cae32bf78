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

FASTRNN_TEAM: unset or "auto" measures; "1" runs the team wherever it applies (no measuring; the
tests use it); "0" never runs it (team.unavailable_reason).
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
# 1-2 rows on the team; 6: probes in two passes, PASSES).
KERNELS_VERSION = 6
SHORT_STEPS, LONG_STEPS = 4, 24
ROUNDS = 5            # timed calls per path and length; the fastest counts (noise only adds time)
# Passes over both paths (team, serial, team, ...), the fastest call of all counting: a machine
# that runs slower for a second or more at a time (shared VMs do) would otherwise slow every call
# of one path's probe and none of the other's (seen on a Zen 2 VM: LSTM inference (100,64,256)
# probed 774 us a team step against 602 serial, then ran 58 ms on the team and 66 serially).
PASSES = 2
SETTLE_S = 0.2        # untimed team calls first, for at least this long (see the docstring)
MARGIN = 0.03
PATHS = ("team", "serial")

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


def _valid(costs) -> bool:
    return (isinstance(costs, dict) and all(
        isinstance(costs.get(p), list) and len(costs[p]) == 2 for p in PATHS))


def team_wins(costs: dict, steps: int) -> bool:
    """Whether the team's fitted cost at this sequence length beats the serial one by MARGIN."""
    (team_fixed, team_step), (serial_fixed, serial_step) = costs["team"], costs["serial"]
    return team_fixed + steps * team_step < (1 - MARGIN) * (serial_fixed + steps * serial_step)


def use_team(cell: int, use_relu: bool, training: bool, steps: int, rows: int, inputs: int,
             hidden: int, dtype) -> bool:
    """Whether a loop of this shape and length runs on the team (the caller has checked that it
    can)."""
    forced = getattr(_local, "forced", None)
    if forced is not None:
        return forced
    chosen = mode()
    if chosen != "auto":
        return chosen == "1"
    global _loaded_for
    key = shape_key(cell, use_relu, training, rows, inputs, hidden, dtype)
    with _lock:
        section = _section()
        if _loaded_for != section:
            _costs.clear()
            _costs.update({k: v for k, v in gemm.read_cache_file(CACHE_FILE).get(section, {}).items()
                           if _valid(v)})
            _loaded_for = section
        if key not in _costs:
            _costs[key] = measure(cell, use_relu, training, rows, inputs, hidden, dtype)
            gemm.save_cache_section(CACHE_FILE, section, _costs)
        return team_wins(_costs[key], steps)


def _section() -> str:
    return f"{gemm.machine_id()} | team kernels {KERNELS_VERSION}"


def measure(cell: int, use_relu: bool, training: bool, rows: int, inputs: int, hidden: int,
            dtype) -> dict:
    """Each path's cost line {"team": [fixed_s, per_step_s], "serial": [...]}, fitted through its
    fastest calls at SHORT_STEPS and LONG_STEPS steps on random data of this shape."""
    from ..cells import CELLS
    from ..contract import BackwardRequest, ForwardRequest, LayerWeights
    from . import gru, lstm, rnn

    module = {LSTM: lstm, GRU: gru}.get(cell, rnn)
    spec = CELLS[_cell_name(cell, use_relu)]
    G = spec.gates * hidden
    rng = np.random.default_rng(0)

    def u(*shape):
        return rng.uniform(-0.5, 0.5, shape).astype(dtype)

    weights = LayerWeights(w_ih=u(G, inputs), w_hh=u(G, hidden), b_ih=u(G), b_hh=u(G))
    h0, dh = u(rows, hidden), u(rows, hidden)
    c0 = u(rows, hidden) if spec.has_cell_state else None
    dc = u(rows, hidden) if spec.has_cell_state else None
    probes = {steps: (u(steps, rows, inputs), u(steps, rows, hidden))
              for steps in (SHORT_STEPS, LONG_STEPS)}

    def call(steps):
        x, dout = probes[steps]
        r = module.forward(ForwardRequest(cell=spec, x=x, h0=h0, c0=c0, weights=weights,
                                          training=training))
        if training:
            module.backward(BackwardRequest(cell=spec, cache=r.cache, dout=dout, dh_n=dh, dc_n=dc))

    best = {(path, steps): float("inf") for path in PATHS for steps in (SHORT_STEPS, LONG_STEPS)}
    try:
        for _ in range(PASSES):
            for path in PATHS:                  # the team first: see the module docstring
                _local.forced = path == "team"
                settle_until = time.perf_counter() + (SETTLE_S if path == "team" else 0.0)
                call(SHORT_STEPS)
                while time.perf_counter() < settle_until:
                    call(SHORT_STEPS)
                for steps in (SHORT_STEPS, LONG_STEPS):
                    call(steps)
                    for _ in range(ROUNDS):
                        t0 = time.perf_counter()
                        call(steps)
                        best[path, steps] = min(best[path, steps], time.perf_counter() - t0)
    finally:
        _local.forced = None
    costs = {}
    for path in PATHS:
        short, long = best[path, SHORT_STEPS], best[path, LONG_STEPS]
        per_step = max(0.0, (long - short) / (LONG_STEPS - SHORT_STEPS))
        costs[path] = [max(0.0, short - SHORT_STEPS * per_step), per_step]
    return costs


def team_lengths(costs: dict) -> str:
    """The sequence lengths that run on the team, in words: "team from T = a", "team up to T = b"
    (its per-step cost the higher one, its fixed cost the lower), "team" or "serial". Both costs
    are lines in T, so the team wins on one side of a single crossing."""
    (team_fixed, team_step), (serial_fixed, serial_step) = costs["team"], costs["serial"]
    keep = 1 - MARGIN
    slope = team_step - keep * serial_step            # team wins where slope * T < offset
    offset = keep * serial_fixed - team_fixed
    if slope == 0:
        return "team" if offset > 0 else "serial"
    crossing = offset / slope
    if slope < 0:                                     # wins for T > crossing
        first = max(1, math.floor(crossing) + 1)
        return "team" if first == 1 else f"team from T = {first}"
    last = math.ceil(crossing) - 1                    # wins for T < crossing
    return "serial" if last < 1 else f"team up to T = {last}"


def report() -> list[str]:
    """The measured shapes for this machine, for `fastrnn info`."""
    entries = {k: v for k, v in gemm.read_cache_file(CACHE_FILE).get(_section(), {}).items()
               if _valid(v)}
    if not entries:
        return ["  no loop shape measured yet"]
    lines = []
    for key, costs in sorted(entries.items()):
        verdict = team_lengths(costs)
        (tf, ts), (sf, ss) = costs["team"], costs["serial"]
        lines.append(f"  {key:40s} {verdict:18s} (per step: team {ts * 1e6:.0f} us, serial "
                     f"{ss * 1e6:.0f} us; per call: team {tf * 1e3:.2f} ms, serial {sf * 1e3:.2f} ms)")
    return lines
