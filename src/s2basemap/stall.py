"""A wall-clock guard on a job's reads: a read that makes no progress ends the job.

rasterio 1.4.4's wheels bundle a libcurl that can deadlock inside a read (facts.md,
"rasterio 1.4.4 can hang a fetch for ever"). The thread then blocks in C, where
GDAL's own timeouts and retries never fire, and without a guard the job, its month
and the profile's retries would wait for ever. Each read (one asset opened, or one
strip of one band read) is timed by a thread of its own; once one has run for
`seconds`, the guard hands what was being read to its `on_stall`, which ends the
process: no thread can interrupt another that is blocked in C. rasterio releases the
GIL while GDAL works, so the watching thread runs beside a blocked read.

Code that reads says what it reads with `watched(what)`; it costs nothing while no
guard is active (the package's functions called outside a job).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Self

_active: StallGuard | None = None


class StallGuard:
    """While active (a `with` block), calls `on_stall(what, seconds)` once a read watched
    by `watched` has run for `seconds`; `on_stall` is expected not to return."""

    def __init__(self, seconds: float, on_stall: Callable[[str, float], None]):
        self.seconds = seconds
        self.on_stall = on_stall
        self._reading: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-guard", daemon=True)

    def __enter__(self) -> Self:
        global _active
        _active = self
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        global _active
        _active = None
        self._done.set()
        self._thread.join()

    @contextmanager
    def reading(self, what: str):
        with self._lock:
            self._reading = (what, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                self._reading = None

    def _watch(self) -> None:
        poll = min(1.0, self.seconds / 10)
        while not self._done.wait(poll):
            with self._lock:
                current = self._reading
            if current is not None:
                elapsed = time.monotonic() - current[1]
                if elapsed >= self.seconds:
                    self.on_stall(current[0], elapsed)
                    return


@contextmanager
def watched(what: str):
    """Time the read in this block against the active guard, if any."""
    guard = _active
    if guard is None:
        yield
        return
    with guard.reading(what):
        yield
