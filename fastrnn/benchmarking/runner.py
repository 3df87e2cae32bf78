"""Run a grid: for each case, check every contestant against the reference, then time it, and time
the GEMM floor of each device taking part. The result is one JSON-ready record (see report.py).
"""
from __future__ import annotations

import gc
import os
import traceback
from typing import Optional, Sequence

from . import backends as bk
from .floor import gemm_floor_call, peak_gemm
from .grid import Case
from .machine import machine_record
from .progress import Progress
from .timing import QUICK, Budget, measure_together
from .workloads import TOLERANCE, compare_outputs, make_problem, make_workload, reference_outputs

FORMAT = "fastrnn-bench"
FORMAT_VERSION = 1

# The reference check runs the NumPy oracle in float64; cases whose GEMM work would exceed this many
# FLOPs are checked on their first T steps only (never fewer than MIN_CHECK_T), same N, I and H.
CHECK_FLOP_BUDGET = 5e9
MIN_CHECK_T = 4


def check_steps(case: Case) -> int:
    per_step = case.flops / case.T
    return int(min(case.T, max(MIN_CHECK_T, CHECK_FLOP_BUDGET // per_step)))


def _error_text(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename.rsplit(os.sep, 1)[-1]}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def reference_for(case: Case) -> tuple[int, dict]:
    """(check_T, the float64 reference's outputs on the first check_T steps of case)."""
    T = check_steps(case)
    return T, reference_outputs(make_problem(case.with_T(T)))


def check_against_reference(case: Case, work, reference: tuple[int, dict]) -> dict:
    """Run `work` on the reference's problem; the worst relative error and whether it passes."""
    T, ref = reference
    err, tensor = compare_outputs(work.outputs(make_problem(case.with_T(T))), ref)
    tol = TOLERANCE[case.dtype]
    return {"T": T, "max_rel_err": err, "tensor": tensor, "tolerance": tol,
            "passed": bool(err <= tol)}


def tf32_note() -> str:
    """TF32 as set for this run: PyTorch's is turned off here; CuPy's follows CUPY_TF32 (default off),
    which must be set before CuPy is imported, so it is reported as found rather than changed."""
    cupy_tf32 = os.environ.get("CUPY_TF32", "0").strip() not in ("", "0")
    return ("off in PyTorch (cudnn.allow_tf32 = cuda.matmul.allow_tf32 = False); "
            + ("**ON in CuPy (CUPY_TF32 is set): fastrnn's GEMMs use TF32**" if cupy_tf32
               else "off in CuPy (CUPY_TF32 unset or 0)"))


def case_cost(case: Case) -> float:
    """Rough relative cost of a case, for the progress bar: GEMM work plus per-step overhead."""
    return case.flops + 2e6 * case.T


def run_case(case: Case, contestants: Sequence[bk.Contestant], budget: Budget,
             progress: Optional[Progress] = None, check: bool = True, label: str = "") -> dict:
    """Check, then time, every available contestant on `case`, with each device's GEMM floor.

    For each contestant: build it, make its first full-size call (timed alone: it includes
    compilation), check it against the reference; then all that passed, and the floors, are timed
    together, taking turns (timing.measure_together)."""
    label = label or case.label
    say = progress.show if progress else (lambda text: None)
    entry: dict = {"case": case.to_dict(), "label": case.label, "key": case.key,
                   "flops": case.flops, "check_T": None, "floors": {}, "results": []}
    problem = make_problem(case)
    ref, ref_error = None, None
    if check:
        entry["check_T"] = check_steps(case)
        say(f"{label}: reference")
        try:
            ref = reference_for(case)
        except Exception as exc:
            ref_error = f"the reference failed: {_error_text(exc)}"
    timed = []     # (row, fn, timer, first_call_s, workload)
    for c in contestants:
        row = {"backend": c.name, "device": c.device, "status": "ok", "time": None, "check": None,
               "error": None}
        entry["results"].append(row)
        if not c.available:
            row["status"], row["error"] = "unavailable", c.reason
            continue
        say(f"{label}: {c.name} (first call, check)")
        try:
            work = make_workload(case, problem.params, c)
            fn, timer = work.prepare(problem), work.timer()
            first = timer(fn, 1)
            if check:
                if ref_error:
                    raise RuntimeError(ref_error)
                row["check"] = verdict = check_against_reference(case, work, ref)
                if not verdict["passed"]:
                    row["status"] = "check_failed"
                    row["error"] = (f"{verdict['tensor']} differs from the reference by "
                                    f"{verdict['max_rel_err']:.3g} (relative; tolerance "
                                    f"{verdict['tolerance']:g}); not timed")
                    continue
            timed.append((row, fn, timer, first, work))
        except Exception as exc:
            row["status"], row["error"] = "error", _error_text(exc)
    floors = []
    for device in dict.fromkeys(row["device"] for row, *_ in timed):
        try:
            fn, timer = gemm_floor_call(case, device)
            floors.append((device, fn, timer, timer(fn, 1)))
        except Exception as exc:
            entry["floors"][device] = {"error": _error_text(exc)}
    calls = [(fn, timer) for _, fn, timer, _, _ in timed] + [(fn, timer) for _, fn, timer, _ in floors]
    if calls:
        try:
            stats = measure_together(calls, budget, lambda b, n: say(f"{label}: timed block {b}/{n}"))
        except Exception as exc:  # a contestant that fails only when repeated
            for row, *_ in timed:
                row["status"], row["error"] = "error", f"while timing: {_error_text(exc)}"
            stats = []
        for (row, _, _, first, _), st in zip(timed, stats):
            st.first_call_s = first
            row["time"] = st.to_dict()
        for (device, _, _, first), st in zip(floors, stats[len(timed):]):
            st.first_call_s = first
            entry["floors"][device] = st.to_dict()
    timed.clear()
    gc.collect()
    return entry


def run_benchmarks(cases: Sequence[Case], contestants: Sequence[bk.Contestant], *,
                   budget: Budget = QUICK, grid: str = "custom", check: bool = True,
                   show_progress: bool = True) -> dict:
    """Measure `cases` on `contestants`; returns the JSON record."""
    available = [c for c in contestants if c.available]
    devices = sorted({c.device for c in available})
    if any(c.is_torch and c.device == "cuda" for c in available):
        from .workloads import configure_torch_cuda

        configure_torch_cuda()
    peaks_dtypes = sorted({c.dtype for c in cases})
    peak_cost = 1e9  # a square GEMM; about one small case
    progress = Progress(sum(case_cost(c) for c in cases)
                        + 2 * peak_cost * len(devices) * len(peaks_dtypes), enabled=show_progress)
    record = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "grid": grid,
        "machine": machine_record(probe_gpu="cuda" in devices),
        "settings": {
            "budget": budget.__dict__.copy(),
            "timing": {"cpu": "time.perf_counter around whole calls",
                       "cuda": "CUDA events around whole calls"},
            "tf32": tf32_note() if "cuda" in devices else "n/a (no GPU)",
            "check": {"flop_budget": CHECK_FLOP_BUDGET, "min_T": MIN_CHECK_T,
                      "tolerance": TOLERANCE, "enabled": check},
        },
        "contestants": [{"name": c.name, "device": c.device, "torch": c.is_torch,
                         "available": c.available, "reason": c.reason} for c in contestants],
        "peak_gemm": [],
        "cases": [],
    }
    def measure_peaks(when: str) -> None:
        """Peak GEMM rates, measured before and after the cases; the record keeps the better."""
        for device in devices:
            for dtype in peaks_dtypes:
                progress.show(f"peak GEMM rate ({device}, {dtype}, {when})")
                try:
                    found = peak_gemm(device, dtype, budget)
                except Exception as exc:
                    found = {"device": device, "dtype": dtype, "error": _error_text(exc)}
                known = next((p for p in record["peak_gemm"]
                              if p["device"] == device and p["dtype"] == dtype), None)
                if known is None:
                    record["peak_gemm"].append(found)
                elif found.get("gflops", 0) > known.get("gflops", 0):
                    record["peak_gemm"][record["peak_gemm"].index(known)] = found
                progress.advance(peak_cost, f"peak GEMM rate ({device}, {dtype}, {when})")

    try:
        measure_peaks("before")
        for i, case in enumerate(cases):
            label = f"case {i + 1}/{len(cases)} {case.label}"
            record["cases"].append(run_case(case, contestants, budget, progress, check, label))
            progress.advance(case_cost(case), f"{label}: done")
        measure_peaks("after")
    finally:
        progress.close()
    # Thread counts after the run: Numba's pool exists by now.
    from .machine import thread_info

    record["machine"]["threads"] = thread_info()
    return record
