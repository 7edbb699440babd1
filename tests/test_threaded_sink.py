"""ThreadedSink: frames arrive in order, errors come back to the caller, abort drains nothing."""

from __future__ import annotations

import numpy as np
import pytest

from vcam.sinks.threaded import ThreadedSink


class ListSink:
    def __init__(self, fail_at: int | None = None) -> None:
        self.frames: list[int] = []
        self.closed = self.aborted = False
        self.fail_at = fail_at

    def write(self, frame: np.ndarray) -> None:
        if self.fail_at is not None and len(self.frames) == self.fail_at:
            raise OSError("disk full")
        self.frames.append(int(frame[0, 0, 0]))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def _frame(i: int) -> np.ndarray:
    return np.full((4, 4, 3), i, np.uint8)


def test_every_frame_in_order_and_buffers_reused():
    inner = ListSink()
    with ThreadedSink(inner, shape=(4, 4, 3)) as sink:
        for i in range(200):
            sink.write(_frame(i % 256))
    assert inner.frames == [i % 256 for i in range(200)]
    assert inner.closed and not inner.aborted


def test_worker_error_reaches_the_caller_and_aborts():
    inner = ListSink(fail_at=3)
    with pytest.raises(OSError, match="disk full"):
        with ThreadedSink(inner, shape=(4, 4, 3)) as sink:
            for i in range(50):
                sink.write(_frame(i))
    assert inner.aborted and not inner.closed


def test_exception_in_the_block_aborts_the_inner_sink():
    inner = ListSink()
    with pytest.raises(KeyError):
        with ThreadedSink(inner, shape=(4, 4, 3)) as sink:
            sink.write(_frame(1))
            raise KeyError("boom")
    assert inner.aborted and not inner.closed


def test_close_is_idempotent():
    inner = ListSink()
    sink = ThreadedSink(inner, shape=(4, 4, 3))
    sink.write(_frame(7))
    sink.close()
    sink.close()
    assert inner.frames == [7] and inner.closed
