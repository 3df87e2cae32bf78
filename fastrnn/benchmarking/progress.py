"""A small progress bar on stderr: one redrawn line on a terminal, one line per step elsewhere.

Progress is counted in work units of the caller's choosing (the runner uses each case's estimated
cost), so the percentage and the time left track the real work rather than the number of cases.
"""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total: float, stream: Optional[TextIO] = None, width: int = 24,
                 enabled: bool = True):
        self.total = max(float(total), 1e-12)
        self.done = 0.0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last_len = 0

    def _line(self, label: str) -> str:
        frac = min(self.done / self.total, 1.0)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        eta = f" eta {_clock(elapsed / frac * (1 - frac))}" if 0 < frac < 1 else ""
        return f"[{bar}] {100 * frac:3.0f}% {_clock(elapsed)}{eta}  {label}"

    def show(self, label: str) -> None:
        """Say what is running now, without advancing (terminals only)."""
        if not (self.enabled and self.tty):
            return
        line = self._line(label)
        pad = max(self._last_len - len(line), 0)
        self.stream.write("\r" + line + " " * pad)
        self._last_len = len(line)
        self.stream.flush()

    def advance(self, amount: float = 1.0, label: str = "") -> None:
        self.done = min(self.done + amount, self.total)
        if not self.enabled:
            return
        if self.tty:
            self.show(label)
        else:
            self.stream.write(self._line(label) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
