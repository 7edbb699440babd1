"""FrameClock: steady video ticks on ``time.monotonic_ns()``.

Tick ``k`` is due at ``start + k * period``. :meth:`FrameClock.wait` sleeps until the next due
tick and returns its due time. When the caller falls behind by a whole period or more, the
ticks it missed are skipped (counted in :attr:`FrameClock.missed`), never queued: a late
frame is dropped, and the next one is drawn with the newest audio.
"""

from __future__ import annotations

import time


class FrameClock:
    """Ticks at ``fps`` frames per second.

    Attributes
    ----------
    ticks: ticks returned so far. missed: ticks skipped because the loop was late.
    """

    def __init__(self, fps: float) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period_ns = int(round(1e9 / fps))
        self._start_ns: int | None = None
        self._next = 0
        self.ticks = 0
        self.missed = 0

    def wait(self) -> int:
        """Sleep until the next tick; return its due time (``monotonic_ns``)."""
        now = time.monotonic_ns()
        if self._start_ns is None:
            self._start_ns = now
        due = self._start_ns + self._next * self.period_ns
        if now >= due + self.period_ns:  # late by a whole frame or more: skip to the current tick
            behind = (now - due) // self.period_ns
            self.missed += behind
            self._next += behind
            due += behind * self.period_ns
        while now < due:
            time.sleep((due - now) / 1e9)
            now = time.monotonic_ns()
        self._next += 1
        self.ticks += 1
        return due

    def reset(self) -> None:
        """Start counting again from the next :meth:`wait`."""
        self._start_ns = None
        self._next = 0
