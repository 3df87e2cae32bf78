"""The `fastrnn` command: `fastrnn bench` (benchmark report) and `fastrnn info` (what runs here)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

from . import __version__

DEFAULT_OUT = "fastrnn-bench"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastrnn", description="fastrnn: fused RNN / LSTM / GRU kernels for CPU and GPU.")
    parser.add_argument("--version", action="version", version=f"fastrnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    bench = sub.add_parser(
        "bench", help="benchmark every backend against PyTorch and write a report",
        description="Check every available backend against the NumPy reference, time it next to "
                    "PyTorch and the GEMM floor (each contestant in its own process, in rounds), and "
                    "write bench.json, report.md and PNG plots into --out; stdout gets a short "
                    "summary. With --compare, lay bench.json records side by side instead.")
    size = bench.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="preset", action="store_const", const="quick",
                      help="the quick grid (default): the cases with published targets, an "
                           "LSTM batch sweep and the char-LM model cases (torch.nn against "
                           "fastrnn.torch.convert); about seven minutes on two cores")
    size.add_argument("--full", dest="preset", action="store_const", const="full",
                      help="the full DeepBench-style grid: H in {256,512,1024}, N in {1,4,16,32,64}, "
                           "T in {25,100}, training and inference, and the char-LM model cases")
    bench.set_defaults(preset="quick")
    bench.add_argument("--cells", nargs="+", metavar="CELL",
                       help="cells to run: lstm gru rnn_tanh rnn_relu (rnn = rnn_tanh)")
    bench.add_argument("--backends", nargs="+", metavar="NAME",
                       help="contestants: registry backends (see `fastrnn info`), 'torch' "
                            "(or torch-cpu / torch-cuda), and for the char-LM model cases "
                            "torch.nn-cpu and fastrnn.torch-cpu (-cuda on a GPU); default: all")
    bench.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"],
                       help="dtypes (default float32)")
    bench.add_argument("--shapes", nargs="+", metavar="T,N,H",
                       help="custom shapes T,N,H (I = H) or T,N,I,H instead of the preset's")
    bench.add_argument("--modes", nargs="+", choices=["training", "inference"],
                       help="training and/or inference (default both)")
    bench.add_argument("--kinds", nargs="+", choices=["layer", "step", "model"],
                       help="case kinds: layer (whole sequences), step (*Cell one step at a time), "
                            "model (the char-LM, torch.nn against converted); default all")
    bench.add_argument("--bidirectional", action="store_true",
                       help="time bidirectional layers: the layer cases of the preset or --shapes, "
                            "each with both directions (step and model cases dropped)")
    bench.add_argument("--out", default=None, metavar="DIR",
                       help=f"output folder (default ./{DEFAULT_OUT})")
    bench.add_argument("--compare", nargs="+", metavar="JSON",
                       help="compare records instead of measuring: the first against each other "
                            "(files that are not bench records are skipped with a note)")
    from .benchmarking.timing import ROUNDS

    bench.add_argument("--rounds", type=int, metavar="N",
                       help="rounds: each contestant is timed once per round in a fresh process "
                            f"(default {ROUNDS['quick']} quick, {ROUNDS['full']} full)")
    bench.add_argument("--threads", type=int, metavar="N",
                       help="threads for every library of every contestant (default: all usable "
                            "CPUs)")
    bench.add_argument("--time-budget", type=float, metavar="SECONDS",
                       help="seconds of timed samples per contestant, case and round (default "
                            "0.15 quick, 0.3 full); a few samples are taken whatever the budget")
    bench.add_argument("--no-check", action="store_true",
                       help="skip the check against the NumPy reference (not recommended)")
    bench.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    bench.add_argument("--quiet", action="store_true", help="no progress bar, no summary on stdout")

    sub.add_parser("info", help="versions, machine, and which backends run here (and why not)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        return bench(args, parser)
    if args.command == "info":
        print(info_text())
        return 0
    parser.print_help()
    return 2


# -- fastrnn bench --------------------------------------------------------------------------------

def bench(args, parser) -> int:
    from .benchmarking import backends as bk
    from .benchmarking.grid import LAYER_KINDS, build_grid, parse_shape
    from .benchmarking.threads import usable_cpus
    from .benchmarking.timing import FULL, QUICK, ROUNDS

    if args.compare:
        return compare(args)
    try:
        shapes = [parse_shape(s) for s in args.shapes] if args.shapes else None
        cases = build_grid(args.preset, cells=args.cells, shapes=shapes, dtypes=args.dtype,
                           modes=args.modes, kinds=args.kinds, bidirectional=args.bidirectional)
        contestants = bk.select(args.backends)
    except ValueError as exc:
        parser.error(str(exc))
    if not cases:
        parser.error("the options select no case")
    for name, value in (("--rounds", args.rounds), ("--threads", args.threads)):
        if value is not None and value < 1:
            parser.error(f"{name} must be at least 1")
    if args.time_budget is not None and args.time_budget < 0:
        parser.error("--time-budget must be >= 0")
    cases, omitted = bk.runnable_cases(cases, contestants)
    if omitted:
        print(f"fastrnn bench: {omitted}", file=sys.stderr)
    if not cases:
        print("fastrnn bench: no selected backend can run the selected cases here", file=sys.stderr)
        return 1
    contestants = [c for c in contestants if any(c.runs(case) for case in cases)]
    available = [c for c in contestants if c.available]
    for c in contestants:
        if not c.available:
            print(f"fastrnn bench: skipping {c.name} ({c.device}): {c.reason}", file=sys.stderr)
    if not available:
        print("fastrnn bench: no selected backend can run here", file=sys.stderr)
        return 1

    from .benchmarking.report import JSON_NAME, REPORT_NAME, failed_rows, markdown_report, save_record
    from .benchmarking.runner import run_benchmarks
    from .benchmarking.summary import short_summary

    grid = "custom" if shapes else args.preset
    budget = FULL if grid == "full" else QUICK
    if args.time_budget is not None:
        budget = replace(budget, target_s=args.time_budget)
    rounds = args.rounds or ROUNDS["full" if grid == "full" else "quick"]
    threads = args.threads or usable_cpus()
    floor = " and the GEMM floor" if any(c.kind in LAYER_KINDS for c in cases) else ""
    print(f"fastrnn bench: {len(cases)} cases x {len(available)} contestants "
          f"({', '.join(c.name for c in available)}){floor}, {rounds} rounds, "
          f"{threads} thread{'' if threads == 1 else 's'}", file=sys.stderr)
    record = run_benchmarks(cases, contestants, budget=budget, rounds=rounds, threads=threads,
                            grid=grid, check=not args.no_check, show_progress=not args.quiet)
    out = Path(args.out or DEFAULT_OUT)
    json_path = save_record(record, out / JSON_NAME)
    plots = []
    if not args.no_plots:
        try:
            from .benchmarking.plots import write_plots

            plots = write_plots(record, out)
        except ImportError as exc:
            print(f"fastrnn bench: no plots: {exc} (pip install 'fastrnn[bench]')", file=sys.stderr)
    report_path = out / REPORT_NAME
    report_path.write_text(markdown_report(record, [str(p) for p in plots]))
    if not args.quiet:
        print(short_summary(record, report_path, [json_path, *plots]))
    bad = failed_rows(record)
    if bad:
        print(f"fastrnn bench: {bad} measurement(s) failed or did not match the reference; see "
              f"the report's Failures section", file=sys.stderr)
        return 1
    return 0


def compare(args) -> int:
    from .benchmarking.compare import compare_records
    from .benchmarking.report import load_record

    records = []
    for path in args.compare:
        try:
            records.append((path, load_record(path)))
        except ValueError as exc:
            print(f"fastrnn bench --compare: skipping {exc}", file=sys.stderr)
    if len(records) < 2:
        print("fastrnn bench --compare: needs two bench records or more", file=sys.stderr)
        return 2
    (name_a, a), rest = records[0], records[1:]
    text = "\n".join(compare_records(a, b, name_a, name_b) for name_b, b in rest)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(text)
        print(f"fastrnn bench: wrote {out / 'compare.md'}", file=sys.stderr)
    return 0


# -- fastrnn info ---------------------------------------------------------------------------------

def info_text() -> str:
    from . import dispatch
    from .benchmarking.backends import TORCH_BASELINES, all_contestants, torch_reason
    from .benchmarking.machine import cpu_info, gpu_info, versions

    lines = ["fastrnn " + str(versions().get("fastrnn") or "?"), ""]
    lines.append("versions: " + ", ".join(f"{k} {v or 'not installed'}"
                                          for k, v in versions().items() if k != "fastrnn"))
    cpu = cpu_info()
    lines.append(f"cpu: {cpu['model']}, {cpu['logical_cpus']} logical CPUs, "
                 f"{cpu['usable_cpus']} usable")
    gpus = gpu_info(probe=False)
    lines.append("gpu: " + ("; ".join(f"{g['name']} (driver {g['driver']})" for g in gpus)
                            if gpus else "none found by nvidia-smi"))
    lines += ["", "backends:"]
    lines += ["  " + line for line in dispatch.availability_report().splitlines()]
    if dispatch.unavailable_reason("numba") is None:
        from .cpu import pair, team
        from .cpu.gemm import choices_report

        lines += [""] + choices_report().splitlines() + [team.report(), pair.report()]
    lines += ["", "benchmark baselines:"]
    for device, name in TORCH_BASELINES.items():
        reason = torch_reason(device)
        lines.append(f"  {name:10s} ({device}) " + ("available" if reason is None
                                                     else f"unavailable: {reason}"))
    models = [c for c in all_contestants() if "model" in c.kinds]
    lines += ["", "benchmark char-LM contestants (model cases):"]
    lines += [f"  {c.name:18s} ({c.device}) " + ("available" if c.available else f"unavailable: {c.reason}")
              for c in models]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
