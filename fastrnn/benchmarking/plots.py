"""PNG plots of a record, drawn with matplotlib's Agg renderer (no display, no pyplot state).

speedup.png     per case, each fastrnn backend's speedup over PyTorch on its own device (log scale),
                with its 95% interval as an error bar and the case's target marked where it has one
throughput.png  per (cell, mode, T, I, H, dtype), sequence elements per second against batch size for
                every contestant; CPU contestants solid, GPU dashed, on the same axes
"""
from __future__ import annotations

import math
from pathlib import Path

from .backends import BASELINE_NAMES
from .grid import Case
from .report import derive, median

SPEEDUP_NAME = "speedup.png"
THROUGHPUT_NAME = "throughput.png"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _colors(names):
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(sorted(names))}


def _all_names(record):
    return {row["backend"] for e in record["cases"] for row in e["results"]}


def plot_speedup(record: dict, path) -> Path:
    """Horizontal bars of each fastrnn backend's speedup per case, with its 95% interval as an error
    bar, and the case's target marked."""
    derived = {(i, r["backend"]): derive(e, r) for i, e in enumerate(record["cases"])
               for r in e["results"] if r["backend"] not in BASELINE_NAMES}
    shown = sorted({i for (i, _), d in derived.items() if d["speedup_vs_torch"]})
    entries = [record["cases"][i] for i in shown]
    names = sorted({n for (i, n), d in derived.items() if d["speedup_vs_torch"]})
    colors = _colors(_all_names(record))
    fig = _figure(9, max(2.5, 0.28 * max(len(entries), 1) * max(len(names), 1) + 1.5))
    ax = fig.add_subplot()
    if not entries:
        ax.text(0.5, 0.5, "no speedup to show (PyTorch did not run)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
    else:
        bar = 0.8 / max(len(names), 1)
        extremes = [1.0]
        for j, name in enumerate(names):
            ys, xs, lo, hi = [], [], [], []
            for k, i in enumerate(shown):
                d = derived.get((i, name))
                if not d or not d["speedup_vs_torch"]:
                    continue
                s = d["speedup_vs_torch"]
                low, high = d["speedup_ci95"] or (s, s)
                ys.append(k - 0.4 + bar * (j + 0.5))
                xs.append(s)
                lo.append(max(s - low, 0.0))
                hi.append(max(high - s, 0.0))
                extremes += [low, high]
            ax.barh(ys, xs, height=bar * 0.9, color=colors[name], label=name,
                    xerr=[lo, hi], error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "black"})
            for y, x, h in zip(ys, xs, hi):
                ax.text((x + h) * 1.03, y, f"{x:.2f}x", va="center", fontsize=7)
        targets = [(k, Case.from_dict(e["case"]).target) for k, e in enumerate(entries)]
        targets = [(k, t) for k, t in targets if t]
        if targets:
            ax.scatter([t for _, t in targets], [k for k, _ in targets], marker="|", s=400,
                       color="black", zorder=3, label="target (CPU)")
        ax.axvline(1.0, color="grey", linewidth=1, linestyle=":")
        ax.set_xscale("log")
        ax.set_yticks(range(len(entries)), [e["label"] for e in entries], fontsize=8)
        ax.invert_yaxis()
        extremes += [t for _, t in targets]
        left, right = min(extremes) / 1.5, max(extremes) * 1.8
        ax.set_xlim(left, right)
        _speedup_ticks(ax, left, right)
        ax.set_xlabel("speedup over PyTorch on the same device (PyTorch time / backend time); "
                      "bars: 95% interval")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_title(_title(record, "Speedup over PyTorch"), fontsize=10)
    fig.savefig(path)
    return Path(path)


def _speedup_ticks(ax, left: float, right: float) -> None:
    """Plain "0.5x 1x 2x" ticks on the log axis instead of powers of ten."""
    from matplotlib.ticker import FixedLocator, NullLocator

    nice = [m * 10.0 ** e for e in range(-3, 4) for m in (1, 2, 5)]
    ticks = [t for t in nice if left <= t <= right]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])


def _title(record: dict, what: str) -> str:
    m = record.get("machine", {})
    cpu = m.get("cpu", {})
    where = f"{cpu.get('model', '?')} ({cpu.get('logical_cpus', '?')} CPUs)"
    gpus = [g.get("name") for g in m.get("gpus", [])]
    if gpus:
        where += " + " + ", ".join(gpus)
    return f"{what} — {where}, {m.get('date', '')[:10]}"


def throughput_groups(record: dict) -> dict:
    """(cell, kind, mode, T, I, H, dtype) -> entries, for groups measured at two or more batch sizes."""
    groups: dict = {}
    for e in record["cases"]:
        c = Case.from_dict(e["case"])
        groups.setdefault((c.cell, c.kind, c.mode, c.T, c.I, c.H, c.dtype), []).append(e)
    return {k: sorted(v, key=lambda e: e["case"]["N"]) for k, v in groups.items()
            if len({e["case"]["N"] for e in v}) >= 2}


def plot_throughput(record: dict, path) -> Path:
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    groups = throughput_groups(record)
    devices = {r["backend"]: r["device"] for e in record["cases"] for r in e["results"]}
    colors = _colors(_all_names(record))
    cols = min(3, max(len(groups), 1))
    rows = max(1, math.ceil(len(groups) / cols))
    fig = _figure(4.2 * cols + 0.5, 3.3 * rows + 0.6)
    if not groups:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no case was measured at two or more batch sizes", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
    for k, (key, entries) in enumerate(groups.items()):
        cell, kind, mode, T, I, H, dtype = key
        ax = fig.add_subplot(rows, cols, k + 1)
        for name in sorted(devices):
            pts = []
            for e in entries:
                row = next((r for r in e["results"] if r["backend"] == name), None)
                t = median(row)
                if t:
                    pts.append((e["case"]["N"], T * e["case"]["N"] / t))
            if not pts:
                continue
            gpu = devices[name] == "cuda"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="s" if gpu else "o",
                    linestyle="--" if gpu else "-", color=colors[name],
                    label=f"{name} ({devices[name]})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(EngFormatter(sep=""))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ns = sorted({e["case"]["N"] for e in entries})
        ax.set_xticks(ns, [str(n) for n in ns])
        what = mode if kind == "layer" else "step"
        shape = f"T={T}, H={H}" + ("" if I == H else f", I={I}")
        ax.set_title(f"{cell} {what}, {shape}" + ("" if dtype == "float32" else f", {dtype}"),
                     fontsize=9)
        ax.set_xlabel("batch size N")
        ax.set_ylabel("sequence elements / s (T·N / time)")
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(_title(record, "Throughput against batch size"), fontsize=10)
    fig.savefig(path)
    return Path(path)


def write_plots(record: dict, out_dir) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [plot_speedup(record, out_dir / SPEEDUP_NAME),
            plot_throughput(record, out_dir / THROUGHPUT_NAME)]
