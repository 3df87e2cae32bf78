"""One worker process: one contestant, every case of the grid, one round; then it exits.

    python -m fastrnn.benchmarking.worker JOB.json

The runner starts a fresh worker for each contestant in each round, with the thread knobs already in its
environment (threads.py), so no other library's thread pool is alive, idle or spinning, while this one
is timed, and each round's numbers come from a process of their own. For each case the worker builds
the contestant's call, makes the first call (compilation, CUDA context: reported, not timed), checks the
outputs against the saved reference when asked (the first round), then times the call (timing.measure).

A job is JSON: {"role": "contestant" or "reference", "contestant": backends.Contestant.to_dict(),
"cases": [grid.Case.to_dict()], "budget": timing.Budget fields, "check": bool, "reference_dir": str,
"threads": int, "peak_gemm": [dtypes]}. The worker answers on stdout, one JSON object a line:
{"event": "case", "key": ..., ...} as each case finishes, {"event": "peak_gemm", ...} for the GEMM
floor, and {"event": "threads", "threads": {...}} last; anything the libraries print goes to stderr.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

Emit = Callable[[dict], None]


def error_text(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename.rsplit(os.sep, 1)[-1]}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def reference_path(directory, key: str) -> Path:
    return Path(directory) / f"{key}.npz"


def run_reference(job: dict, emit: Emit) -> None:
    """Compute and save the float64 reference of every case (the check's oracle)."""
    from .check import reference_for, save_reference
    from .grid import Case

    for d in job["cases"]:
        case, t0 = Case.from_dict(d), time.perf_counter()
        line = {"event": "case", "key": case.key, "status": "ok", "error": None}
        try:
            reference = reference_for(case)
            save_reference(reference, reference_path(job["reference_dir"], case.key))
            line["check_T"] = reference[0]
        except Exception as exc:
            line.update(status="error", error=f"the reference failed: {error_text(exc)}")
        emit(dict(line, wall_s=time.perf_counter() - t0))


def time_case(case, contestant, budget, check: bool, reference_dir) -> dict:
    """Build, first call, check (when asked), samples: one case's line of the protocol."""
    from .check import check_against_reference, failure_text, load_reference
    from .timing import budget_for, measure
    from .workloads import make_problem, make_workload

    line: dict = {"event": "case", "key": case.key, "status": "ok", "error": None, "check": None}
    t0 = time.perf_counter()
    try:
        problem = make_problem(case)
        work = make_workload(case, problem.params, contestant)
        fn, timer = work.prepare(problem), work.timer()
        line["first_call_s"] = timer(fn, 1)
        t_check = time.perf_counter()
        if check and work.checked:
            path = reference_path(reference_dir, case.key)
            if not path.exists():
                raise RuntimeError("no reference to check against (the reference failed)")
            line["check"] = verdict = check_against_reference(case, work, load_reference(path))
            if not verdict["passed"]:
                line.update(status="check_failed", error=failure_text(verdict))
        line["check_s"] = time.perf_counter() - t_check
        if line["status"] == "ok":
            line["samples"], line["inner"] = measure(fn, timer, budget_for(case, budget))
    except Exception as exc:
        line.update(status="error", error=error_text(exc))
    line["wall_s"] = time.perf_counter() - t0
    return line


def run_contestant(job: dict, emit: Emit) -> None:
    from .backends import Contestant
    from .floor import peak_gemm
    from .grid import Case
    from .timing import Budget

    contestant = Contestant.from_dict(job["contestant"])
    budget = Budget(**job["budget"])
    for d in job["cases"]:
        emit(time_case(Case.from_dict(d), contestant, budget, job.get("check", False),
                       job.get("reference_dir")))
    for dtype in job.get("peak_gemm", []):
        try:
            found = peak_gemm(contestant.device, dtype, budget)
        except Exception as exc:
            found = {"device": contestant.device, "dtype": dtype, "error": error_text(exc)}
        emit({"event": "peak_gemm", "result": found})


def _loads_torch(job: dict) -> bool:
    """Whether the job will use PyTorch: a PyTorch contestant, or a reference with model cases."""
    from .backends import TORCH_FAMILIES

    if job["role"] == "reference":
        return any(d.get("kind") == "model" for d in job["cases"])
    return job.get("contestant", {}).get("family") in TORCH_FAMILIES


def run_job(job: dict, emit: Emit) -> None:
    """Everything a worker does, callable in-process (the tests do)."""
    from .threads import apply_in_process, read_back

    if _loads_torch(job):
        import torch  # noqa: F401  (loaded before its threads are set)
    apply_in_process(job["threads"])
    if job["role"] == "reference":
        run_reference(job, emit)
    else:
        run_contestant(job, emit)
    emit({"event": "threads", "threads": read_back()})


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    # The protocol owns the real stdout; whatever the libraries print goes to stderr.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def emit(line: dict) -> None:
        protocol.write(json.dumps(line) + "\n")
        protocol.flush()

    run_job(job, emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
