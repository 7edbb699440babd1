"""YUV4MPEG2 (``.y4m``) sink: raw 4:2:0 frames to a file or a pipe.

Header: ``YUV4MPEG2 W512 H512 F25:1 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED``. Pixels are BT.601
limited range with 2x2-centred chroma (``C420jpeg``), as ``vcam.sinks.yuv`` converts; FFmpeg
and mpv read the ``XCOLORRANGE`` tag. Each frame is ``FRAME\\n`` and the Y, U, V planes.

``-`` writes to standard output, e.g. ``vcam ... | ffplay -`` or ``| ffmpeg -i - ...``.
"""

from __future__ import annotations

import numbers
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vcam.runtime.errors import InputError
from vcam.sinks.yuv import I420Converter

_FRAME = b"FRAME\n"


class Y4mSink:
    """Writes ``(height, width, 3) uint8`` RGB frames as Y4M to ``target``.

    ``target`` is a path, ``"-"`` for ``sys.stdout.buffer``, or an open binary stream (which
    the sink flushes but does not close). Files are written directly (not via a temporary
    file) so that a FIFO works as a target. Context manager; ``close()`` is idempotent.
    """

    def __init__(
        self,
        target: str | Path | BinaryIO,
        *,
        fps: int,
        width: int = 512,
        height: int = 512,
    ) -> None:
        if not isinstance(fps, numbers.Integral) or fps <= 0:
            raise ValueError(f"fps must be a positive integer, got {fps!r}")
        fps = int(fps)
        self._convert = I420Converter(width, height)
        self.fps = fps
        self.frames_written = 0
        self._closed = False
        self._owns = False
        if target == "-":
            self.name = "<stdout>"
            self._out: BinaryIO = sys.stdout.buffer
        elif isinstance(target, (str, Path)):
            self.name = str(target)
            try:
                self._out = open(target, "wb")  # noqa: SIM115 - closed by close()
            except OSError as e:
                raise InputError(f"cannot write {target}: {e.strerror}") from e
            self._owns = True
        else:
            self.name = getattr(target, "name", repr(target))
            self._out = target
        header = f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED\n"
        try:
            self._out.write(header.encode("ascii"))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Y4mSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def write(self, frame: np.ndarray) -> None:
        """Write one ``(height, width, 3) uint8`` RGB frame (no allocation)."""
        if self._closed:
            raise ValueError(f"write to closed Y4mSink for {self.name}")
        buffer = self._convert.convert(frame)
        self._out.write(_FRAME)
        self._out.write(buffer)  # numpy buffer protocol: no bytes copy
        self.frames_written += 1

    def close(self) -> None:
        """Flush, and close the file if the sink opened it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._out.flush()
        except (BrokenPipeError, ValueError):  # reader gone / stream already closed
            pass
        finally:
            if self._owns:
                self._out.close()
