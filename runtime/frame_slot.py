"""LatestFrameSlot: hands frames from the engine to one output on that output's own thread.

Two preallocated buffers; the engine never waits. When the output is still busy with the
previous frame, the waiting frame is replaced by the newer one and the replaced one is
counted in :attr:`LatestFrameSlot.dropped`: newest wins, drops are counted, never hidden.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

Consumer = Callable[[np.ndarray, int], None]
"""``consumer(frame, t_ns)``: ``frame`` ``(512, 512, 3) uint8`` (valid only during the call),
``t_ns`` the ``monotonic_ns`` tick the frame was drawn for."""


class LatestFrameSlot:
    """One output's mailbox and worker thread. A context manager; :meth:`close` is idempotent.

    Parameters
    ----------
    consumer:
        Called on the worker thread with each frame it takes. An exception from it is logged
        once per distinct message and counted in :attr:`errors`; the worker keeps going
        (an output that lost its device must not stop the others).
    name:
        For logs and the worker thread's name.
    """

    def __init__(self, consumer: Consumer, *, name: str, shape=(512, 512, 3)) -> None:
        self.name = name
        self._consumer = consumer
        self._bufs = (np.zeros(shape, np.uint8), np.zeros(shape, np.uint8))
        self._t_ns = [0, 0]
        self._cond = threading.Condition()
        self._pending: int | None = None  # buffer index waiting for the worker
        self._busy: int | None = None  # buffer index the worker is writing out
        self._closed = False
        self.offered = 0
        self.written = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_write_ns = 0
        self._thread = threading.Thread(target=self._run, name=f"vcam-out-{name}", daemon=True)
        self._thread.start()

    def offer(self, frame: np.ndarray, t_ns: int) -> None:
        """Copy ``frame`` ``(512, 512, 3) uint8`` in for the worker; never blocks on the output."""
        with self._cond:
            if self._closed:
                return
            i = 0 if self._busy != 0 else 1
            if self._pending is not None:
                self.dropped += 1  # replaced before the output took it
                i = self._pending
            np.copyto(self._bufs[i], frame)
            self._t_ns[i] = t_ns
            self._pending = i
            self.offered += 1
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed and self._pending is None:
                    return
                i = self._pending
                self._pending = None
                self._busy = i
            try:
                self._consumer(self._bufs[i], self._t_ns[i])
                self.written += 1
                self.last_write_ns = time.monotonic_ns()
            except Exception as e:  # noqa: BLE001 - an output failing must not stop the engine
                self.errors += 1
                msg = f"{type(e).__name__}: {e}"
                if msg != self.last_error:
                    log.warning("output %s: %s", self.name, msg)
                self.last_error = msg
            finally:
                with self._cond:
                    self._busy = None

    def close(self, timeout_s: float = 5.0) -> None:
        """Let the worker finish the frame in hand (a waiting one too) and stop. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def __enter__(self) -> LatestFrameSlot:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
