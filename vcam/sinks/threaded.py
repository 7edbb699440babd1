"""ThreadedSink: hands frames to another sink on a worker thread, so encoding overlaps rendering.

For files (MP4, Y4M), where every frame must arrive: when both slots are full, ``write``
waits for the worker (back-pressure, nothing dropped). Frames are copied into ``slots``
preallocated buffers; nothing is allocated per frame.
"""

from __future__ import annotations

import queue
import threading

import numpy as np


class ThreadedSink:
    """Wrap ``sink`` (anything with ``write(frame)`` and ``close()``); a context manager.

    ``write(frame)`` copies the ``(512, 512, 3) uint8`` frame into a free slot and returns;
    the worker writes it to ``sink`` in order. An exception raised by ``sink`` on the worker
    is raised again by the next ``write`` or by ``close``. ``close()`` drains, closes ``sink``
    and is idempotent; ``abort()`` stops without draining and calls ``sink.abort()`` if it has one.
    """

    def __init__(self, sink, *, shape=(512, 512, 3), slots: int = 2) -> None:
        self._sink = sink
        self._buffers = [np.zeros(shape, np.uint8) for _ in range(slots)]
        self._free: queue.Queue[int] = queue.Queue(maxsize=slots)
        self._full: queue.Queue[int | None] = queue.Queue(maxsize=slots + 1)
        for i in range(slots):
            self._free.put(i)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="vcam-sink-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            i = self._full.get()
            if i is None:
                return
            try:
                if self._error is None:
                    self._sink.write(self._buffers[i])
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                self._error = e
            finally:
                self._free.put(i)

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def write(self, frame: np.ndarray) -> None:
        """Queue one frame (copied); waits while both slots are in use."""
        self._raise()
        i = self._free.get()
        np.copyto(self._buffers[i], frame)
        self._full.put(i)

    def close(self) -> None:
        """Write what is queued, stop the worker, close the wrapped sink. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._full.put(None)
        self._thread.join()
        if self._error is not None:
            self.abort_inner()
            self._raise()
        self._sink.close()

    def abort_inner(self) -> None:
        abort = getattr(self._sink, "abort", None)
        if abort is not None:
            abort()
        else:
            self._sink.close()

    def abort(self) -> None:
        """Stop without writing what is queued; the wrapped sink is aborted."""
        if self._closed:
            return
        self._closed = True
        self._error = self._error or RuntimeError("aborted")
        self._full.put(None)
        self._thread.join()
        self._error = None
        self.abort_inner()

    def __enter__(self) -> ThreadedSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()
