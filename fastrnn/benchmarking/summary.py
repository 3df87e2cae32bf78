"""The few lines `fastrnn bench` prints on stdout: what ran, each target's verdict, where the report is."""
from __future__ import annotations

from typing import Sequence

from .report import busy_warning, fmt_ci, fmt_x, target_rows


def short_summary(record: dict, report_path, other_paths: Sequence = ()) -> str:
    m, s = record.get("machine", {}), record.get("settings", {})
    cpu = m.get("cpu", {})
    ran = [c["name"] for c in record.get("contestants", []) if c.get("available")]
    commit = (m.get("git", {}).get("commit") or "no commit")[:12]
    wall = m.get("wall_s")
    floor = " (and the GEMM floor)" if record.get("floors", True) else ""
    lines = [f"fastrnn bench: {len(record.get('cases', []))} cases x {', '.join(ran)}{floor}, "
             f"{s.get('rounds', '?')} rounds, each contestant in its own process, "
             f"{s.get('threads', '?')} thread{'' if s.get('threads') == 1 else 's'}; "
             f"{cpu.get('model', '?')}, commit {commit}"
             + (f"; {wall:.0f} s" if wall else "")]
    warning = busy_warning(record)
    if warning:
        lines.append(warning.replace("**", ""))
    rows = target_rows(record)
    if rows:
        lines.append("Speedup over PyTorch (CPU), 95% interval, target, met:")
        width = max(len(r["label"]) for r in rows)
        backend_width = max(6, *(len(r["backend"]) for r in rows))
        for r in rows:
            lines.append(f"  {r['label']:{width}s}  {r['backend']:{backend_width}s} "
                         f"{fmt_x(r['speedup']):>7s}  "
                         f"[{fmt_ci(r['ci'])}]  >= {r['target']:g}x  {r['met'] or '—'}")
        counts = {v: sum(r["met"] == v for r in rows) for v in ("yes", "no", "unstable")}
        lines.append("Targets: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    lines.append(f"Full report: {report_path}"
                 + (f" (also {', '.join(str(p) for p in other_paths)})" if other_paths else ""))
    return "\n".join(lines)
