"""Bench records with numbers we choose, for testing the report, the plots and the README tables."""
from __future__ import annotations

import copy

from fastrnn.benchmarking.grid import Case
from fastrnn.benchmarking.runner import FORMAT
from fastrnn.benchmarking.timing import Stats

MACHINE = {
    "date": "2026-01-02T03:04:05+00:00",
    "cpu": {"model": "Test CPU", "logical_cpus": 2, "physical_cores": 2, "usable_cpus": 2,
            "memory_gib": 8.0, "platform": "Linux", "python": "3.11"},
    "gpus": [], "threads": {"requested": 2, "by_contestant": {
        "numba": {"openblas": {"libopenblas.so": 2}, "numba": 2}, "torch-cpu": {"torch": 2}}},
    "versions": {"fastrnn": "0.1.0", "numpy": "2.0"}, "git": {"commit": "0123456789abcdef", "dirty": False},
}


def round_stats(median, rounds=3, spread=0.05):
    """Timing of `rounds` rounds of three samples each, around `median`."""
    samples = [[median * (1 - spread), median, median * (1 + spread)] for _ in range(rounds)]
    stats = Stats.from_samples([v for r in samples for v in r], first_call_s=median * 10).to_dict()
    return dict(stats, rounds=samples)


def timed_row(backend, device, median, status="ok", error=None, family=None):
    return {"backend": backend, "device": device, "status": status,
            **({"family": family} if family else {}),
            "time": round_stats(median) if median is not None else None,
            "check": {"T": 4, "max_rel_err": 2e-7, "tensor": "out", "tolerance": 1e-4,
                      "passed": status == "ok"},
            "error": error}


def case_entry(case, rows, floors):
    return {"case": case.to_dict(), "label": case.label, "key": case.key, "flops": case.flops,
            "check_T": 4, "floors": {d: round_stats(t) for d, t in floors.items()}, "results": rows}


def fake_record(entries, gpus=()):
    machine = copy.deepcopy(MACHINE)   # a test may edit its record's machine; never the shared one
    machine["gpus"] = [{"name": g, "driver": "550.0", "memory": "80 GiB", "compute_capability": "9.0"}
                       for g in gpus]
    return {"format": FORMAT, "format_version": 2, "grid": "custom", "machine": machine,
            "settings": {"isolation": "process", "rounds": 3, "threads": 2,
                         "budget": {"warmup": 1, "min_repeats": 5, "max_repeats": 50},
                         "timing": {"cpu": "perf_counter", "cuda": "CUDA events"}, "tf32": "off",
                         "check": {"enabled": True, "tolerance": {"float32": 1e-4},
                                   "flop_budget": 5e9}},
            "contestants": [{"name": "cupy", "device": "cuda", "torch": False, "available": False,
                             "reason": "no GPU here"}],
            "peak_gemm": [{"device": "cpu", "dtype": "float32", "n": 1024, "gflops": 300.0}],
            "cases": entries}


LSTM_TRAIN = Case("lstm", "training", 100, 32, 256, 256, target=2.0)
GRU_TRAIN = Case("gru", "training", 100, 32, 256, 256, target=1.8)


def cpu_record(numba_lstm=2e-3, numba_gru=4e-3):
    lstm = [timed_row("numba", "cpu", numba_lstm), timed_row("torch-cpu", "cpu", 4e-3),
            timed_row("numpy", "cpu", 8e-3)]
    gru = [timed_row("numba", "cpu", numba_gru), timed_row("torch-cpu", "cpu", 5e-3),
           timed_row("numpy", "cpu", None, "check_failed", "out differs")]
    return fake_record([case_entry(LSTM_TRAIN, lstm, {"cpu": 1e-3}),
                        case_entry(GRU_TRAIN, gru, {"cpu": 1e-3})])


CHAR_LM_TRAIN = Case("lstm", "training", 100, 32, 64, 256, kind="model", target=1.2)


def model_record(converted=2.5e-1):
    """cpu_record plus the char-LM training step, torch.nn at 0.3 s against the converted model."""
    record = cpu_record()
    rows = [timed_row("torch.nn-cpu", "cpu", 3e-1, family="torch-model"),
            timed_row("fastrnn.torch-cpu", "cpu", converted, family="fastrnn-torch-model")]
    record["cases"].append(case_entry(CHAR_LM_TRAIN, rows, {}))
    return record


def sweep_record():
    """An LSTM batch sweep on CPU and GPU contestants, for the throughput chart."""
    entries = []
    for n in (1, 4, 16, 64):
        case = Case("lstm", "inference", 100, n, 256, 256)
        rows = [timed_row("numba", "cpu", 1e-3 * n ** 0.5), timed_row("torch-cpu", "cpu", 2e-3 * n ** 0.5),
                timed_row("cupy", "cuda", 3e-4), timed_row("torch-cuda", "cuda", 5e-4)]
        entries.append(case_entry(case, rows, {"cpu": 5e-4 * n ** 0.5, "cuda": 1e-4}))
    return fake_record(entries, gpus=["NVIDIA H100"])
