"""AudioRing: a preallocated single-producer ring of mono float32 samples.

The audio callback (PortAudio's thread) calls :meth:`AudioRing.write`, which only copies
into the preallocated buffer and bumps counters. The engine thread calls
:meth:`AudioRing.read_new` once per video frame to take the samples it has not seen yet.
No locks: the writer publishes the total written *after* copying, and the reader checks it
again after copying to detect that the writer lapped it (counted in ``overruns``).
"""

from __future__ import annotations

import time

import numpy as np


class AudioRing:
    """Ring of the newest ``capacity`` samples ``(capacity,) float32`` at ``rate`` Hz.

    Attributes (written by the producer, read anywhere):
      ``written``: total samples ever written; ``last_write_ns``: ``time.monotonic_ns()`` of
      the newest write; ``status_flags``: count of callbacks that reported a status
      (input overflow and the like); ``overruns``: samples the reader lost because it fell
      more than ``capacity`` behind.
    """

    def __init__(self, capacity: int, rate: int) -> None:
        if capacity < 1 or rate < 1:
            raise ValueError(f"capacity and rate must be >= 1, got {capacity}, {rate}")
        self.capacity = int(capacity)
        self.rate = int(rate)
        self._buf = np.zeros(self.capacity, np.float32)
        self.written = 0
        self.last_write_ns = 0
        self.status_flags = 0
        self.overruns = 0
        self._read = 0

    # -- producer (the audio callback) --

    def write(self, block: np.ndarray, status_flag: bool = False) -> None:
        """Copy ``block`` ``(n,)`` or ``(n, channels)`` float32 in; a multi-channel block's first
        channel is taken. Allocation-free; never blocks."""
        if block.ndim == 2:
            block = block[:, 0]
        n = block.shape[0]
        if status_flag:
            self.status_flags += 1
        if n == 0:
            return
        cap = self.capacity
        if n > cap:
            block = block[n - cap:]
            self.written += n - cap
            n = cap
        a = self.written % cap
        k = min(n, cap - a)
        self._buf[a:a + k] = block[:k]
        if k < n:
            self._buf[:n - k] = block[k:]
        self.written += n
        self.last_write_ns = time.monotonic_ns()

    # -- consumers --

    @property
    def buffer(self) -> np.ndarray:
        """The ring's storage ``(capacity,) float32``: sample number ``i`` (counting from the
        first ever written) is at ``i % capacity`` while ``written - capacity <= i < written``.
        For readers with their own position (:class:`vcam.runtime.voice_delay.VoiceDelay`); read only."""
        return self._buf

    @property
    def unread(self) -> int:
        """Samples written but not yet taken by :meth:`read_new` (capped at ``capacity``)."""
        return min(self.written - self._read, self.capacity)

    def read_new(self, out: np.ndarray) -> int:
        """Copy the oldest unread samples into ``out`` ``(m,) float32``; returns how many (``<= m``).

        Samples older than ``capacity`` are lost and counted in ``overruns``.
        """
        written = self.written
        cap = self.capacity
        if written - self._read > cap:
            self.overruns += written - self._read - cap
            self._read = written - cap
        n = min(written - self._read, out.shape[0])
        if n <= 0:
            return 0
        a = self._read % cap
        k = min(n, cap - a)
        out[:k] = self._buf[a:a + k]
        if k < n:
            out[k:n] = self._buf[:n - k]
        # the writer may have lapped us while we copied: drop what it overwrote
        lapped = self.written - cap - self._read
        self._read += n
        if lapped > 0:
            self.overruns += min(lapped, n)
        return n

    def skip_to_newest(self, keep: int = 0) -> None:
        """Forget unread samples except the newest ``keep`` (after a long stall)."""
        self._read = max(self._read, self.written - keep)

    def reset(self) -> None:
        """Forget everything (a new device was opened)."""
        self._buf[:] = 0.0
        self.written = 0
        self._read = 0
        self.last_write_ns = 0
