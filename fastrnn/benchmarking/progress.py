"""A small progress bar on stderr: one redrawn line on a terminal, one line per step elsewhere.

The bar does not extrapolate from the share of cases done: it asks `time_left()` (the runner's cost
model, cost.py), which predicts from the grid itself and is corrected as cases finish, so the time left
is meaningful from the first case on. Done = elapsed / (elapsed + time left).
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO


def clock(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, time_left: Callable[[], float], stream: Optional[TextIO] = None,
                 width: int = 24, enabled: bool = True, now: Callable[[], float] = time.perf_counter):
        self.time_left = time_left
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.now = now
        self.start = now()
        self._last_len = 0

    def line(self, label: str) -> str:
        elapsed = self.now() - self.start
        left = max(self.time_left(), 0.0)
        frac = elapsed / (elapsed + left) if elapsed + left > 0 else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        return f"[{bar}] {100 * frac:3.0f}% {clock(elapsed)} eta {clock(left)}  {label}"

    def show(self, label: str, step: bool = False) -> None:
        """Say what is running now: redrawn in place on a terminal; elsewhere only when `step`."""
        if not self.enabled or not (self.tty or step):
            return
        text = self.line(label)
        if self.tty:
            pad = max(self._last_len - len(text), 0)
            self.stream.write("\r" + text + " " * pad)
            self._last_len = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
