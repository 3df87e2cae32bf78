"""Write the README's benchmark tables from committed `fastrnn bench` records.

    python bench/readme_tables.py bench/results/<run>/bench.json [more.json ...] [--readme README.md]

With one record: a line naming the machine, CPU model, threads, rounds and commit, then its table of
the cases with targets (PyTorch time, fastrnn time, speedup with its 95% interval, target, met). With
several (two runs of the same grid, say): one such line per record and one table with each record's
speedup, interval and verdict side by side. A record with the char-LM model case also gives its row
(torch.nn against the model converted by fastrnn.torch.convert, which computes with fastrnn's
automatic backend choice for the CPU: numba wherever it imports). The text
replaces what lies between the README's markers (BEGIN_MARKER / END_MARKER); nothing else in the file
changes. --check exits 1, writing nothing, when
the README is not what the records give (for CI).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from fastrnn.benchmarking.backends import MODEL_CONVERTED  # noqa: E402
from fastrnn.benchmarking.report import (describe_threads, fmt_ci, fmt_met, fmt_ms, fmt_pct,  # noqa: E402
                                         fmt_x, load_record, table, target_rows)

BEGIN_MARKER = "<!-- BEGIN GENERATED: benchmark tables -->"
END_MARKER = "<!-- END GENERATED: benchmark tables -->"


def where(record: dict, name: str, path: str) -> str:
    """One line: which record, on what, with how many threads and rounds, at which commit."""
    m, s = record.get("machine", {}), record.get("settings", {})
    cpu = m.get("cpu", {})
    git = m.get("git", {})
    commit = (git.get("commit") or "unknown")[:12] + (" + uncommitted changes" if git.get("dirty") else "")
    isolation = ("each contestant in its own process" if s.get("isolation") == "process"
                 else "all contestants in one process")
    rounds = s.get("rounds")
    gpus = ", ".join(g.get("name", "?") for g in m.get("gpus", [])) or "no GPU"
    return (f"- **{name}** ([`{path}`]({path})): {m.get('date', '?')[:10]}, {cpu.get('model', '?')} "
            f"({cpu.get('usable_cpus', '?')} usable CPUs), {gpus}; threads: {describe_threads(record)}; "
            + (f"{rounds} rounds, " if rounds else "one round (no interval), ")
            + f"{isolation}; commit `{commit}`.")


def rows_by_key(record: dict, backend: str) -> dict:
    """The target rows of `backend`, and of the converted char-LM on the CPU."""
    wanted = (backend, MODEL_CONVERTED["cpu"])
    return {(r["label"], r["target"]): r for r in target_rows(record) if r["backend"] in wanted}


def has_model_rows(records: Sequence[dict]) -> bool:
    return any(r["backend"] == MODEL_CONVERTED["cpu"] for rec in records for r in target_rows(rec))


def verdict_cells(r: dict, with_interval: bool) -> list[str]:
    """speedup, [interval,] met: the interval column only when the records have intervals."""
    cells = [f"**{fmt_x(r['speedup'])}**"] + ([fmt_ci(r["ci"])] if with_interval else [])
    return cells + [fmt_met(r["met"])]


def single_table(record: dict, backend: str) -> str:
    rows = rows_by_key(record, backend)
    with_interval = any(r["ci"] for r in rows.values())
    body = [[label, fmt_ms(r["torch"]), fmt_ms(r["ours"])] + verdict_cells(r, with_interval)
            + [f">= {target:g}x", fmt_pct(r["floor_share"])] for (label, target), r in rows.items()]
    header = (["case", "PyTorch ms", f"fastrnn ({backend}) ms", "speedup"]
              + (["95% interval"] if with_interval else []) + ["met", "target", "floor share"])
    return table(header, body, "l" + "r" * (len(header) - 1))


def side_by_side_table(records: Sequence[dict], names: Sequence[str], backend: str) -> str:
    per_record = [rows_by_key(r, backend) for r in records]
    with_interval = any(r["ci"] for rows in per_record for r in rows.values())
    keys = list(dict.fromkeys(k for rows in per_record for k in rows))
    header = ["case", "target"]
    for name in names:
        header += [f"{name} speedup"] + ([f"{name} 95% interval"] if with_interval else []) + [
            f"{name} met"]
    width = 3 if with_interval else 2
    body = []
    for label, target in keys:
        line = [label, f">= {target:g}x"]
        for rows in per_record:
            r = rows.get((label, target))
            line += verdict_cells(r, with_interval) if r else ["—"] * width
        body.append(line)
    return table(header, body, "l" + "r" * (len(header) - 1))


def generated_text(records: Sequence[dict], paths: Sequence[str], backend: str = "numba") -> str:
    names = ["this run"] if len(records) == 1 else [f"run {i + 1}" for i in range(len(records))]
    lines = [f"Speedup = PyTorch's CPU time / fastrnn's ({backend} backend) CPU time: above 1.00x fastrnn "
             "is faster. A *target* is the project's published goal for that case. *Met* is *yes* when "
             "the whole 95% interval is at or above the target, *no* when it is entirely below, and "
             "*unstable* when the interval straddles it (a record without intervals: from the speedup "
             "alone). *Floor share*: the time of the same matrix "
             "products alone with NumPy's BLAS, over fastrnn's time."
             + (" The *char-LM* row times a whole model's training step: the torch.nn character "
                "language model against the same model converted by `fastrnn.torch.convert`."
                if has_model_rows(records) else "")
             + " Generated by `bench/readme_tables.py` from:", ""]
    lines += [where(r, n, p) for r, n, p in zip(records, names, paths)] + [""]
    lines.append(single_table(records[0], backend) if len(records) == 1
                 else side_by_side_table(records, names, backend))
    return "\n".join(lines)


def replace_between_markers(text: str, generated: str) -> str:
    begin, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    if begin < 0 or end < begin:
        raise ValueError(f"the README has no {BEGIN_MARKER} ... {END_MARKER} block")
    return text[:begin + len(BEGIN_MARKER)] + "\n" + generated.strip() + "\n" + text[end:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", help="bench.json records (one, or several side by side)")
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--backend", default="numba", help="the fastrnn backend to tabulate")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the README differs from what the records give")
    args = parser.parse_args(argv)
    records = [load_record(p) for p in args.records]
    readme = Path(args.readme)
    base = readme.resolve().parent
    paths = [Path(p).resolve().relative_to(base).as_posix() if Path(p).resolve().is_relative_to(base)
             else str(p) for p in args.records]
    old = readme.read_text()
    new = replace_between_markers(old, generated_text(records, paths, args.backend))
    if args.check:
        if new != old:
            print(f"{readme}: the benchmark tables are not what {', '.join(paths)} give; rerun "
                  "bench/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    print(f"{readme}: benchmark tables written from {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
