"""Run a grid in rounds of worker processes and assemble the JSON record (see report.py).

Order of a run: one worker computes the float64 reference of every case; then, round after round, one
fresh worker per contestant (the GEMM floor of each device counting as one) runs every case and exits
before the next starts. Each contestant runs only the cases of the kinds it takes
(backends.Contestant.runs: the layer contestants and the GEMM floor the layer and step cases, the
char-LM pair the model cases). The first round checks each contestant against the reference before
timing it; a contestant that fails a case's check (or errors) is not run on that case again. The
order of the contestants rotates from round to round, so a slow spell of the machine does not always
fall on the same one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from . import backends as bk
from .check import CHECK_FLOP_BUDGET, MIN_CHECK_T, MODEL_TOLERANCE, TOLERANCE
from .cost import CostModel, Job
from .grid import Case
from .machine import cpu_busy_s, load_average, machine_record, own_cpu_s
from .progress import Progress
from .timing import MODEL_WARMUP, QUICK, Budget, Stats
from .worker import run_job

FORMAT = "fastrnn-bench"
FORMAT_VERSION = 2

# launch(job, on_line) -> (exit status, stderr text): runs one worker job, calling on_line(dict) for
# each line of its answer as it comes.
Launch = Callable[[dict, Callable[[dict], None]], tuple[int, str]]

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

# The float64 reference is computed with one BLAS thread: it is not timed, and with two threads on two
# busy cores OpenBLAS's spinning made it ten times slower (measured: 18 s against 1.9 s).
REFERENCE_THREADS = 1


def launch_process(job: dict, on_line: Callable[[dict], None]) -> tuple[int, str]:
    """Run `job` in a fresh `python -m fastrnn.benchmarking.worker`, importing this same fastrnn, with
    every thread knob set to job["threads"] in its environment."""
    from .threads import worker_env

    env = worker_env(job["threads"])
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    with tempfile.TemporaryDirectory(prefix="fastrnn-worker-") as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job))
        with open(Path(tmp) / "stderr.txt", "w+") as err:
            proc = subprocess.Popen([sys.executable, "-m", "fastrnn.benchmarking.worker", str(job_path)],
                                    stdout=subprocess.PIPE, stderr=err, env=env, text=True)
            for text in proc.stdout:
                if text.strip():
                    on_line(json.loads(text))
            code = proc.wait()
            err.seek(0)
            return code, err.read()


def launch_in_process(job: dict, on_line: Callable[[dict], None]) -> tuple[int, str]:
    """Run `job` in this process (tests; a backend registered only here is visible)."""
    run_job(job, on_line)
    return 0, ""


def plan_jobs(cases: Sequence[Case], units: Sequence[bk.Contestant], rounds: int,
              check: bool) -> list[Job]:
    """The reference job (when checking), then each round's jobs, the units' order rotating. A unit gets
    the cases of the kinds it runs; one that runs none of them gets no job, nor does the reference of a
    case no unit runs."""
    jobs = []
    referenced = [c for c in cases if any(u.runs(c) for u in units)]
    if check and referenced:
        jobs.append(Job("reference", "cpu", referenced, -1))
    for r in range(rounds):
        for j in range(len(units)):
            u = units[(j + r) % len(units)]
            own = [c for c in cases if u.runs(c)]
            if own:
                jobs.append(Job(u.name, u.device, own, r, check=check and r == 0))
    return jobs


def tf32_note() -> str:
    """TF32 as set for this run: PyTorch's is turned off here; CuPy's follows CUPY_TF32 (default off),
    which must be set before CuPy is imported, so it is reported as found rather than changed."""
    cupy_tf32 = os.environ.get("CUPY_TF32", "0").strip() not in ("", "0")
    return ("off in PyTorch (cudnn.allow_tf32 = cuda.matmul.allow_tf32 = False); "
            + ("**ON in CuPy (CUPY_TF32 is set): fastrnn's GEMMs use TF32**" if cupy_tf32
               else "off in CuPy (CUPY_TF32 unset or 0)"))


class _Collector:
    """Gathers the workers' lines into per-(unit, case) results across rounds."""

    def __init__(self, rounds: int):
        self.rounds = rounds
        self.results: dict[tuple[str, str], dict] = {}
        self.reference: dict[str, dict] = {}
        self.threads: dict[str, dict] = {}
        self.peaks: dict[tuple[str, str], dict] = {}

    def slot(self, unit: str, key: str) -> dict:
        return self.results.setdefault((unit, key), {
            "status": "ok", "error": None, "check": None, "first_call_s": None, "inner": None,
            "rounds": [[] for _ in range(self.rounds)]})

    def take(self, job: Job, line: dict) -> None:
        event = line.get("event")
        if event == "threads":
            self.threads.setdefault(job.unit, line["threads"])
        elif event == "peak_gemm":
            found = line["result"]
            key = (found["device"], found["dtype"])
            if found.get("gflops", 0) > self.peaks.get(key, {}).get("gflops", 0) or key not in self.peaks:
                self.peaks[key] = found
        elif job.unit == "reference":
            self.reference[line["key"]] = line
        else:
            s = self.slot(job.unit, line["key"])
            if line.get("check") is not None:
                s["check"] = line["check"]
            if job.round == 0 or s["first_call_s"] is None:
                s["first_call_s"] = line.get("first_call_s")
            if line["status"] != "ok":
                s["status"], s["error"] = line["status"], line["error"]
            else:
                s["rounds"][job.round] = line["samples"]
                s["inner"] = s["inner"] or line.get("inner")

    def failed(self, job: Job, case: Case, why: str) -> None:
        if job.unit == "reference":
            self.reference[case.key] = {"status": "error", "error": why}
        else:
            s = self.slot(job.unit, case.key)
            s["status"], s["error"] = "error", why

    def usable(self, unit: str, key: str) -> bool:
        s = self.results.get((unit, key))
        return s is None or s["status"] == "ok"


def _timing(slot: dict) -> Optional[dict]:
    pooled = [v for r in slot["rounds"] for v in r]
    if not pooled:
        return None
    stats = Stats.from_samples(pooled, slot["inner"] or 1, slot["first_call_s"]).to_dict()
    stats["rounds"] = slot["rounds"]
    return stats


def run_benchmarks(cases: Sequence[Case], contestants: Sequence[bk.Contestant], *,
                   budget: Budget = QUICK, rounds: int = 3, threads: int = 1, grid: str = "custom",
                   check: bool = True, show_progress: bool = True,
                   launch: Launch = launch_process) -> dict:
    """Measure `cases` on `contestants` in `rounds` rounds of worker processes; the JSON record."""
    available = [c for c in contestants if c.available]
    devices = sorted({c.device for c in available})
    floors = [f for f in (bk.floor_contestant(d) for d in devices) if any(f.runs(c) for c in cases)]
    # The GEMM floor goes first: cheap, and timed with the same threads as the contestants, it shows
    # the cost model early how fast this machine is.
    units = [f for f in floors if f.available] + available
    jobs = plan_jobs(cases, units, rounds, check)
    model = CostModel(jobs, budget)
    collector = _Collector(rounds)
    dtypes = sorted({c.dtype for c in cases})
    by_name = {u.name: u for u in units}
    case_started = [time.perf_counter()]
    progress = Progress(lambda: model.remaining_s(time.perf_counter() - case_started[0]),
                        enabled=show_progress)

    machine = machine_record(probe_gpu="cuda" in devices)
    busy0, own0, t0 = cpu_busy_s(), own_cpu_s(), time.perf_counter()
    eta = {"predicted_at_start_s": round(model.remaining_s(), 1)}

    def first_case_done() -> None:
        if "predicted_after_first_case_s" not in eta:
            elapsed = time.perf_counter() - t0
            eta["predicted_after_first_case_s"] = round(elapsed + model.remaining_s(), 1)
    ticker = _Ticker(progress)
    try:
        with tempfile.TemporaryDirectory(prefix="fastrnn-reference-") as ref_dir:
            for job in jobs:
                _run_job(job, _spec(job, by_name, budget, threads, dtypes, ref_dir if check else None,
                                    collector), launch, model, collector, progress, ticker,
                         case_started, rounds, first_case_done)
    finally:
        ticker.stop()
        progress.close()
    wall = time.perf_counter() - t0
    machine["load_after"] = load_average()
    machine["other_cpu_share"] = _other_share(busy0, own0, wall, machine["cpu"])
    machine["threads"] = {"requested": threads, "by_contestant": collector.threads}
    machine["wall_s"] = round(wall, 1)
    record = _record(cases, contestants, floors, collector, machine, budget, rounds, threads, grid,
                     check, devices)
    record["settings"]["eta"] = dict(eta, actual_s=round(wall, 1))
    return record


def _spec(job: Job, by_name: dict, budget: Budget, threads: int, dtypes, ref_dir, collector) -> dict:
    """The worker's job. Later rounds leave out the cases a contestant failed or errored on, and the
    cases whose reference failed."""
    if job.unit == "reference":
        return {"role": "reference", "cases": [c.to_dict() for c in job.cases],
                "reference_dir": ref_dir, "threads": REFERENCE_THREADS}
    job.cases = [c for c in job.cases if collector.usable(job.unit, c.key)
                 and collector.reference.get(c.key, {}).get("status", "ok") == "ok"]
    unit = by_name[job.unit]
    spec = {"role": "contestant", "contestant": unit.to_dict(),
            "cases": [c.to_dict() for c in job.cases], "budget": budget.__dict__.copy(),
            "check": job.check, "reference_dir": ref_dir, "threads": threads}
    if unit.family == "gemm-floor":
        spec["peak_gemm"] = dtypes
    return spec


def _run_job(job, spec, launch, model, collector, progress, ticker, case_started, rounds,
             first_case_done) -> None:
    what = "reference" if job.unit == "reference" else f"round {job.round + 1}/{rounds} {job.unit}"
    if not job.cases:
        job.started = job.finished = True
        return
    started = time.perf_counter()
    pending = {c.key: c for c in job.cases}
    ticker.label = f"{what}: starting"
    first = [True]

    def on_line(line: dict) -> None:
        if line.get("event") == "case":
            case = pending.pop(line["key"])
            if first[0]:
                model.observe_startup(job, time.perf_counter() - started - line.get("wall_s", 0.0))
                first[0] = False
                job.started = True
            model.observe_case(job, case, line.get("wall_s", 0.0), line.get("check_s") or 0.0)
            first_case_done()
            case_started[0] = time.perf_counter()
            nxt = next(iter(pending.values()), None)
            ticker.label = f"{what}: {nxt.label}" if nxt else f"{what}: finishing"
            progress.show(f"{what}: {case.label} done", step=True)
        collector.take(job, line)

    job.started = False
    case_started[0] = time.perf_counter()
    code, stderr = launch(spec, on_line)
    job.started = job.finished = True
    if pending:
        tail = " ".join(stderr.strip().splitlines()[-3:])[-400:]
        why = f"the worker process exited with status {code} before this case: {tail or 'no message'}"
        for case in pending.values():
            collector.failed(job, case, why)


class _Ticker:
    """Redraws the bar once a second on a terminal, so the time left moves during long cases."""

    def __init__(self, progress: Progress):
        self.progress, self.label = progress, "starting"
        self._stop = threading.Event()
        self._thread = None
        if progress.enabled and progress.tty:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.progress.show(self.label)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def _other_share(busy0, own0, wall: float, cpu: dict) -> Optional[float]:
    """Share of the machine's CPU time that other processes used during the run (0 = idle)."""
    busy1, own1 = cpu_busy_s(), own_cpu_s()
    cpus = cpu.get("logical_cpus") or 1
    if busy0 is None or busy1 is None or wall <= 0:
        return None
    return round(max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall * cpus), 3)


def _record(cases, contestants, floors, collector, machine, budget, rounds, threads, grid, check,
            devices) -> dict:
    entries = []
    for case in cases:
        ref = collector.reference.get(case.key, {})
        entry = {"case": case.to_dict(), "label": case.label, "key": case.key, "flops": case.flops,
                 "check_T": ref.get("check_T"), "floors": {}, "results": []}
        for c in (c for c in contestants if c.runs(case)):
            row = {"backend": c.name, "device": c.device, "family": c.family, "status": "ok",
                   "time": None, "check": None, "error": None}
            entry["results"].append(row)
            if not c.available:
                row["status"], row["error"] = "unavailable", c.reason
                continue
            if ref.get("status") == "error":
                row["status"], row["error"] = "error", ref["error"]
                continue
            slot = collector.results.get((c.name, case.key))
            if slot is None:
                row["status"], row["error"] = "error", "not run"
                continue
            row.update(status=slot["status"], error=slot["error"], check=slot["check"],
                       time=_timing(slot) if slot["status"] == "ok" else None)
        for f in floors:
            slot = collector.results.get((f.name, case.key))
            if not f.available:
                continue
            if slot and slot["status"] == "ok":
                entry["floors"][f.device] = _timing(slot)
            elif slot:
                entry["floors"][f.device] = {"error": slot["error"]}
        entries.append(entry)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "grid": grid, "machine": machine,
        "settings": {
            "isolation": "process",
            "rounds": rounds,
            "threads": threads,
            "budget": budget.__dict__.copy(),
            "model_warmup": max(budget.warmup, MODEL_WARMUP),
            "timing": {"cpu": "time.perf_counter around whole calls",
                       "cuda": "CUDA events around whole calls"},
            "tf32": tf32_note() if "cuda" in devices else "n/a (no GPU)",
            "check": {"flop_budget": CHECK_FLOP_BUDGET, "min_T": MIN_CHECK_T,
                      "tolerance": TOLERANCE, "model_tolerance_float64": MODEL_TOLERANCE,
                      "enabled": check},
        },
        "contestants": [dict(c.to_dict(), threads=collector.threads.get(c.name))
                        for c in contestants],
        "floors": [dict(f.to_dict(), threads=collector.threads.get(f.name)) for f in floors],
        "peak_gemm": list(collector.peaks.values()),
        "cases": entries,
    }
