"""Median over several `fastrnn bench` records of the same grid: the speed-target table with each
run's ratio beside the median, because one run on a shared machine can be an outlier.

    python bench/summarize_runs.py run1/bench.json run2/bench.json ... [--backend numba]
"""
from __future__ import annotations

import argparse
import json
import statistics


def _results(case_entry) -> dict:
    return {r["backend"]: r for r in case_entry["results"] if r["status"] == "ok"}


def summarize(records: list, backend: str, baseline: str) -> str:
    keys = [c["key"] for c in records[0]["cases"]]
    for record in records[1:]:
        if [c["key"] for c in record["cases"]] != keys:
            raise ValueError("the records do not hold the same grid")
    commits = sorted({(r["machine"].get("git") or {}).get("commit", "unknown")[:12] for r in records})
    lines = [
        f"Median of {len(records)} runs of `fastrnn bench` (commit {', '.join(commits)}); ratio = "
        f"{baseline} time / {backend} time, each run's own ratio in brackets.",
        "",
        f"| case | {baseline} ms (median) | {backend} ms (median) | speedup (median) | runs | target "
        f"| share of GEMM floor |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for i, first in enumerate(records[0]["cases"]):
        target = first["case"].get("target")
        if target is None:
            continue
        per_run = [_results(record["cases"][i]) for record in records]
        if not all(backend in r and baseline in r for r in per_run):
            continue
        ratios = [r[backend]["derived"]["speedup_vs_torch"] for r in per_run]
        ours = statistics.median(r[backend]["time"]["median"] for r in per_run) * 1e3
        theirs = statistics.median(r[baseline]["time"]["median"] for r in per_run) * 1e3
        floor = statistics.median(r[backend]["derived"]["floor_share"] for r in per_run)
        runs = ", ".join(f"{x:.2f}" for x in ratios)
        lines.append(f"| {first['label']} | {theirs:.3g} | {ours:.3g} | "
                     f"**{statistics.median(ratios):.2f}x** | [{runs}] | >= {target:g}x | "
                     f"{floor:.0%} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", help="bench.json files of the same grid")
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--baseline", default="torch-cpu")
    args = parser.parse_args(argv)
    records = []
    for path in args.records:
        with open(path) as fh:
            records.append(json.load(fh))
    print(summarize(records, args.backend, args.baseline))


if __name__ == "__main__":
    main()
