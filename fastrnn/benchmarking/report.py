"""The JSON record on disk, the numbers derived from it, and its Markdown report.

Only raw measurements are authoritative in the record; speedups, GFLOP/s and shares of the GEMM floor
are derived here (and also written into the JSON for convenience), so an old record can always be
re-reported and compared.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

from .backends import REFERENCE, TORCH_BASELINES
from .grid import Case
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


def derive(entry: dict, row: dict, record: Optional[dict] = None) -> dict:
    """speedup over PyTorch on the row's device, GFLOP/s, microseconds per time step, share of the
    measured GEMM floor and of the device's peak GEMM rate (needs `record`); None where missing."""
    case = Case.from_dict(entry["case"])
    t = median(row)
    base = median(find_row(entry, TORCH_BASELINES.get(row["device"], ""), row["device"]))
    floor = floor_time(entry, row["device"])
    peak = peak_gflops(record, row["device"], case.dtype)
    if t is None or t <= 0:
        return {"speedup_vs_torch": None, "gflops": None, "us_per_step": None, "floor_share": None,
                "peak_share": None}
    gflops = case.flops / t / 1e9
    return {
        "speedup_vs_torch": base / t if base else None,
        "gflops": gflops,
        "us_per_step": t / case.T * 1e6,
        "floor_share": floor / t if floor else None,
        "peak_share": gflops / peak if peak else None,
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


def describe_machine(record: dict) -> list[str]:
    m = record.get("machine", {})
    cpu = m.get("cpu", {})
    threads = m.get("threads", {})
    git = m.get("git", {})
    commit = git.get("commit")
    commit_text = (commit[:12] + (" (with uncommitted changes)" if git.get("dirty") else "")
                   if commit else "not a git checkout")
    lines = [
        f"- **Date**: {m.get('date', '?')}; **commit**: {commit_text}; **grid**: {record.get('grid', '?')}",
        f"- **CPU**: {cpu.get('model', '?')}, {cpu.get('logical_cpus', '?')} logical CPUs "
        f"({cpu.get('physical_cores') or '?'} cores, {cpu.get('usable_cpus', '?')} usable), "
        f"{cpu.get('memory_gib', '?')} GiB; {cpu.get('platform', '')}",
    ]
    for gpu in m.get("gpus", []):
        lines.append(f"- **GPU**: {gpu.get('name')}, driver {gpu.get('driver')}, "
                     f"{gpu.get('memory')}, compute capability {gpu.get('compute_capability')}")
    if not m.get("gpus"):
        lines.append("- **GPU**: none")
    parts = []
    for key, name in (("torch", "PyTorch"), ("numba", "Numba")):
        if threads.get(key) is not None:
            parts.append(f"{name} {threads[key]}")
    if threads.get("blas_threads"):
        parts.append(f"BLAS {threads['blas_threads']}")
    if threads.get("env"):
        parts.append("env " + ", ".join(f"{k}={v}" for k, v in threads["env"].items()))
    lines.append(f"- **Threads**: {'; '.join(parts) or '?'} (PyTorch at its default)")
    before = m.get("load_before")
    if before:
        text = f"- **Load average** (1/5/15 min) at the start: {', '.join(map(str, before))}"
        cpus = cpu.get("usable_cpus") or cpu.get("logical_cpus") or 1
        if before[0] > 0.5 * cpus:
            text += " — **the machine was busy with other work: times are inflated and noisy**"
        lines.append(text)
    ver = m.get("versions", {})
    lines.append("- **Versions**: " + ", ".join(f"{k} {v}" for k, v in ver.items() if v)
                 + (f"; BLAS {threads['numpy_blas']}" if threads.get("numpy_blas") else ""))
    return lines


def describe_settings(record: dict) -> list[str]:
    s = record.get("settings", {})
    b = s.get("budget", {})
    check = s.get("check", {})
    lines = [
        f"- **Timing**: {s.get('timing', {}).get('cpu', '?')} (CPU), "
        f"{s.get('timing', {}).get('cuda', '?')} (GPU). Not timed: the first call (compilation, "
        f"reported as *first call*), {b.get('warmup', 0)} warm-up call(s), and one call at the start "
        f"of each block of samples (contestants take turns in {b.get('blocks', 1)} block(s), so "
        f"another library's idle threads do not count against the next). Median of "
        f"{b.get('min_repeats', '?')}-{b.get('max_repeats', '?')} samples; spread = interquartile "
        f"range (IQR). TF32: {s.get('tf32', '?')}.",
        "- **Training** = forward in training mode + full backward (dx, dh0 and every weight "
        "gradient); **inference** = eval-mode forward; **step** = the *Cell module driven one "
        "time step at a time. Shapes are (T, N, H) with I = H, or (T, N, I, H).",
        "- **GFLOP/s** counts GEMM work only (forward 2·T·N·G·H·(I+H), training 3x that). "
        "**Floor share** = time of the same GEMMs alone, at their real shapes, with the device's "
        "BLAS (NumPy / CuPy; fastest sample) / this time: above 100% means faster than those plain GEMM calls "
        "(oneDNN's packed GEMMs do that). **Of peak** = GFLOP/s / the peak GEMM rate below; the "
        "*ceiling at peak GEMM rate* is PyTorch's time over the case's FLOPs at that rate (the "
        "ceiling of issue 3).",
    ]
    if check.get("enabled", True):
        lines.append(
            f"- Every contestant is checked against the float64 NumPy reference before it is timed "
            f"(relative error max|a-b|/max|b| per tensor <= "
            f"{', '.join(f'{k} {v:g}' for k, v in check.get('tolerance', {}).items())}, "
            f"on the first T steps of the "
            f"case when the full case would exceed {check.get('flop_budget', 0):.0e} FLOPs).")
    peaks = [p for p in record.get("peak_gemm", []) if "gflops" in p]
    if peaks:
        lines.append("- **Peak GEMM rate** (fastest sample, before or after the cases): " + "; ".join(
            f"{p['device']} {p['dtype']} {p['n']}³: {p['gflops']:.0f} GFLOP/s" for p in peaks))
    missing = [c for c in record.get("contestants", []) if not c.get("available")]
    for c in missing:
        lines.append(f"- Not run: **{c['name']}** ({c['device']}): {c['reason']}")
    return lines


# -- the Markdown report --------------------------------------------------------------------------

def results_table(record: dict) -> str:
    header = ["case", "backend", "median ms", "IQR ms", "µs/step", "vs PyTorch", "GFLOP/s",
              "floor share", "of peak", "first call ms", "max rel err"]
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
                fmt_x(d["speedup_vs_torch"]), fmt_num(d["gflops"]), fmt_pct(d["floor_share"]),
                fmt_pct(d["peak_share"]), fmt_ms(t.get("first_call_s")), "—" if err is None else f"{err:.1e}",
            ])
    return table(header, rows, "ll" + "r" * (len(header) - 2))


def targets_table(record: dict) -> Optional[str]:
    """Cases with a target: each fastrnn CPU backend except the reference against PyTorch."""
    rows = []
    for entry in record["cases"]:
        case = Case.from_dict(entry["case"])
        if case.target is None:
            continue
        torch_t = median(find_row(entry, TORCH_BASELINES["cpu"], "cpu"))
        floor = floor_time(entry, "cpu")
        peak = peak_gflops(record, "cpu", case.dtype)
        peak_floor = case.flops / (peak * 1e9) if peak else None
        for row in entry["results"]:
            if row["device"] != "cpu" or row["backend"] in (TORCH_BASELINES["cpu"], REFERENCE):
                continue
            if row["status"] == "unavailable":
                continue
            d = derive(entry, row, record)
            s = d["speedup_vs_torch"]
            met = "—" if s is None else ("yes" if s >= case.target else "**no**")
            rows.append([entry["label"], row["backend"], fmt_ms(torch_t), fmt_ms(median(row)),
                         fmt_x(s), f">= {case.target:g}x", met, fmt_pct(d["floor_share"]),
                         fmt_x(torch_t / floor if torch_t and floor else None),
                         fmt_x(torch_t / peak_floor if torch_t and peak_floor else None)])
    if not rows:
        return None
    header = ["case", "backend", "PyTorch ms", "fastrnn ms", "speedup", "target", "met",
              "floor share", "ceiling: PyTorch / floor", "ceiling at peak GEMM rate"]
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
    parts += describe_machine(record) + describe_settings(record) + [""]
    targets = targets_table(record)
    if targets:
        parts += ["## Speed targets (issue 3: PyTorch CPU time / fastrnn time)", "", targets, ""]
    parts += ["## Results", "", results_table(record), ""]
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
