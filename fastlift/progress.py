"""The progress bar on stderr that scans, reports and long `deeplift` calls print."""

from __future__ import annotations

import sys
import time


def format_eta(seconds: float) -> str:
    """Time left as ``HH:MM:SS``, with days in front past 24 h (``2d 01:00:00``); ``?`` when unknown
    or beyond a year (a rate measured over too little work)."""
    if not seconds < 365 * 86400:  # (also nan, inf)
        return "?"
    days, rest = divmod(round(seconds), 86400)
    clock = f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock


class Progress:
    """``done/total`` items, rate and time left on stderr: redrawn in place on a terminal, a line
    every 10 s in a log file. ``start`` items were done before (a resume): the rate counts
    only the items done here."""

    def __init__(self, total: int, start: int = 0, unit: str = "regions"):
        self.total, self.start, self.unit, self.t0 = max(total, 1), start, unit, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if not self.tty and now - self.last < 10 and done < self.total:
            return  # a log file gets a line every 10 s, not every chunk
        self.last = now
        rate = (done - self.start) / max(now - self.t0, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        bar = "#" * int(30 * done / self.total)
        text = f"[{bar:<30}] {done}/{self.total} {self.unit}  {rate:.1f}/s  ETA {format_eta(left)}"
        sys.stderr.write(("\r" + text) if self.tty else (text + "\n"))
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
