"""The "numba" backend: fused CPU kernels compiled by Numba (see fastrnn.contract for the contract).

Per layer and direction: the input projection is one BLAS GEMM over all T*N rows; the recurrence
runs one GEMM h W_hh^T and one fused, jitted pointwise pass per step; backward runs one fused
pointwise pass and one GEMM per step and leaves the weight gradients to whole-sequence GEMMs. Small
batches (N <= SMALL_BATCH) run their whole time loop in jitted code instead. All BLAS calls go
through gemm.py's providers (see _blas.py for why never through Numba's np.dot). On two or more
threads, loops of a few rows and more run on the thread team (team.py, team_loops.py,
team_backward.py), and the cells' inference steps of at most STEP_BATCH rows split their units over
two cores within a burst of steps (pair.py); the two directions of a bidirectional layer may run
side by side, one a core (directions.py).

Importing this package compiles nothing: each kernel compiles on first use and is cached on disk.
"""
from __future__ import annotations

from functools import partial

from .. import threads
from ..contract import CellKernels
from . import directions, gru, lstm, pair, rnn

threads.apply_if_set()    # a fastrnn.set_num_threads from before Numba was imported reaches it now


def _kernels(module, cell: int, use_relu: bool = False) -> CellKernels:
    return CellKernels(forward=module.forward, backward=module.backward, step=module.step_inference,
                       stream=partial(pair.stream, cell, use_relu),
                       forward_pair=partial(directions.forward_pair, module.forward, cell, use_relu),
                       backward_pair=partial(directions.backward_pair, module.backward))


KERNELS = {
    "rnn_tanh": _kernels(rnn, pair.RNN),
    "rnn_relu": _kernels(rnn, pair.RNN, use_relu=True),
    "lstm": _kernels(lstm, pair.LSTM),
    "gru": _kernels(gru, pair.GRU),
}


def unavailable_reason():
    """None: the package imported, so Numba is there; NumPy's BLAS is all else it needs."""
    return None
