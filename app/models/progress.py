"""Download progress: a tqdm bar for a person, log lines (and a callback) for a replica.

Both take `advance(n)` from many transfer threads at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger("ray.serve.tierserve.models")


class Progress(Protocol):
    def start(self, what: str, total: int, done: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    def start(self, what: str, total: int, done: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class TqdmProgress:
    """A bar on stderr, in bytes (tqdm's own thread-safe counter)."""

    def __init__(self) -> None:
        self._bar = None

    def start(self, what: str, total: int, done: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=what, dynamic_ncols=True)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class LogProgress:
    """One log line every `every_s` seconds (and at the end) with percent, MB/s and ETA.

    `on_update(done, total)` is called with each line too, e.g. to set a metric.
    """

    def __init__(self, log: logging.Logger = logger, every_s: float = 5.0,
                 on_update: Callable[[int, int], None] | None = None) -> None:
        self._log, self._every, self._on_update = log, every_s, on_update
        self._lock = threading.Lock()
        self._what, self._total, self._done, self._fetched = "", 0, 0, 0
        self._t0 = self._last = 0.0

    def start(self, what: str, total: int, done: int) -> None:
        self._what, self._total, self._done, self._fetched = what, total, done, 0
        self._t0 = self._last = time.monotonic()
        resumed = f", resuming with {done / 1e6:.1f} MB already here" if done else ""
        self._log.info("%s: %.1f MB%s", what, total / 1e6, resumed)
        self._report()

    def advance(self, n: int) -> None:
        with self._lock:
            self._done += n
            self._fetched += n
            now = time.monotonic()
            if now - self._last < self._every:
                return
            self._last = now
        self._line()

    def _line(self) -> None:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        rate = self._fetched / elapsed
        left = (self._total - self._done) / rate if rate else float("inf")
        pct = 100 * self._done / self._total if self._total else 100.0
        self._log.info("%s: %.0f%% (%.1f/%.1f MB) %.1f MB/s, eta %.0fs",
                       self._what, pct, self._done / 1e6, self._total / 1e6, rate / 1e6, left)
        self._report()

    def _report(self) -> None:
        if self._on_update is not None:
            self._on_update(self._done, self._total)

    def close(self) -> None:
        self._line()
