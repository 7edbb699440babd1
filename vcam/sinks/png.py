"""PNG sink: one lossless image per frame, for looking at renders frame by frame.

Frames go to ``DIR/frame_000000.png``, ``DIR/frame_000001.png``, ... Not for real-time
use: PNG compression costs tens of milliseconds per 512x512 frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vcam.runtime.errors import InputError


class PngSink:
    """Writes ``(height, width, 3) uint8`` RGB frames as numbered PNG files into ``directory``.

    The directory is created if missing (its parent must exist). ``fps`` is accepted for a
    uniform sink signature and ignored. Context manager; ``close()`` is idempotent.
    """

    def __init__(self, directory: str | Path, *, fps: int = 25, width: int = 512, height: int = 512) -> None:
        self.directory = Path(directory)
        self.fps = fps
        self.shape = (height, width, 3)
        self.frames_written = 0
        self._closed = False
        if not self.directory.parent.is_dir():
            raise InputError(f"cannot write frames to {self.directory}: {self.directory.parent} does not exist")
        try:
            self.directory.mkdir(exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot write frames to {self.directory}: {e.strerror}") from e

    def __enter__(self) -> PngSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def write(self, frame: np.ndarray) -> None:
        """Save one ``(height, width, 3) uint8`` RGB frame as the next numbered PNG."""
        from PIL import Image

        if self._closed:
            raise ValueError(f"write to closed PngSink for {self.directory}")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            raise TypeError(f"frame must be a uint8 RGB array, got {getattr(frame, 'dtype', type(frame))}")
        if frame.shape != self.shape:
            raise ValueError(f"unexpected frame shape: got {frame.shape}, expected {self.shape}")
        Image.fromarray(frame).save(self.directory / f"frame_{self.frames_written:06d}.png")
        self.frames_written += 1

    def close(self) -> None:
        """Nothing to flush; marks the sink closed. Idempotent."""
        self._closed = True
