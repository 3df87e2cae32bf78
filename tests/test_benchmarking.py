"""The benchmark machinery: grid, timing, GEMM floor, JSON record, Markdown report, comparison, plots,
and the `fastrnn` command (info, a tiny bench run, --compare). Fast: tiny shapes, tiny time budgets.
"""
from __future__ import annotations

import importlib.util
import io
import json
import sys
import types
from itertools import product

import numpy as np
import pytest

from fastrnn import dispatch
from fastrnn.benchmarking import backends as bk
from fastrnn.benchmarking.compare import compare_records
from fastrnn.benchmarking.floor import gemm_plan, plan_flops
from fastrnn.benchmarking.grid import (MODES, Case, build_grid, full_grid, issue3_cases, parse_shape,
                                       quick_grid)
from fastrnn.benchmarking.plots import write_plots
from fastrnn.benchmarking.progress import Progress
from fastrnn.benchmarking.report import (derive, load_record, markdown_report, save_record,
                                         targets_table)
from fastrnn.benchmarking.runner import FORMAT, run_case
from fastrnn.benchmarking.timing import (SMOKE, Budget, HostTimer, Stats, measure,
                                        measure_together)
from fastrnn.cli import main
from fastrnn.contract import CellKernels, ForwardRequest, ForwardResult

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MPL = importlib.util.find_spec("matplotlib") is not None
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- fake records: the report code is tested on numbers we choose ---------------------------------

MACHINE = {
    "date": "2026-01-02T03:04:05+00:00",
    "cpu": {"model": "Test CPU", "logical_cpus": 2, "physical_cores": 2, "usable_cpus": 2,
            "memory_gib": 8.0, "platform": "Linux", "python": "3.11"},
    "gpus": [], "threads": {"torch": 2, "numba": 2, "env": {}},
    "versions": {"fastrnn": "0.1.0", "numpy": "2.0"}, "git": {"commit": "0123456789abcdef", "dirty": False},
}


def _stats(median):
    return Stats.from_samples([median * 0.95, median, median * 1.05], first_call_s=median * 10).to_dict()


def _row(backend, device, median, status="ok", error=None):
    return {"backend": backend, "device": device, "status": status,
            "time": _stats(median) if median is not None else None,
            "check": {"T": 4, "max_rel_err": 2e-7, "tensor": "out", "tolerance": 1e-4,
                      "passed": status == "ok"},
            "error": error}


def _entry(case, rows, floors):
    return {"case": case.to_dict(), "label": case.label, "key": case.key, "flops": case.flops,
            "check_T": 4, "floors": {d: _stats(t) for d, t in floors.items()}, "results": rows}


def fake_record(entries, gpus=()):
    machine = dict(MACHINE, gpus=[{"name": g, "driver": "550.0", "memory": "80 GiB",
                                   "compute_capability": "9.0"} for g in gpus])
    return {"format": FORMAT, "format_version": 1, "grid": "custom", "machine": machine,
            "settings": {"budget": {"warmup": 1, "min_repeats": 5, "max_repeats": 50},
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
    return fake_record([
        _entry(LSTM_TRAIN, [_row("numba", "cpu", numba_lstm), _row("torch-cpu", "cpu", 4e-3),
                            _row("numpy", "cpu", 8e-3)], {"cpu": 1e-3}),
        _entry(GRU_TRAIN, [_row("numba", "cpu", numba_gru), _row("torch-cpu", "cpu", 5e-3),
                           _row("numpy", "cpu", None, "check_failed", "out differs")], {"cpu": 1e-3}),
    ])


def sweep_record():
    """An LSTM batch sweep on CPU and GPU contestants, for the throughput chart."""
    entries = []
    for n in (1, 4, 16, 64):
        case = Case("lstm", "inference", 100, n, 256, 256)
        entries.append(_entry(case, [_row("numba", "cpu", 1e-3 * n ** 0.5),
                                     _row("torch-cpu", "cpu", 2e-3 * n ** 0.5),
                                     _row("cupy", "cuda", 3e-4), _row("torch-cuda", "cuda", 5e-4)],
                              {"cpu": 5e-4 * n ** 0.5, "cuda": 1e-4}))
    return fake_record(entries, gpus=["NVIDIA H100"])


# -- grid -----------------------------------------------------------------------------------------

def test_quick_grid_holds_the_issue3_table_with_targets():
    quick = {c: c.target for c in quick_grid()}
    for case in issue3_cases():
        assert quick[case] == case.target
    step = [c for c in quick if c.kind == "step"]
    assert step == [Case("lstm", "inference", 1000, 1, 128, 128, kind="step")]
    assert len(quick) <= 20


def test_full_grid_is_deepbench_style():
    full = set(full_grid())
    for cell, H, N, T, mode in product(("lstm", "gru", "rnn_tanh"), (256, 512, 1024),
                                       (1, 4, 16, 32, 64), (25, 100), MODES):
        assert Case(cell, mode, T, N, H, H) in full
    assert set(issue3_cases()) <= full


def test_build_grid_filters_and_custom_shapes():
    cases = build_grid(shapes=[parse_shape("10,2,8"), parse_shape("3,1,4,6")], cells=["rnn"],
                       modes=["inference"], dtypes=["float64"])
    assert cases == [Case("rnn_tanh", "inference", 10, 2, 8, 8, "float64"),
                     Case("rnn_tanh", "inference", 3, 1, 4, 6, "float64")]
    assert {c.cell for c in build_grid("quick", cells=["gru"])} == {"gru"}
    assert {c.mode for c in build_grid("full", modes=["training"])} == {"training"}


@pytest.mark.parametrize("text", ["1,2", "a,b,c", "0,1,2", "1,2,3,4,5"])
def test_parse_shape_rejects_bad_shapes(text):
    with pytest.raises(ValueError, match="T,N,H"):
        parse_shape(text)


def test_case_round_trips_and_validates():
    assert Case.from_dict(LSTM_TRAIN.to_dict()) == LSTM_TRAIN
    assert Case.from_dict(LSTM_TRAIN.to_dict()).target == 2.0
    with pytest.raises(ValueError, match="step"):
        Case("lstm", "training", 1, 1, 1, 1, kind="step")
    with pytest.raises(ValueError, match="unknown cell"):
        Case("transformer", "training", 1, 1, 1, 1)
    tiny = Case("gru", "training", 100, 64, 512, 512).shrunk()
    assert (tiny.T, tiny.N, tiny.I, tiny.H) == (3, 2, 5, 4)


@pytest.mark.parametrize("case", [LSTM_TRAIN, Case("gru", "inference", 7, 3, 5, 9),
                                  Case("rnn_relu", "training", 2, 2, 3, 4),
                                  Case("lstm", "inference", 5, 1, 6, 8, kind="step")],
                         ids=lambda c: c.key)
def test_gemm_plan_does_the_cases_flops(case):
    assert plan_flops(gemm_plan(case)) == pytest.approx(case.flops)


# -- timing ---------------------------------------------------------------------------------------

def test_measure_excludes_the_first_call():
    import time

    calls = []

    def fn():
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.05)  # "compilation"

    stats = measure(fn, HostTimer(), Budget(warmup=1, target_s=0.0, min_repeats=6, max_repeats=6,
                                            min_sample_s=0.0))
    assert stats.first_call_s >= 0.05
    assert stats.median < 0.01 and stats.n == 6 and stats.inner == 1
    assert len(calls) == 1 + 1 + 1 + 6  # first, warm-up, switch-in/calibration, samples
    assert stats.min <= stats.q1 <= stats.median <= stats.q3 <= stats.max


def test_measure_together_takes_turns_in_blocks():
    order = []
    calls = [(lambda: order.append("a"), HostTimer()), (lambda: order.append("b"), HostTimer())]
    stats = measure_together(calls, Budget(target_s=0.0, min_repeats=3, max_repeats=3,
                                           min_sample_s=0.0, blocks=2))
    assert [s.n for s in stats] == [3, 3]
    # each block: one untimed switch-in call, then that block's samples; the order rotates
    assert "".join(order) == "aaa" + "bbb" + "bb" + "aa"


def test_measure_batches_short_calls():
    stats = measure(lambda: None, HostTimer(), Budget(warmup=0, target_s=0.0, min_repeats=3,
                                                      max_repeats=3, min_sample_s=1e-3))
    assert stats.inner > 1 and stats.n == 3


# -- derived numbers, report, JSON ----------------------------------------------------------------

def test_derived_numbers():
    record = cpu_record()
    entry = record["cases"][0]
    d = derive(entry, entry["results"][0])
    assert d["speedup_vs_torch"] == pytest.approx(2.0)
    assert d["floor_share"] == pytest.approx(0.95e-3 / 2e-3)  # the floor's fastest sample
    assert d["gflops"] == pytest.approx(LSTM_TRAIN.flops / 2e-3 / 1e9)
    assert d["us_per_step"] == pytest.approx(20.0)
    assert d["peak_share"] is None  # the peak GEMM rate is in the record
    assert derive(entry, entry["results"][0], record)["peak_share"] == pytest.approx(d["gflops"] / 300)
    failed = derive(record["cases"][1], record["cases"][1]["results"][2])
    assert failed["speedup_vs_torch"] is None


def test_markdown_report():
    text = markdown_report(cpu_record(), ["out/speedup.png"])
    assert "Test CPU" in text and "0123456789ab" in text and "PyTorch 2" in text
    assert "| lstm training (100,32,256) | numba | 2.00 |" in text
    assert "2.00x" in text and "48%" in text
    assert "cpu float32 1024³: 300 GFLOP/s" in text
    assert "Not run: **cupy** (cuda): no GPU here" in text
    assert "## Failures" in text and "numpy: check_failed: out differs" in text
    assert "numpy **CHECK_FAILED**" in text
    assert "![speedup](speedup.png)" in text
    assert "busy" not in text


def test_report_warns_when_the_machine_was_busy():
    record = cpu_record()
    record["machine"] = dict(MACHINE, load_before=[1.9, 1.5, 1.0])
    assert "the machine was busy with other work" in markdown_report(record)


def test_targets_table_says_which_targets_are_met():
    table = targets_table(cpu_record(numba_lstm=1e-3, numba_gru=4e-3))
    lstm, gru = [line for line in table.splitlines() if "training" in line]
    assert "4.00x" in lstm and ">= 2x" in lstm and "| yes |" in lstm
    assert "1.25x" in gru and ">= 1.8x" in gru and "**no**" in gru
    assert "numpy" not in table  # the reference is not held to the targets


def test_json_record_round_trips(tmp_path):
    record = cpu_record()
    path = save_record(record, tmp_path / "sub" / "bench.json")
    loaded = load_record(path)
    assert loaded["cases"][0]["results"][0]["derived"]["speedup_vs_torch"] == pytest.approx(2.0)
    assert loaded["machine"] == record["machine"]
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a fastrnn benchmark record"):
        load_record(tmp_path / "other.json")
    with pytest.raises(ValueError, match="not a readable JSON"):
        load_record(tmp_path / "missing.json")


def test_compare_records():
    a, b = cpu_record(numba_lstm=2e-3), cpu_record(numba_lstm=1e-3)
    b["cases"][0]["results"].append(_row("cupy", "cuda", 2.5e-4))
    text = compare_records(a, b, "a.json", "b.json")
    same = [line for line in text.splitlines() if line.startswith("| lstm training") and "numba" in line]
    assert same[0].split("|")[3:6] == [" 2.00 ", " 1.00 ", " 2.00x "]
    fastest = [line for line in text.splitlines() if "cupy (cuda)" in line]
    assert fastest and "8.00x" in fastest[0]  # numba 2 ms in A against cupy 0.25 ms in B
    assert "no case in common" in compare_records(a, fake_record([]))


# -- plots ----------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAS_MPL, reason="matplotlib is not installed (fastrnn[bench])")
@pytest.mark.parametrize("record", [cpu_record(), sweep_record(), fake_record([])],
                         ids=["cpu", "cpu+gpu sweep", "empty"])
def test_plots_are_pngs(tmp_path, record):
    paths = write_plots(record, tmp_path)
    assert [p.name for p in paths] == ["speedup.png", "throughput.png"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


# -- progress bar ---------------------------------------------------------------------------------

def test_progress_writes_one_line_per_step_off_a_terminal():
    stream = io.StringIO()
    bar = Progress(4.0, stream=stream)
    for amount, label in ((1.0, "a"), (1.0, "b"), (2.0, "c")):
        bar.show(label)  # redraws only on a terminal
        bar.advance(amount, label)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("[" + "#" * 6 + "-" * 18 + "]  25%") and lines[0].endswith("a")
    assert lines[-1].startswith("[" + "#" * 24 + "] 100%") and lines[-1].endswith("c")


# -- the runner on a backend that gives wrong numbers ---------------------------------------------

def test_a_wrong_backend_is_reported_and_not_timed(monkeypatch):
    from fastrnn.reference import KERNELS as REF

    def wrong_forward(req: ForwardRequest) -> ForwardResult:
        right = REF["lstm"].forward(req)
        return ForwardResult(out=right.out * 1.01, h_n=right.h_n, c_n=right.c_n, cache=right.cache)

    module = types.ModuleType("fastrnn_test_wrong_backend")
    module.KERNELS = {"lstm": CellKernels(forward=wrong_forward, backward=REF["lstm"].backward)}
    monkeypatch.setitem(sys.modules, module.__name__, module)
    dispatch.register_backend(dispatch.BackendInfo("wrong", "cpu", -5, module.__name__))
    try:
        contestants = [c for c in bk.all_contestants() if c.name in ("numpy", "wrong")]
        entry = run_case(Case("lstm", "inference", 3, 2, 4, 5), contestants, SMOKE)
    finally:
        dispatch.unregister_backend("wrong")
    rows = {r["backend"]: r for r in entry["results"]}
    assert rows["numpy"]["status"] == "ok" and rows["numpy"]["time"]["n"] == 2
    assert rows["wrong"]["status"] == "check_failed" and rows["wrong"]["time"] is None
    assert "out differs from the reference" in rows["wrong"]["error"]
    assert entry["floors"]["cpu"]["median"] > 0


# -- the command ----------------------------------------------------------------------------------

def test_cli_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "versions:" in out and "backends:" in out
    for name in dispatch.registered_backends():
        assert f"  {name}" in out
    assert "torch-cpu" in out


def _tiny_backends():
    names = ["numpy"] + [n for n in ("numba",) if dispatch.is_available(n)]
    return names + (["torch-cpu"] if HAS_TORCH else [])


def test_cli_bench_writes_json_report_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--shapes", "4,2,3,5", "4,1,3,5", "--cells", "lstm", "--backends",
                 *_tiny_backends(), "--out", str(out), "--time-budget", "0.01", "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = load_record(out / "bench.json")
    assert record["grid"] == "custom" and len(record["cases"]) == 4
    rows = [r for e in record["cases"] for r in e["results"]]
    assert {r["backend"] for r in rows} == set(_tiny_backends())
    assert all(r["status"] == "ok" and r["check"]["passed"] for r in rows)
    assert record["machine"]["cpu"]["logical_cpus"] >= 1
    report = (out / "report.md").read_text()
    assert "| lstm training (4,2,3,5) | numpy |" in report
    if HAS_MPL:
        for name in ("speedup.png", "throughput.png"):
            assert (out / name).read_bytes().startswith(PNG_MAGIC)


def test_cli_compare(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_record(cpu_record(numba_lstm=2e-3), a)
    save_record(cpu_record(numba_lstm=1e-3), b)
    assert main(["bench", "--compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "# fastrnn benchmark comparison" in out and "2.00x" in out
    assert (tmp_path / "cmp" / "compare.md").read_text().strip() == out.strip()
    assert main(["bench", "--compare", str(a), str(tmp_path / "nothing.json")]) == 2


@pytest.mark.parametrize("args", [["--backends", "nosuch"], ["--shapes", "1,2"],
                                  ["--cells", "transformer"], ["--dtype", "float16"]])
def test_cli_rejects_bad_options(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", *args])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_case_data_is_shared_across_T():
    from fastrnn.benchmarking.workloads import make_problem

    long, short = make_problem(LSTM_TRAIN.shrunk()), make_problem(LSTM_TRAIN.shrunk().with_T(2))
    for k in long.params:
        np.testing.assert_array_equal(long.params[k], short.params[k])
