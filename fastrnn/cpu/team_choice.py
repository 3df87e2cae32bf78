"""Team or serial loops: which one a loop shape runs is measured on this machine on first use.

The thread team (team.py) wins where one core's single-threaded GEMM on its slice of W_hh beats
the serial loop's BLAS call on the whole of it: on 2 Zen 4 cores LSTM inference (32, 256) ran 1.4x
faster on the team. Where two single-threaded OpenBLAS GEMMs in one process slow each other down
(measured on 2 Zen 2 cores: 120 us alone, 170-215 us each side by side, while two processes ran
122 us each), it does not, and the serial loops are as fast or faster. So, as for the GEMM
providers (gemm.py), the first call of a shape times both on a short probe sequence of the same
batch, input and hidden size (PROBE_STEPS steps; a training shape times forward and backward),
and caches the choice on disk beside the GEMM choices, keyed by the same machine section.

FASTRNN_TEAM: unset or "auto" measures; "1" runs the team wherever it applies (no measuring; the
tests use it); "0" never runs it (team.unavailable_reason).
"""
from __future__ import annotations

import os
import threading
import time
from typing import Optional

import numpy as np

from . import gemm, team
from .team import GRU, LSTM, RNN

CACHE_FILE = "team-choices.json"
# Part of the cache section's name: raise it when the team's or the serial loops' kernels change
# enough that choices measured before no longer hold (2: the packed recurrent GEMM, packed.py).
KERNELS_VERSION = 2
CHOICES = ("team", "serial")
# The probe: PROBE_STEPS time steps, ROUNDS rounds; in each, each path runs one untimed call (so
# that the timed one follows a call of its own kind, as in a training or inference loop) and one
# timed call; the fastest rounds are compared, and the team must win by MARGIN.
PROBE_STEPS = 8
ROUNDS = 5
MARGIN = 0.03

_choices: dict[str, str] = {}
_loaded_for: Optional[str] = None
_lock = threading.RLock()
_local = threading.local()          # .forced: True/False while a probe runs one path


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


def use_team(cell: int, use_relu: bool, training: bool, rows: int, inputs: int, hidden: int,
             dtype) -> bool:
    """Whether a loop of this shape runs on the team (the caller has checked that it can)."""
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
            _choices.clear()
            _choices.update({k: v for k, v in gemm.read_cache_file(CACHE_FILE).get(section, {}).items()
                             if v in CHOICES})
            _loaded_for = section
        if key not in _choices:
            _choices[key] = measure(cell, use_relu, training, rows, inputs, hidden, dtype)
            gemm.save_cache_section(CACHE_FILE, section, _choices)
        return _choices[key] == "team"


def _section() -> str:
    return f"{gemm.machine_id()} | team kernels {KERNELS_VERSION}"


def measure(cell: int, use_relu: bool, training: bool, rows: int, inputs: int, hidden: int,
            dtype) -> str:
    """Time the team and the serial loops on a probe of this shape; "team" or "serial"."""
    from ..cells import CELLS
    from ..contract import BackwardRequest, ForwardRequest, LayerWeights
    from . import gru, lstm, rnn

    module = {LSTM: lstm, GRU: gru}.get(cell, rnn)
    spec = CELLS[_cell_name(cell, use_relu)]
    G = spec.gates * hidden
    rng = np.random.default_rng(0)

    def u(*shape):
        return rng.uniform(-0.5, 0.5, shape).astype(dtype)

    x, h0, dout, dh = u(PROBE_STEPS, rows, inputs), u(rows, hidden), u(PROBE_STEPS, rows, hidden), \
        u(rows, hidden)
    c0 = dc = None
    if spec.has_cell_state:
        c0, dc = u(rows, hidden), u(rows, hidden)
    weights = LayerWeights(w_ih=u(G, inputs), w_hh=u(G, hidden), b_ih=u(G), b_hh=u(G))

    def call():
        r = module.forward(ForwardRequest(cell=spec, x=x, h0=h0, c0=c0, weights=weights,
                                          training=training))
        if training:
            module.backward(BackwardRequest(cell=spec, cache=r.cache, dout=dout, dh_n=dh, dc_n=dc))

    best = {True: float("inf"), False: float("inf")}
    try:
        for round_ in range(ROUNDS):
            for on_team in ((True, False) if round_ % 2 == 0 else (False, True)):
                _local.forced = on_team
                call()
                t0 = time.perf_counter()
                call()
                best[on_team] = min(best[on_team], time.perf_counter() - t0)
    finally:
        _local.forced = None
    return "team" if best[True] < best[False] * (1 - MARGIN) else "serial"


def report() -> list[str]:
    """The cached choices for this machine, for `fastrnn info`."""
    entries = gemm.read_cache_file(CACHE_FILE).get(_section(), {})
    if not entries:
        return ["  no loop shape measured yet"]
    return [f"  {key:40s} {choice}" for key, choice in sorted(entries.items())]
