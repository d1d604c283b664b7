"""The progress of a rebuild: a bar on a TTY, structured log lines otherwise."""

from __future__ import annotations

import time
from typing import Any

import structlog

log = structlog.get_logger("scimledger.rebuild")


def format_progress(label: str, done: int, total: int, elapsed: float, width: int = 28) -> str:
    """One progress-bar line: bar, counts, events/s and ETA."""
    rate = done / elapsed if elapsed > 0 else 0.0
    fraction = min(1.0, done / total) if total else 1.0
    filled = int(fraction * width)
    eta = (total - done) / rate if rate > 0 and total > done else 0.0
    return (f"{label} [{'#' * filled}{'-' * (width - filled)}] {done:,}/{total:,} events "
            f"{rate:,.0f} ev/s ETA {eta:,.0f}s")


class Progress:
    """A progress bar on a TTY, structured log lines (every `every` seconds) otherwise."""

    def __init__(self, label: str, total: int, *, tty: bool, stream: Any = None, every: float = 2.0) -> None:
        self.label = label
        self.total = total
        self.tty = tty
        self.stream = stream
        self.every = every
        self.done = 0
        self.started = time.perf_counter()
        self._last = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last < (0.1 if self.tty else self.every):
            return
        self._last = now
        self._report(now)

    def _report(self, now: float) -> None:
        elapsed = now - self.started
        if self.tty and self.stream is not None:
            self.stream.write("\r" + format_progress(self.label, self.done, self.total, elapsed))
            self.stream.flush()
        else:
            rate = self.done / elapsed if elapsed > 0 else 0.0
            log.info("rebuild.progress", projection=self.label, events=self.done, total=self.total,
                     events_per_s=round(rate), eta_s=round((self.total - self.done) / rate, 1) if rate else None)

    def finish(self) -> float:
        now = time.perf_counter()
        self._report(now)
        if self.tty and self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
        return now - self.started
