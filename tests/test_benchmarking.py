"""The benchmark machinery: grid, timing, intervals, cost model, worker processes, GEMM floor, JSON
record, Markdown report, comparison, plots, and the `fastrnn` command (info, a tiny bench run,
--compare). Fast: tiny shapes, tiny time budgets.
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
from fastrnn.benchmarking.cost import CostModel
from fastrnn.benchmarking.floor import gemm_plan, plan_flops
from fastrnn.benchmarking.grid import (MODES, Case, build_grid, full_grid, parse_shape, quick_grid,
                                       target_cases)
from fastrnn.benchmarking.intervals import ratio_interval, verdict
from fastrnn.benchmarking.plots import write_plots
from fastrnn.benchmarking.progress import Progress
from fastrnn.benchmarking.report import (derive, load_record, markdown_report, save_record,
                                         targets_table)
from fastrnn.benchmarking.runner import launch_in_process, plan_jobs, run_benchmarks
from fastrnn.benchmarking.summary import short_summary
from fastrnn.benchmarking.timing import QUICK, SMOKE, Budget, HostTimer, measure
from fastrnn.cli import main
from fastrnn.contract import CellKernels, ForwardRequest, ForwardResult

from bench_records import (LSTM_TRAIN, MACHINE, case_entry, cpu_record, fake_record, sweep_record,
                           timed_row)

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MPL = importlib.util.find_spec("matplotlib") is not None
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- grid -----------------------------------------------------------------------------------------

def test_quick_grid_holds_the_cases_with_targets():
    quick = {c: c.target for c in quick_grid()}
    for case in target_cases():
        assert quick[case] == case.target
    step = [c for c in quick if c.kind == "step"]
    assert step == [Case("lstm", "inference", 1000, 1, 128, 128, kind="step")]
    assert len(quick) <= 20


def test_full_grid_is_deepbench_style():
    full = set(full_grid())
    for cell, H, N, T, mode in product(("lstm", "gru", "rnn_tanh"), (256, 512, 1024),
                                       (1, 4, 16, 32, 64), (25, 100), MODES):
        assert Case(cell, mode, T, N, H, H) in full
    assert set(target_cases()) <= full


def test_build_grid_filters_and_custom_shapes():
    cases = build_grid(shapes=[parse_shape("10,2,8"), parse_shape("3,1,4,6")], cells=["rnn"],
                       modes=["inference"], dtypes=["float64"])
    assert cases == [Case("rnn_tanh", "inference", 10, 2, 8, 8, "float64"),
                     Case("rnn_tanh", "inference", 3, 1, 4, 6, "float64")]
    assert {c.cell for c in build_grid("quick", cells=["gru"])} == {"gru"}
    assert {c.mode for c in build_grid("full", modes=["training"])} == {"training"}


def test_bidirectional_cases():
    """--bidirectional turns the run's layer cases into bidirectional ones (step and model cases
    have no such form): their own key and label, both directions' FLOPs and GEMMs."""
    cases = build_grid("quick", cells=["lstm"], bidirectional=True)
    assert cases and all(c.bidirectional and c.kind == "layer" for c in cases)
    one = Case("gru", "training", 7, 3, 5, 9)
    two = Case("gru", "training", 7, 3, 5, 9, bidirectional=True)
    assert two != one and two.key == one.key + "-bidirectional"
    assert two.label == "gru bidirectional training (7,3,5,9)"
    assert two.flops == 2 * one.flops == plan_flops(gemm_plan(two))
    assert Case.from_dict(two.to_dict()) == two and Case.from_dict(one.to_dict()) == one
    with pytest.raises(ValueError, match="only layer cases can be bidirectional"):
        Case("lstm", "inference", 5, 1, 6, 8, kind="step", bidirectional=True)


def test_bidirectional_case_is_checked_and_timed():
    """Both directions' outputs and gradients of every CPU contestant (PyTorch too, where installed)
    pass the reference check, then are timed."""
    case = Case("lstm", "training", 4, 2, 3, 5, "float64", bidirectional=True)
    names = {"numpy", "numba", "torch-cpu"}
    contestants = [c for c in bk.all_contestants() if c.name in names and c.runs(case)]
    assert {c.name for c in contestants} >= {"numpy"}
    record = run_benchmarks([case], contestants, budget=SMOKE, rounds=1, threads=2,
                            show_progress=False, launch=launch_in_process)
    rows = record["cases"][0]["results"]
    assert rows and all(r["status"] == "ok" and r["check"]["passed"] for r in rows), rows


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

def test_measure_warms_up_then_takes_samples():
    calls = []
    samples, inner = measure(lambda: calls.append(1), HostTimer(),
                             Budget(warmup=2, target_s=0.0, min_repeats=6, max_repeats=6,
                                    min_sample_s=0.0))
    assert len(samples) == 6 and inner == 1
    assert len(calls) == 2 + 1 + 6  # warm-up, calibration, samples
    assert all(s < 0.01 for s in samples)


def test_measure_batches_short_calls():
    samples, inner = measure(lambda: None, HostTimer(), Budget(warmup=0, target_s=0.0, min_repeats=3,
                                                               max_repeats=3, min_sample_s=1e-3))
    assert inner > 1 and len(samples) == 3


# -- intervals and verdicts -----------------------------------------------------------------------

def test_speedup_interval_holds_the_speedup_and_widens_when_rounds_disagree():
    steady = [[1.0, 1.01, 0.99]] * 3
    low, high = ratio_interval(steady, [[0.5, 0.505, 0.495]] * 3)
    assert low <= 2.0 <= high and high - low < 0.1
    # one round of the baseline twice as slow: the interval must cover both situations
    low, high = ratio_interval([[1.0, 1.01, 0.99], [2.0, 2.02, 1.98], [1.0, 1.0, 1.01]],
                               [[0.5, 0.505, 0.495]] * 3)
    assert low < 2.1 and high > 3.5
    assert ratio_interval([[1.0]], [[]]) is None


@pytest.mark.parametrize("speedup, ci, target, expected", [
    (2.5, (2.2, 2.8), 2.0, "yes"), (1.5, (1.2, 1.8), 2.0, "no"), (1.9, (1.6, 2.3), 2.0, "unstable"),
    (2.1, None, 2.0, "yes"), (1.9, None, 2.0, "no"), (2.0, (1.8, 2.2), None, None)])
def test_verdict_is_unstable_when_the_interval_straddles_the_target(speedup, ci, target, expected):
    assert verdict(speedup, ci, target) == expected


# -- derived numbers, report, JSON ----------------------------------------------------------------

def test_derived_numbers():
    record = cpu_record()
    entry = record["cases"][0]
    d = derive(entry, entry["results"][0])
    assert d["speedup_vs_torch"] == pytest.approx(2.0)
    low, high = d["speedup_ci95"]
    assert low < 2.0 < high and high / low < 1.3
    assert d["target_met"] == "unstable"   # 2.0x against a 2x target: the interval straddles it
    assert d["floor_share"] == pytest.approx(0.95e-3 / 2e-3)  # the floor's fastest sample
    assert d["gflops"] == pytest.approx(LSTM_TRAIN.flops / 2e-3 / 1e9)
    assert d["us_per_step"] == pytest.approx(20.0)
    assert d["peak_share"] is None  # the peak GEMM rate is in the record
    assert derive(entry, entry["results"][0], record)["peak_share"] == pytest.approx(d["gflops"] / 300)
    baseline = derive(entry, entry["results"][1])
    assert baseline["speedup_vs_torch"] == 1.0 and baseline["speedup_ci95"] is None
    assert baseline["target_met"] is None  # PyTorch is not held to fastrnn's targets
    failed = derive(record["cases"][1], record["cases"][1]["results"][2])
    assert failed["speedup_vs_torch"] is None and failed["speedup_ci95"] is None


def test_markdown_report():
    text = markdown_report(cpu_record(), ["out/speedup.png"])
    assert "Test CPU" in text and "0123456789ab" in text
    assert "2 requested for every contestant" in text and "numba: OpenBLAS 2, Numba 2" in text
    assert "| lstm training (100,32,256) | numba | 2.00 |" in text
    assert "2.00x" in text and "48%" in text
    assert "## How to read this" in text and "project's published goal" in text
    assert "its own process" in text and "3 rounds" in text
    assert "cpu float32 1024³: 300 GFLOP/s" in text
    assert "Not run: **cupy** (cuda): no GPU here" in text
    assert "## Failures" in text and "numpy: check_failed: out differs" in text
    assert "numpy **CHECK_FAILED**" in text
    assert "![speedup](speedup.png)" in text
    assert "busy" not in text and "issue" not in text.lower()


@pytest.mark.parametrize("machine, busy", [
    ({"load_before": [1.9, 1.5, 1.0]}, True), ({"other_cpu_share": 0.4}, True),
    ({"load_before": [0.2, 0.2, 0.2], "other_cpu_share": 0.02}, False),
    # a high load average left over from the previous run, with nothing else running during this one
    ({"load_before": [1.8, 1.5, 1.6], "other_cpu_share": 0.01}, False),
    ({"load_before": [1.8, 1.5, 1.6], "other_cpu_share": 0.3}, True)])
def test_report_warns_when_the_machine_was_busy(machine, busy):
    record = cpu_record()
    record["machine"] = dict(MACHINE, **machine)
    assert ("the machine was busy with other work" in markdown_report(record)) == busy


def test_targets_table_says_which_targets_are_met():
    record = cpu_record(numba_lstm=1e-3, numba_gru=4e-3)
    record["cases"].append(case_entry(Case("lstm", "inference", 100, 32, 256, 256, target=1.0),
                                  [timed_row("numba", "cpu", 3e-3), timed_row("torch-cpu", "cpu", 3e-3)],
                                  {"cpu": 1e-3}))
    table = targets_table(record)
    lstm, gru, lstm_inf = [line for line in table.splitlines() if "(100,32,256)" in line]
    assert "4.00x" in lstm and ">= 2x" in lstm and "| yes |" in lstm
    assert "1.25x" in gru and ">= 1.8x" in gru and "**no**" in gru
    assert "1.00x" in lstm_inf and "*unstable*" in lstm_inf
    assert "numpy" not in table  # the reference is not held to the targets


def test_short_summary_gives_verdicts_and_the_report_path():
    text = short_summary(cpu_record(numba_lstm=1e-3), "out/report.md")
    assert len(text.splitlines()) <= 8
    assert "3 rounds, each contestant in its own process, 2 threads" in text
    assert "lstm training (100,32,256)  numba    4.00x" in text and "yes" in text
    assert "Targets: 1 yes, 1 no, 0 unstable" in text
    assert text.splitlines()[-1] == "Full report: out/report.md"


def test_json_record_round_trips(tmp_path):
    record = cpu_record()
    path = save_record(record, tmp_path / "sub" / "bench.json")
    loaded = load_record(path)
    derived = loaded["cases"][0]["results"][0]["derived"]
    assert derived["speedup_vs_torch"] == pytest.approx(2.0)
    assert derived["speedup_ci95"][0] < 2.0 < derived["speedup_ci95"][1]
    assert loaded["machine"] == record["machine"]
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a fastrnn benchmark record"):
        load_record(tmp_path / "other.json")
    with pytest.raises(ValueError, match="not a readable JSON"):
        load_record(tmp_path / "missing.json")


def test_compare_records():
    a, b = cpu_record(numba_lstm=2e-3), cpu_record(numba_lstm=1e-3)
    b["cases"][0]["results"].append(timed_row("cupy", "cuda", 2.5e-4))
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


# -- cost model and progress bar ------------------------------------------------------------------

def test_cost_model_corrects_its_prediction_from_what_it_measures():
    cases = [Case("lstm", "training", 100, 32, 256, 256), Case("gru", "training", 100, 32, 256, 256)]
    numba = bk.Contestant("numba", "cpu", "fastrnn", None)
    torch_ = bk.Contestant("torch-cpu", "cpu", "torch", None)
    jobs = plan_jobs(cases, [numba, torch_], rounds=2, check=False)
    assert [(j.unit, j.round) for j in jobs] == [("numba", 0), ("torch-cpu", 0), ("torch-cpu", 1),
                                                 ("numba", 1)]
    model = CostModel(jobs, QUICK)
    start = model.remaining_s()
    assert 1 < start < 120
    # the machine turns out to be three times slower than the model's rates
    first = jobs[0]
    first.started = True
    predicted = model.case_s(first, cases[0])
    model.observe_case(first, cases[0], 3 * predicted)
    assert model.case_s(jobs[1], cases[0]) == pytest.approx(3 * model._prior_case_s(jobs[1], cases[0]))
    numba_startup = model.prior(first).startup_s  # spent: the first worker has started
    assert model.remaining_s() == pytest.approx(3 * (start - predicted - numba_startup))
    # from the second round on, a (contestant, case) is predicted by its own last time
    assert model.case_s(jobs[3], cases[0]) == pytest.approx(3 * predicted)


def test_cost_model_does_not_scale_the_contestants_by_the_reference():
    cases = [Case("lstm", "training", 100, 32, 256, 256)]
    numba = bk.Contestant("numba", "cpu", "fastrnn", None)
    jobs = plan_jobs(cases, [numba], rounds=1, check=True)
    assert [j.unit for j in jobs] == ["reference", "numba"]
    model = CostModel(jobs, QUICK)
    reference = jobs[0]
    model.observe_case(reference, cases[0], 3 * model.case_s(reference, cases[0]))
    assert model.case_s(reference, cases[0]) == pytest.approx(3 * model._prior_case_s(reference, cases[0]))
    assert model.case_s(jobs[1], cases[0]) == pytest.approx(model._prior_case_s(jobs[1], cases[0]))


def test_progress_shows_the_time_left_it_is_given():
    stream, now, left = io.StringIO(), [0.0], [30.0]
    bar = Progress(lambda: left[0], stream=stream, now=lambda: now[0])
    bar.show("not a step")           # redrawn only on a terminal
    now[0], left[0] = 10.0, 30.0
    bar.show("a", step=True)
    now[0], left[0] = 40.0, 0.0
    bar.show("b", step=True)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[" + "#" * 6 + "-" * 18 + "]  25% 0:10 eta 0:30") and lines[0].endswith("a")
    assert lines[1].startswith("[" + "#" * 24 + "] 100% 0:40 eta 0:00")


# -- the runner: rounds of workers ----------------------------------------------------------------

def _register_wrong_backend(monkeypatch):
    from fastrnn.reference import KERNELS as REF

    def wrong_forward(req: ForwardRequest) -> ForwardResult:
        right = REF["lstm"].forward(req)
        return ForwardResult(out=right.out * 1.01, h_n=right.h_n, c_n=right.c_n, cache=right.cache)

    module = types.ModuleType("fastrnn_test_wrong_backend")
    module.KERNELS = {"lstm": CellKernels(forward=wrong_forward, backward=REF["lstm"].backward)}
    monkeypatch.setitem(sys.modules, module.__name__, module)
    dispatch.register_backend(dispatch.BackendInfo("wrong", "cpu", -5, module.__name__))


def test_a_wrong_backend_is_reported_and_not_timed(monkeypatch):
    _register_wrong_backend(monkeypatch)
    try:
        contestants = [c for c in bk.all_contestants() if c.name in ("numpy", "wrong")]
        record = run_benchmarks([Case("lstm", "inference", 3, 2, 4, 5)], contestants, budget=SMOKE,
                                rounds=2, threads=1, show_progress=False, launch=launch_in_process)
    finally:
        dispatch.unregister_backend("wrong")
    entry = record["cases"][0]
    rows = {r["backend"]: r for r in entry["results"]}
    assert rows["numpy"]["status"] == "ok" and [len(r) for r in rows["numpy"]["time"]["rounds"]] == [2, 2]
    assert rows["wrong"]["status"] == "check_failed" and rows["wrong"]["time"] is None
    assert "out differs from the reference" in rows["wrong"]["error"]
    assert entry["floors"]["cpu"]["median"] > 0 and entry["check_T"] == 3
    assert record["settings"]["isolation"] == "process" and record["settings"]["rounds"] == 2
    assert record["settings"]["eta"]["actual_s"] > 0


def test_workers_are_processes_with_the_threads_asked_for():
    """A real worker process: its BLAS reads back the thread count the runner set."""
    numpy_ = next(c for c in bk.all_contestants() if c.name == "numpy")
    record = run_benchmarks([Case("gru", "inference", 3, 2, 4, 5)], [numpy_], budget=SMOKE, rounds=1,
                            threads=1, check=False, show_progress=False)
    assert record["cases"][0]["results"][0]["status"] == "ok"
    found = record["machine"]["threads"]["by_contestant"]["numpy"]
    assert found["env"]["OPENBLAS_NUM_THREADS"] == "1" and found["env"]["NUMBA_NUM_THREADS"] == "1"
    if found.get("openblas"):
        assert set(found["openblas"].values()) == {1}


def test_a_worker_that_dies_fails_its_cases_not_the_run():
    numpy_ = next(c for c in bk.all_contestants() if c.name == "numpy")

    def dying(job, on_line):
        if job["role"] == "reference":
            return launch_in_process(job, on_line)
        return 3, "Fatal Python error: Segmentation fault"

    record = run_benchmarks([Case("gru", "inference", 3, 2, 4, 5)], [numpy_], budget=SMOKE, rounds=1,
                            threads=1, show_progress=False, launch=dying)
    row = record["cases"][0]["results"][0]
    assert row["status"] == "error" and "status 3" in row["error"] and "Segmentation" in row["error"]


# -- the command ----------------------------------------------------------------------------------

def test_cli_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "versions:" in out and "backends:" in out
    for name in dispatch.registered_backends():
        assert f"  {name}" in out
    assert "torch-cpu" in out


def _tiny_backends():
    return ["numpy"] + (["torch-cpu"] if HAS_TORCH else [])


def test_cli_bench_writes_json_report_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--shapes", "4,1,3,5", "--cells", "lstm", "--modes", "inference",
                 "--backends", *_tiny_backends(), "--out", str(out), "--time-budget", "0.01",
                 "--rounds", "2", "--threads", "1", "--no-plots" if not HAS_MPL else "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = load_record(out / "bench.json")
    assert record["grid"] == "custom" and len(record["cases"]) == 1
    assert record["settings"]["isolation"] == "process" and record["settings"]["threads"] == 1
    rows = [r for e in record["cases"] for r in e["results"]]
    assert {r["backend"] for r in rows} == set(_tiny_backends())
    assert all(r["status"] == "ok" and r["check"]["passed"] for r in rows)
    if HAS_TORCH:
        numpy_row = next(r for r in rows if r["backend"] == "numpy")
        low, high = numpy_row["derived"]["speedup_ci95"]
        assert low <= numpy_row["derived"]["speedup_vs_torch"] <= high
    report = (out / "report.md").read_text()
    assert "| lstm inference (4,1,3,5) | numpy |" in report
    if HAS_MPL:
        for name in ("speedup.png", "throughput.png"):
            assert (out / name).read_bytes().startswith(PNG_MAGIC)


def test_cli_compare_skips_files_that_are_not_records(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_record(cpu_record(numba_lstm=2e-3), a)
    save_record(cpu_record(numba_lstm=1e-3), b)
    other = tmp_path / "compile_and_memory.json"
    other.write_text(json.dumps({"backend": "numba"}))
    assert main(["bench", "--compare", str(a), str(other), str(b), "--out", str(tmp_path / "cmp")]) == 0
    captured = capsys.readouterr()
    assert "# fastrnn benchmark comparison" in captured.out and "2.00x" in captured.out
    skipped = [line for line in captured.err.splitlines() if "skipping" in line]
    assert len(skipped) == 1 and "compile_and_memory.json" in skipped[0]
    assert (tmp_path / "cmp" / "compare.md").read_text().strip() == captured.out.strip()
    assert main(["bench", "--compare", str(a), str(tmp_path / "nothing.json")]) == 2


@pytest.mark.parametrize("args", [["--backends", "nosuch"], ["--shapes", "1,2"],
                                  ["--cells", "transformer"], ["--dtype", "float16"],
                                  ["--rounds", "0"], ["--threads", "0"]])
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


def test_peak_gemm_measures_a_rate():
    """The machine's peak GEMM rate, published beside every record (it once failed on a missing
    import and every record carried the error instead)."""
    from fastrnn.benchmarking.floor import peak_gemm

    peak = peak_gemm("cpu", "float32", SMOKE)
    assert "error" not in peak
    assert peak["device"] == "cpu" and peak["n"] > 0 and peak["gflops"] > 0
    assert peak["time"]["min"] > 0
