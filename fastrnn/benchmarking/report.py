"""The JSON record on disk, the numbers derived from it, and its Markdown report.

Only raw measurements are authoritative in the record; speedups, GFLOP/s and shares of the GEMM floor
are derived here (and also written into the JSON for convenience), so an old record can always be
re-reported and compared.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .backends import BASELINE_NAMES, CHALLENGER_FAMILIES, REFERENCE, baseline_name
from .grid import Case
from .intervals import ratio_interval, verdict
from .runner import FORMAT

JSON_NAME = "bench.json"
REPORT_NAME = "report.md"


# -- the record on disk ---------------------------------------------------------------------------

def save_record(record: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for entry in record["cases"]:
        for row in entry["results"]:
            row["derived"] = derive(entry, row, record)
    path.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    return path


def load_record(path) -> dict:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastrnn benchmark record (no \"format\": \"{FORMAT}\")")
    return record


# -- derived numbers ------------------------------------------------------------------------------

def median(row: Optional[dict]) -> Optional[float]:
    if not row or row.get("status") != "ok" or not row.get("time"):
        return None
    return row["time"]["median"]


def find_row(entry: dict, backend: str, device: Optional[str] = None) -> Optional[dict]:
    for row in entry["results"]:
        if row["backend"] == backend and (device is None or row["device"] == device):
            return row
    return None


def floor_time(entry: dict, device: str) -> Optional[float]:
    """The GEMM floor of `device`: its fastest sample, since noise can only add time to a floor."""
    floor = entry.get("floors", {}).get(device)
    return floor.get("min") if floor else None


def peak_gflops(record: Optional[dict], device: str, dtype: str) -> Optional[float]:
    for p in (record or {}).get("peak_gemm", []):
        if p.get("device") == device and p.get("dtype") == dtype and p.get("gflops"):
            return p["gflops"]
    return None


def rounds_of(row: Optional[dict]) -> Optional[list]:
    """The samples of each round, when the row was timed (records before rounds existed have none)."""
    if median(row) is None:
        return None
    return row["time"].get("rounds")


def baseline_row(entry: dict, device: str) -> Optional[dict]:
    """The row a speedup on `device` divides: PyTorch's layer, or the torch.nn model for a model case."""
    kind = entry["case"].get("kind", "layer")
    return find_row(entry, baseline_name(kind, device) or "", device)


def speedup_interval(entry: dict, row: dict) -> Optional[tuple[float, float]]:
    """95% bootstrap interval of the speedup over PyTorch on the row's device (intervals.py)."""
    baseline = baseline_row(entry, row["device"])
    base, ours = rounds_of(baseline), rounds_of(row)
    if not base or not ours or baseline is row:
        return None
    return ratio_interval(base, ours)


def derive(entry: dict, row: dict, record: Optional[dict] = None) -> dict:
    """speedup over PyTorch on the row's device with its 95% interval, the verdict against the case's
    target, GFLOP/s, microseconds per time step, share of the measured GEMM floor and of the device's
    peak GEMM rate (needs `record`); None where missing. A model case has no GFLOP/s, floor or peak
    share: a training step there also holds the embedding, the loss and the optimizer."""
    case = Case.from_dict(entry["case"])
    t = median(row)
    base = median(baseline_row(entry, row["device"]))
    floor = floor_time(entry, row["device"])
    peak = peak_gflops(record, row["device"], case.dtype)
    per_layer = case.kind != "model"
    if t is None or t <= 0:
        return {"speedup_vs_torch": None, "speedup_ci95": None, "target_met": None, "gflops": None,
                "us_per_step": None, "floor_share": None, "peak_share": None}
    gflops = case.flops / t / 1e9 if per_layer else None
    speedup = base / t if base else None
    ci = speedup_interval(entry, row) if speedup else None
    held = (case.target is not None and row["device"] == "cpu"
            and row.get("backend") not in BASELINE_NAMES | {REFERENCE})
    return {
        "speedup_vs_torch": speedup,
        "speedup_ci95": list(ci) if ci else None,
        "target_met": verdict(speedup, ci, case.target) if held else None,
        "gflops": gflops,
        "us_per_step": t / case.T * 1e6,
        "floor_share": floor / t if floor else None,
        "peak_share": gflops / peak if peak and gflops else None,
    }


# -- formatting -----------------------------------------------------------------------------------

def fmt_ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def fmt_num(value: Optional[float], digits: int = 3) -> str:
    if value is None:
        return "—"
    if abs(value) >= 10 ** digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def fmt_x(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.2f}x"


def fmt_pct(value: Optional[float]) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def table(header: list[str], rows: Iterable[list[str]], align: Optional[str] = None) -> str:
    """A Markdown table; align has one 'l' or 'r' per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fmt_ci(ci: Optional[Sequence[float]]) -> str:
    return "—" if not ci else f"{ci[0]:.2f}–{ci[1]:.2f}"


# A run is flagged as disturbed above these: the share of all CPU time that other processes took
# during it (measured from /proc/stat on Linux) or, where that could not be measured, the 1-minute load
# average before it, per usable CPU. The share is the better witness: the load average decays over
# minutes, so right after a previous run it still counts that run's own workers (seen here: 1.77 on
# 2 CPUs at the start of a run during which other processes took 1% of the CPU).
BUSY_LOAD_PER_CPU = 0.5
BUSY_OTHER_SHARE = 0.10


def busy_warning(record: dict) -> Optional[str]:
    """One sentence when other work on the machine was large enough to distort the times, else None."""
    m = record.get("machine", {})
    cpus = m.get("cpu", {}).get("usable_cpus") or m.get("cpu", {}).get("logical_cpus") or 1
    before, other = m.get("load_before"), m.get("other_cpu_share")
    reasons = []
    if other is None and before and before[0] > BUSY_LOAD_PER_CPU * cpus:
        reasons.append(f"the load average was {before[0]:g} on {cpus} CPUs when it started")
    if other is not None and other > BUSY_OTHER_SHARE:
        reasons.append(f"other processes used {100 * other:.0f}% of the CPU time during the run")
    if not reasons:
        return None
    return ("**Warning: the machine was busy with other work** (" + "; ".join(reasons) + "): the times "
            "are inflated and noisy, and the intervals wide. Rerun on an idle machine for figures to "
            "publish.")


def describe_threads(record: dict) -> str:
    threads = record.get("machine", {}).get("threads", {})
    if "by_contestant" not in threads:   # a record from before process isolation
        parts = [f"{name} {threads[k]}" for k, name in (("torch", "PyTorch"), ("numba", "Numba"))
                 if threads.get(k) is not None]
        return ", ".join(parts) or "?"
    parts = []
    for name, found in threads["by_contestant"].items():
        libs = [f"OpenBLAS {'/'.join(map(str, sorted(set(found['openblas'].values()))))}"
                if found.get("openblas") else None,
                f"Numba {found['numba']}" if "numba" in found else None,
                f"PyTorch {found['torch']}" if "torch" in found else None]
        parts.append(f"{name}: " + ", ".join(x for x in libs if x))
    return (f"{threads.get('requested', '?')} requested for every contestant; as each worker read them "
            "back: " + "; ".join(parts))


def describe_machine(record: dict) -> list[str]:
    m = record.get("machine", {})
    cpu = m.get("cpu", {})
    git = m.get("git", {})
    commit = git.get("commit")
    commit_text = (commit[:12] + (" (with uncommitted changes)" if git.get("dirty") else "")
                   if commit else "not a git checkout")
    lines = [
        f"- **Date**: {m.get('date', '?')}; **commit**: {commit_text}; **grid**: {record.get('grid', '?')}"
        + (f"; **run time**: {m['wall_s']:.0f} s" if m.get("wall_s") else ""),
        f"- **CPU**: {cpu.get('model', '?')}, {cpu.get('logical_cpus', '?')} logical CPUs "
        f"({cpu.get('physical_cores') or '?'} cores, {cpu.get('usable_cpus', '?')} usable), "
        f"{cpu.get('memory_gib', '?')} GiB; {cpu.get('platform', '')}",
    ]
    for gpu in m.get("gpus", []):
        lines.append(f"- **GPU**: {gpu.get('name')}, driver {gpu.get('driver')}, "
                     f"{gpu.get('memory')}, compute capability {gpu.get('compute_capability')}")
    if not m.get("gpus"):
        lines.append("- **GPU**: none")
    lines.append(f"- **Threads**: {describe_threads(record)}")
    load = []
    if m.get("load_before"):
        load.append(f"load average (1/5/15 min) {', '.join(map(str, m['load_before']))} at the start")
    if m.get("other_cpu_share") is not None:
        load.append(f"other processes used {100 * m['other_cpu_share']:.0f}% of the CPU time during "
                    "the run")
    if load:
        lines.append("- **Other work on the machine**: " + "; ".join(load))
    ver = m.get("versions", {})
    blas = m.get("numpy_blas") or m.get("threads", {}).get("numpy_blas")
    lines.append("- **Versions**: " + ", ".join(f"{k} {v}" for k, v in ver.items() if v)
                 + (f"; NumPy's BLAS {blas}" if blas else ""))
    return lines


def describe_method(record: dict) -> list[str]:
    s = record.get("settings", {})
    b = s.get("budget", {})
    check = s.get("check", {})
    rounds = s.get("rounds")
    if s.get("isolation") == "process":
        how = (f"Each contestant runs in its own process: in each of {rounds} rounds, one fresh process "
               "per contestant runs every case and exits before the next contestant's starts (the "
               "order rotates between rounds), so no other library's threads are alive while one is "
               "timed.")
    else:
        how = "All contestants ran in one process (a record made before process isolation)."
    lines = [
        f"- **Method**: {how} In each process, per case: the first call (compilation; reported as "
        f"*first call*) and {b.get('warmup', 0) + 1} more call(s) are not timed"
        + (f" ({s['model_warmup'] + 1} for a model case)" if s.get("model_warmup") is not None
           and any(e["case"].get("kind") == "model" for e in record.get("cases", [])) else "")
        + "; then "
        f"{b.get('min_repeats', '?')}–{b.get('max_repeats', '?')} timed samples (about "
        f"{b.get('target_s', '?')} s). CPU: {s.get('timing', {}).get('cpu', '?')}; GPU: "
        f"{s.get('timing', {}).get('cuda', '?')}. TF32: {s.get('tf32', '?')}.",
    ]
    if check.get("enabled", True):
        lines.append(
            "- **Checked before timed**: every contestant's outputs and gradients are compared with a "
            "float64 NumPy reference (relative error max|a−b|/max|b| per tensor at most "
            + ", ".join(f"{v:g} in {k}" for k, v in check.get("tolerance", {}).items())
            + f"; on the first steps only when the case exceeds {check.get('flop_budget', 0):.0e} "
            "FLOPs); one that fails is reported and not timed."
            + (" Model cases: both contestants run the model in float64 and are compared with the "
               "torch.nn model in float64 (logits, state, loss and every gradient, at most "
               f"{check['model_tolerance_float64']:g}), then in the timed dtype, within that "
               "dtype's bound above." if check.get("model_tolerance_float64")
               and any(e["case"].get("kind") == "model" for e in record.get("cases", [])) else ""))
    peaks = [p for p in record.get("peak_gemm", []) if "gflops" in p]
    if peaks:
        lines.append("- **Peak GEMM rate** (one large matrix product, fastest sample): " + "; ".join(
            f"{p['device']} {p['dtype']} {p['n']}³: {p['gflops']:.0f} GFLOP/s" for p in peaks))
    for c in record.get("contestants", []):
        if not c.get("available"):
            lines.append(f"- Not run: **{c['name']}** ({c['device']}): {c['reason']}")
    return lines


HOW_TO_READ = """## How to read this

- A **case** is one workload: *training* = forward in training mode plus the full backward (input,
  initial-state and every weight gradient); *inference* = the forward in evaluation mode; *step* = the
  LSTMCell/GRUCell/RNNCell module called once per time step, T times (streaming use). Shapes are
  (T, N, H): sequence length, batch size, hidden size, with input size I = H; or (T, N, I, H).
- A **char-LM** case times a whole model, the character-level LSTM language model (embedding I,
  2-layer LSTM of hidden size H, linear read-out) on (T, N) characters: *training* = one training step
  (forward, cross-entropy, backward, gradient clipping, Adam step), *inference* = the eval-mode forward.
  Its contestants are **torch.nn-cpu** (the plain model, the baseline) and **fastrnn.torch-cpu** (the
  same model after `fastrnn.torch.convert`), and -cuda twins on a GPU; GFLOP/s and the GEMM floor are
  not given for it.
- **Speedup** = PyTorch's time / fastrnn's time on the same device: above 1.00x fastrnn is faster.
  Times are medians over all rounds' samples. The **95% interval** comes from resampling the rounds and
  their samples (bootstrap): if the run were repeated on this machine, the speedup would most likely
  fall inside it. A wide interval means the rounds disagreed.
- A **target** is the project's published goal for a case: the speedup over PyTorch on the CPU that
  fastrnn aims to reach there. **Met** reads *yes* when the whole interval is at or above the target,
  *no* when it is entirely below, and *unstable* when it straddles the target (this run cannot tell).
- **GEMM floor**: the time of the same matrix products alone, at the case's real shapes, with the
  device's BLAS (NumPy's on the CPU, cuBLAS via CuPy on a GPU), timed in its own process like a
  contestant. A fused kernel has to do these products, so **floor share** = floor time / this time says
  how close to that floor a contestant runs (above 100%: faster than the plain BLAS calls, as PyTorch's
  packed oneDNN GEMMs can be). **Best at floor** = PyTorch's time / the floor: the speedup a
  contestant would reach if nothing but its GEMMs were left.
- **GFLOP/s** counts matrix-product work only (forward 2·T·N·G·H·(I+H) with G gates; training 3x that).
  **Of peak** = GFLOP/s / the peak GEMM rate above. **µs/step** = time / T.
"""


# -- the Markdown report --------------------------------------------------------------------------

def results_table(record: dict) -> str:
    header = ["case", "backend", "median ms", "IQR ms", "µs/step", "speedup", "95% interval",
              "GFLOP/s", "floor share", "of peak", "first call ms", "max rel err"]
    rows = []
    for entry in record["cases"]:
        for row in entry["results"]:
            if row["status"] == "unavailable":
                continue
            d = derive(entry, row, record)
            t = row.get("time") or {}
            check = row.get("check") or {}
            err = check.get("max_rel_err")
            status = "" if row["status"] == "ok" else f" **{row['status'].upper()}**"
            rows.append([
                entry["label"], f"{row['backend']}{status}", fmt_ms(t.get("median")),
                fmt_ms(t["q3"] - t["q1"]) if t else "—", fmt_num(d["us_per_step"]),
                fmt_x(d["speedup_vs_torch"]), fmt_ci(d["speedup_ci95"]), fmt_num(d["gflops"]),
                fmt_pct(d["floor_share"]), fmt_pct(d["peak_share"]), fmt_ms(t.get("first_call_s")),
                "—" if err is None else f"{err:.1e}",
            ])
    return table(header, rows, "ll" + "r" * (len(header) - 2))


def target_rows(record: dict) -> list[dict]:
    """Each fastrnn CPU backend (not the reference) on each case that has a target, and the converted
    model on a model case that has one."""
    found = []
    for entry in record["cases"]:
        case = Case.from_dict(entry["case"])
        if case.target is None:
            continue
        torch_t = median(baseline_row(entry, "cpu"))
        floor = floor_time(entry, "cpu")
        for row in entry["results"]:
            if row["device"] != "cpu" or row["backend"] in BASELINE_NAMES | {REFERENCE}:
                continue
            if row["status"] == "unavailable" or row.get("family", "fastrnn") not in CHALLENGER_FAMILIES:
                continue
            d = derive(entry, row, record)
            found.append({"label": entry["label"], "backend": row["backend"], "target": case.target,
                          "torch": torch_t, "ours": median(row), "speedup": d["speedup_vs_torch"],
                          "ci": d["speedup_ci95"], "met": d["target_met"],
                          "floor_share": d["floor_share"],
                          "best": torch_t / floor if torch_t and floor else None})
    return found


def fmt_met(met: Optional[str]) -> str:
    return {"no": "**no**", "unstable": "*unstable*"}.get(met, met or "—")


def targets_table(record: dict) -> Optional[str]:
    rows = [[r["label"], r["backend"], fmt_ms(r["torch"]), fmt_ms(r["ours"]), fmt_x(r["speedup"]),
             fmt_ci(r["ci"]), f">= {r['target']:g}x", fmt_met(r["met"]), fmt_pct(r["floor_share"]),
             fmt_x(r["best"])] for r in target_rows(record)]
    if not rows:
        return None
    header = ["case", "backend", "PyTorch ms", "fastrnn ms", "speedup", "95% interval", "target",
              "met", "floor share", "best at floor"]
    return table(header, rows, "ll" + "r" * (len(header) - 2))


def problems(record: dict) -> list[str]:
    out = []
    for entry in record["cases"]:
        for row in entry["results"]:
            if row["status"] in ("error", "check_failed"):
                out.append(f"- {entry['label']} / {row['backend']}: {row['status']}: {row['error']}")
        for device, floor in entry.get("floors", {}).items():
            if "error" in floor:
                out.append(f"- {entry['label']} / GEMM floor ({device}): {floor['error']}")
    return out


def markdown_report(record: dict, plots: Iterable[str] = ()) -> str:
    parts = ["# fastrnn benchmark", ""]
    warning = busy_warning(record)
    if warning:
        parts += [warning, ""]
    parts += describe_machine(record) + describe_method(record) + ["", HOW_TO_READ]
    targets = targets_table(record)
    if targets:
        parts += ["## Targets: speedup over PyTorch on the CPU", "", targets, ""]
    parts += ["## All results", "", results_table(record), ""]
    bad = problems(record)
    if bad:
        parts += ["## Failures", ""] + bad + [""]
    plots = list(plots)
    if plots:
        parts += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(parts)


def failed_rows(record: dict) -> int:
    return sum(row["status"] in ("error", "check_failed")
               for entry in record["cases"] for row in entry["results"])
