"""The check before timing: a contestant's outputs against the float64 NumPy reference on the same case.

A wrong result timed is a meaningless number, so a contestant that fails the check is not timed. The
reference is computed once per case (in its own worker process during `fastrnn bench`) and saved, so
every contestant's worker compares with the same arrays. A model case's reference is the torch.nn
char-LM in float64; both of its contestants are checked in float64 and in the case's dtype
(model_workloads.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..numerics import BENCHMARK_CHECK, TORCH_PARITY, relative_error
from .grid import Case
from .workloads import make_problem, reference_outputs

# Relative error (numerics.relative_error, per tensor) allowed against the float64 reference: the
# table's BENCHMARK_CHECK row (why it is looser than the test suite's bounds is said there).
TOLERANCE = BENCHMARK_CHECK
# A model case is checked in float64 against torch.nn in float64: fastrnn against PyTorch, the table's
# TORCH_PARITY row.
MODEL_TOLERANCE = TORCH_PARITY["float64"]

# The reference runs in float64; cases whose GEMM work would exceed this many FLOPs are checked on
# their first T steps only (never fewer than MIN_CHECK_T), same N, I and H.
CHECK_FLOP_BUDGET = 5e9
MIN_CHECK_T = 4


def tolerance_for(case: Case) -> float:
    """The relative error a contestant may show on `case` against its reference."""
    return MODEL_TOLERANCE if case.kind == "model" else TOLERANCE[case.dtype]


def check_steps(case: Case) -> int:
    per_step = case.flops / case.T
    return int(min(case.T, max(MIN_CHECK_T, CHECK_FLOP_BUDGET // per_step)))


def reference_for(case: Case) -> tuple[int, dict]:
    """(check_T, the float64 reference's outputs on the first check_T steps of case)."""
    T = check_steps(case)
    return T, reference_outputs(make_problem(case.with_T(T)))


def save_reference(reference: tuple[int, dict], path) -> None:
    T, outputs = reference
    np.savez(path, __T__=np.array(T), **outputs)


def load_reference(path) -> tuple[int, dict]:
    with np.load(Path(path)) as data:
        outputs = {k: data[k] for k in data.files if k != "__T__"}
        return int(data["__T__"]), outputs


def compare_outputs(got: dict, ref: dict) -> tuple[float, str]:
    """Worst relative error over the reference's tensors, and which tensor it is. A tensor the
    contestant did not produce, or of the wrong shape, raises AssertionError."""
    worst, worst_name = 0.0, ""
    for name, r in ref.items():
        if name not in got:
            raise AssertionError(f"the contestant produced no {name!r}")
        if got[name].shape != r.shape:
            raise AssertionError(f"{name} has shape {got[name].shape}, the reference {r.shape}")
        err = relative_error(got[name], r)
        if err > worst or not worst_name:
            worst, worst_name = err, name
    return worst, worst_name


def check_against_reference(case: Case, work, reference: tuple[int, dict]) -> dict:
    """Run `work` on the reference's problem; the worst relative error and whether it passes.

    A model case is checked twice: in float64 within MODEL_TOLERANCE (the converted model computes
    what torch.nn computes), and in the case's own dtype, the one timed, within that dtype's
    TOLERANCE. The verdict is the one furthest from its bound (its tensor names the dtype)."""
    T, ref = reference
    problem = make_problem(case.with_T(T))
    runs = [(work.outputs(problem), tolerance_for(case), "")]
    if case.kind == "model" and case.dtype != "float64":
        runs.append((work.outputs(problem, dtype=case.dtype), TOLERANCE[case.dtype],
                     f" (in {case.dtype})"))
    verdicts = []
    for got, tol, label in runs:
        err, tensor = compare_outputs(got, ref)
        verdicts.append({"T": T, "max_rel_err": err, "tensor": tensor + label, "tolerance": tol,
                         "passed": bool(err <= tol)})
    return max(verdicts, key=lambda v: v["max_rel_err"] / v["tolerance"])


def failure_text(verdict: dict) -> str:
    return (f"{verdict['tensor']} differs from the reference by {verdict['max_rel_err']:.3g} "
            f"(relative; tolerance {verdict['tolerance']:g}); not timed")
