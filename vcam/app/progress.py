"""A one-line progress bar on stderr: frames done/total, frames per second, time left.

Drawn only when the stream is a terminal, so logs and pipes stay clean. Redraws at most
every ``min_interval_s``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_BAR = 24  # characters


class Progress:
    """Counts frames and draws ``label [####....]  120/241 frames  24.3 fps  ETA 0:05``.

    Call it (or ``update``) with ``(done, total)``; ``total`` may be unknown at first and
    given with any later call. Context manager; ``close()`` ends the line and is idempotent.
    ``enabled=None`` means "if ``stream`` is a TTY".
    """

    def __init__(
        self,
        label: str = "render",
        *,
        total: int | None = None,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval_s: float = 0.1,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self._stream) if enabled is None else enabled
        self._interval_ns = int(min_interval_s * 1e9)
        self._start_ns = time.monotonic_ns()
        self._drawn_ns: int | None = None  # when the line was last drawn
        self._drawn_done = -1  # the count it showed
        self._closed = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def update(self, done: int, total: int | None = None) -> None:
        """Record ``done`` frames of ``total`` (``None``: unchanged) and redraw if due."""
        self.done = done
        if total is not None:
            self.total = total
        if not self.enabled or self._closed:
            return
        now = time.monotonic_ns()
        finished = self.total is not None and done >= self.total
        if self._drawn_ns is None or finished or now - self._drawn_ns >= self._interval_ns:
            self._draw(now)

    __call__ = update

    def advance(self, frames: int = 1) -> None:
        """Add ``frames`` to the count."""
        self.update(self.done + frames)

    def close(self) -> None:
        """Draw the final state and end the line (only if anything was drawn). Idempotent."""
        if self._closed:
            return
        if self.enabled and self._drawn_ns is not None:
            if self._drawn_done != self.done:
                self._draw(time.monotonic_ns())
            self._stream.write("\n")
            self._stream.flush()
        self._closed = True

    def line(self, now_ns: int) -> str:
        """The text of the bar at ``now_ns`` (``time.monotonic_ns()``)."""
        elapsed = max((now_ns - self._start_ns) / 1e9, 1e-9)
        fps = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * _BAR)
            bar = "[" + "#" * filled + "." * (_BAR - filled) + "]"
            width = len(str(self.total))
            counts = f"{self.done:>{width}}/{self.total} frames"
            left = max(self.total - self.done, 0)
            eta = f"ETA {_clock(left / fps)}" if fps > 0 else "ETA --:--"
            return f"{self.label} {bar} {counts}  {fps:5.1f} fps  {eta}"
        return f"{self.label} {self.done} frames  {fps:5.1f} fps  {_clock(elapsed)}"

    def _draw(self, now_ns: int) -> None:
        self._stream.write("\r" + self.line(now_ns) + "\x1b[K")  # \x1b[K: clear rest of line
        self._stream.flush()
        self._drawn_ns = now_ns
        self._drawn_done = self.done


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
