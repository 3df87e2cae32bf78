"""Two records side by side (`fastrnn bench --compare`): a regression check on one machine, or CPU against GPU across two.

Cases are matched by their identity (cell, kind, mode, shape, dtype). Contestants present in both
records are compared one to one; and for every case the fastest fastrnn backend of each record is
compared, which is what answers "GPU or CPU?" when the two records ran different backends.
"""
from __future__ import annotations

from typing import Optional

from .backends import BASELINE_NAMES
from .report import fmt_ms, fmt_x, median, table


def _where(record: dict) -> str:
    m = record.get("machine", {})
    gpus = ", ".join(g.get("name", "?") for g in m.get("gpus", [])) or "no GPU"
    commit = (m.get("git", {}).get("commit") or "no commit")[:12]
    return f"{m.get('cpu', {}).get('model', '?')}; {gpus}; {commit}; {m.get('date', '?')}"


def _fastest(entry: dict) -> tuple[Optional[str], Optional[float]]:
    best = (None, None)
    for row in entry["results"]:
        t = median(row)
        if t is None or row["backend"] in BASELINE_NAMES:
            continue
        if best[1] is None or t < best[1]:
            best = (f"{row['backend']} ({row['device']})", t)
    return best


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """How many times faster B is than A."""
    return a / b if a and b else None


def compare_records(a: dict, b: dict, name_a: str = "A", name_b: str = "B") -> str:
    cases_a = {e["key"]: e for e in a["cases"]}
    cases_b = {e["key"]: e for e in b["cases"]}
    shared = [k for k in cases_a if k in cases_b]
    lines = ["# fastrnn benchmark comparison", "",
             f"- **A** = `{name_a}`: {_where(a)}",
             f"- **B** = `{name_b}`: {_where(b)}",
             "- \"B vs A\" = A's time / B's time: above 1.00x B is faster.", ""]
    if not shared:
        lines += ["The two records have no case in common.", ""]
        return "\n".join(lines)

    rows = []
    for key in shared:
        ea, eb = cases_a[key], cases_b[key]
        for row_a in ea["results"]:
            row_b = next((r for r in eb["results"] if r["backend"] == row_a["backend"]
                          and r["device"] == row_a["device"]), None)
            ta, tb = median(row_a), median(row_b)
            if ta is None and tb is None:
                continue
            rows.append([ea["label"], row_a["backend"], fmt_ms(ta), fmt_ms(tb), fmt_x(_ratio(ta, tb))])
    lines += ["## Same backend in both", "",
              table(["case", "backend", "A ms", "B ms", "B vs A"], rows, "llrrr") if rows
              else "No backend ran in both records.", ""]

    rows = []
    for key in shared:
        ea, eb = cases_a[key], cases_b[key]
        (name_fa, ta), (name_fb, tb) = _fastest(ea), _fastest(eb)
        rows.append([ea["label"], name_fa or "—", fmt_ms(ta), name_fb or "—", fmt_ms(tb),
                     fmt_x(_ratio(ta, tb))])
    lines += ["## Fastest fastrnn backend in each", "",
              table(["case", "A fastest", "A ms", "B fastest", "B ms", "B vs A"], rows, "llrlrr"), ""]

    only_a = [cases_a[k]["label"] for k in cases_a if k not in cases_b]
    only_b = [cases_b[k]["label"] for k in cases_b if k not in cases_a]
    if only_a:
        lines += [f"Only in A: {', '.join(only_a)}", ""]
    if only_b:
        lines += [f"Only in B: {', '.join(only_b)}", ""]
    return "\n".join(lines)
