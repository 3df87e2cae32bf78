"""The benchmark's model cases: the char-LM, torch.nn against fastrnn.torch.convert. Which contestants run
them, the runner end to end at a tiny size, the float64 check catching a wrong model, the report's
rows, the cost model, and their absence without PyTorch. Fast: tiny shapes, one round, in-process
workers.
"""
from __future__ import annotations

import importlib.util

import pytest

from fastrnn.benchmarking import backends as bk
from fastrnn.benchmarking.cost import PRIORS, predict_case_s
from fastrnn.benchmarking.grid import Case, build_grid, full_grid, model_cases, quick_grid
from fastrnn.benchmarking.report import markdown_report, targets_table
from fastrnn.benchmarking.runner import launch_in_process, plan_jobs, run_benchmarks
from fastrnn.benchmarking.summary import short_summary
from fastrnn.benchmarking.timing import QUICK, SMOKE

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")

TRAIN = Case("lstm", "training", 3, 2, 5, 4, kind="model", target=1.2)
INFER = Case("lstm", "inference", 3, 2, 5, 4, kind="model")
LAYER = Case("lstm", "inference", 3, 2, 4, 5)
MODEL_NAMES = (bk.MODEL_BASELINES["cpu"], bk.MODEL_CONVERTED["cpu"])


def _contestants(*names):
    by_name = {c.name: c for c in bk.all_contestants()}
    return [by_name[n] for n in names]


def _converted_row_with(monkeypatch, convert_model, case):
    """The converted contestant's row for `case` when fastrnn.torch.convert is replaced by
    `convert_model` (one round, in process)."""
    from fastrnn.benchmarking import model_workloads

    monkeypatch.setattr(model_workloads, "convert_model", convert_model)
    record = run_benchmarks([case], _contestants(bk.MODEL_CONVERTED["cpu"]), budget=SMOKE,
                            rounds=1, threads=1, show_progress=False, launch=launch_in_process)
    return record["cases"][0]["results"][0]


def test_the_grids_hold_the_char_lm_at_the_issues_shape():
    train, infer = model_cases()
    assert (train.T, train.N, train.I, train.H, train.kind) == (100, 32, 64, 256, "model")
    assert train.mode == "training" and train.target == 1.2
    assert infer.mode == "inference" and infer.target is None
    assert {train, infer} <= set(quick_grid()) and {train, infer} <= set(full_grid())
    assert not [c for c in build_grid("quick", cells=["gru"]) if c.kind == "model"]
    assert train.label == "char-LM training (100,32,64,256)" and train.layers == 2
    with pytest.raises(ValueError, match="LSTM"):
        Case("gru", "training", 3, 2, 5, 4, kind="model")
    assert build_grid("quick", kinds=["model"]) == model_cases()
    assert all(c.kind != "model" for c in build_grid("full", kinds=["layer", "step"]))
    with pytest.raises(ValueError, match="unknown kind"):
        build_grid("quick", kinds=["transformer"])


def test_layer_contestants_never_get_model_cases_and_the_reverse():
    units = [bk.Contestant("numpy", "cpu", "fastrnn", None), bk.floor_contestant("cpu"),
             bk.Contestant("torch-cpu", "cpu", "torch", None),
             *(bk.Contestant(n, "cpu", f, None) for n, f in zip(MODEL_NAMES, ("torch-model",
                                                                               "fastrnn-torch-model")))]
    jobs = {job.unit: job for job in plan_jobs([TRAIN, LAYER], units, 1, True)}
    assert jobs["reference"].cases == [TRAIN, LAYER]
    for name in ("numpy", "gemm-floor-cpu", "torch-cpu"):
        assert jobs[name].cases == [LAYER]
    for name in MODEL_NAMES:
        assert jobs[name].cases == [TRAIN]
    # a unit with nothing to run gets no job, nor does a case nobody runs get a reference
    jobs = plan_jobs([TRAIN, LAYER], units[:1], 1, True)
    assert [(j.unit, j.cases) for j in jobs] == [("reference", [LAYER]), ("numpy", [LAYER])]


def test_without_torch_the_model_cases_are_left_out_with_one_line(monkeypatch):
    monkeypatch.setattr(bk, "torch_reason", lambda device: "torch is not installed")
    contestants = bk.all_contestants()
    models = [c for c in contestants if "model" in c.kinds]
    assert [c.name for c in models] == list(MODEL_NAMES)   # the CUDA pair is absent, not failing
    assert not any(c.available for c in models)
    numpy_ = [c for c in contestants if c.name == "numpy"]
    kept, note = bk.runnable_cases([TRAIN, INFER, LAYER], contestants)
    assert kept == [LAYER]
    assert "omitting the 2 model case(s)" in note and "torch is not installed" in note
    assert "\n" not in note
    assert bk.runnable_cases([LAYER], numpy_) == ([LAYER], None)


def test_cuda_pair_is_listed_only_where_torch_sees_a_gpu(monkeypatch):
    monkeypatch.setattr(bk, "torch_reason", lambda device: None)
    names = {c.name for c in bk.all_contestants()}
    assert {bk.MODEL_BASELINES["cuda"], bk.MODEL_CONVERTED["cuda"]} <= names
    monkeypatch.setattr(bk, "torch_reason", lambda device: None if device == "cpu" else "no CUDA")
    names = {c.name for c in bk.all_contestants()}
    assert not names & {bk.MODEL_BASELINES["cuda"], bk.MODEL_CONVERTED["cuda"]}


def test_the_cost_model_prices_a_model_case_above_its_first_layer():
    train, _ = model_cases()
    first_layer = Case("lstm", "training", train.T, train.N, train.I, train.H)
    for name in MODEL_NAMES:
        model_s = predict_case_s(PRIORS[name], train, QUICK, check=True)
        assert predict_case_s(PRIORS[name], first_layer, QUICK, check=True) < model_s < 10.0


@needs_torch
def test_model_cases_run_end_to_end_with_a_speedup():
    record = run_benchmarks([TRAIN, INFER], _contestants(*MODEL_NAMES), budget=SMOKE, rounds=1,
                            threads=1, show_progress=False, launch=launch_in_process)
    for entry in record["cases"]:
        assert entry["floors"] == {}
        rows = {r["backend"]: r for r in entry["results"]}
        assert set(rows) == set(MODEL_NAMES)
        for row in rows.values():
            assert row["status"] == "ok", row["error"]
            check = row["check"]
            # the verdict shown is the run furthest from its bound: float64 or float32
            from fastrnn.benchmarking.check import MODEL_TOLERANCE, TOLERANCE

            in_float32 = check["tensor"].endswith("(in float32)")
            bound = TOLERANCE["float32"] if in_float32 else MODEL_TOLERANCE
            assert check["passed"] and check["tolerance"] == bound
        ours = rows[bk.MODEL_CONVERTED["cpu"]]
        from fastrnn.benchmarking.report import derive

        d = derive(entry, ours, record)
        assert d["speedup_vs_torch"] > 0 and d["gflops"] is None and d["floor_share"] is None
    table = targets_table(record)
    assert "| char-LM training (3,2,5,4) | fastrnn.torch-cpu |" in table and ">= 1.2x" in table
    assert "char-LM inference" not in table
    assert "char-LM training (3,2,5,4)  fastrnn.torch-cpu" in short_summary(record, "report.md")
    report = markdown_report(record)
    assert "| char-LM inference (3,2,5,4) | fastrnn.torch-cpu |" in report
    assert "compared with the torch.nn model in float64" in report


@needs_torch
def test_the_float64_check_catches_a_wrong_converted_model(monkeypatch):
    from fastrnn.benchmarking import model_workloads

    def wrong_convert(model):
        converted = model_workloads.convert(model)
        with model_workloads.torch.no_grad():
            converted.head.bias.add_(1e-6)
        return converted

    row = _converted_row_with(monkeypatch, wrong_convert, INFER)
    assert row["status"] == "check_failed" and row["time"] is None
    assert "differs from the reference" in row["error"] and "not timed" in row["error"]


@needs_torch
def test_the_float64_check_catches_wrong_lstm_gradients_in_training(monkeypatch):
    """A converted model whose LSTM forward is right but whose weight gradients are not."""
    from fastrnn.benchmarking import model_workloads

    def wrong_backward_convert(model):
        converted = model_workloads.convert(model)
        converted.lstm.weight_hh_l0.register_hook(lambda grad: grad * (1 + 1e-6))
        return converted

    row = _converted_row_with(monkeypatch, wrong_backward_convert, TRAIN)
    assert row["status"] == "check_failed" and row["time"] is None
    assert "weight_hh_l0" in row["error"]


@needs_torch
def test_a_convert_that_converts_nothing_is_refused(monkeypatch):
    row = _converted_row_with(monkeypatch, lambda model: model, INFER)
    assert row["time"] is None and "left no fastrnn module" in row["error"]


def test_the_cuda_converted_model_needs_a_fastrnn_cuda_backend(monkeypatch):
    """A GPU machine with CUDA torch but no CuPy: torch.nn-cuda is timed, fastrnn.torch-cuda is
    unavailable with the reason (not an error row that fails the run)."""
    def no_cuda_backend(backend, device, cell=None):
        if device == "cuda":
            raise bk.dispatch.BackendUnavailableError("cupy: not installed")
        return "numba"

    monkeypatch.setattr(bk, "cuda_model_pair_wanted", lambda: True)
    monkeypatch.setattr(bk, "torch_reason", lambda device: None)
    monkeypatch.setattr(bk.dispatch, "resolve", no_cuda_backend)
    converted = bk.model_contestant("fastrnn-torch-model", "cuda")
    assert bk.model_contestant("torch-model", "cuda").available
    assert bk.model_contestant("fastrnn-torch-model", "cpu").available
    assert not converted.available
    assert "fastrnn has no cuda backend for the LSTM: cupy: not installed" in converted.reason


@needs_torch
def test_the_check_also_runs_the_timed_dtype(monkeypatch):
    """A converted model right in float64 but wrong in float32 (the dtype timed) is caught."""
    from fastrnn.benchmarking import model_workloads

    def wrong_in_float32(model):
        converted = model_workloads.convert(model)
        if converted.head.weight.dtype == model_workloads.torch.float32:
            with model_workloads.torch.no_grad():
                converted.head.bias.add_(1e-2)
        return converted

    row = _converted_row_with(monkeypatch, wrong_in_float32, INFER)
    assert row["status"] == "check_failed" and row["time"] is None
    assert "(in float32)" in row["error"]


def test_model_cases_are_timed_after_the_model_warm_up():
    """A whole training step warms up over its first calls (heap growth, optimizer state): model
    cases get at least MODEL_WARMUP untimed calls, other cases keep the budget's; the cost model and
    the record say the same."""
    from dataclasses import replace

    from fastrnn.benchmarking.timing import MODEL_WARMUP, budget_for

    layer = Case("lstm", "training", 3, 2, 5, 4)
    warm = replace(QUICK, warmup=MODEL_WARMUP)
    assert QUICK.warmup < MODEL_WARMUP
    assert budget_for(TRAIN, QUICK) == warm and budget_for(layer, QUICK) == QUICK
    prior = PRIORS[bk.MODEL_CONVERTED["cpu"]]
    assert predict_case_s(prior, TRAIN, QUICK, False) == predict_case_s(prior, TRAIN, warm, False)
    assert predict_case_s(PRIORS["numba"], layer, QUICK, False) < \
        predict_case_s(PRIORS["numba"], layer, warm, False)


@needs_torch
def test_the_record_and_report_state_the_model_warm_up():
    from fastrnn.benchmarking.timing import MODEL_WARMUP

    record = run_benchmarks([INFER], _contestants(*MODEL_NAMES), budget=SMOKE, rounds=1, threads=1,
                            show_progress=False, launch=launch_in_process)
    assert record["settings"]["model_warmup"] == MODEL_WARMUP
    assert f"({MODEL_WARMUP + 1} for a model case)" in markdown_report(record)
