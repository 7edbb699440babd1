"""Frame sinks: where rendered ``(512, 512, 3) uint8`` RGB frames go.

``open_sink(spec, ...)`` picks a sink from a user-facing spec:

=================  ==========================================
``mp4:PATH``       H.264 + AAC file (``vcam.sinks.mp4``)
``y4m:PATH``       raw YUV4MPEG2 file or FIFO (``vcam.sinks.y4m``)
``-``              Y4M on standard output
``png:DIR``        numbered PNG files (``vcam.sinks.png``)
``PATH.mp4``       same as ``mp4:PATH.mp4``; ``PATH.y4m`` likewise
=================  ==========================================

More schemes (the virtual camera) are added with ``register_sink``. Sink modules are
imported only when opened.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from vcam.runtime.errors import InputError


class FrameSink(Protocol):
    """Contract every sink keeps.

    ``write(frame)`` takes a ``(height, width, 3) uint8`` RGB frame and keeps no reference to
    it (the caller may reuse the array). ``close()`` finishes the output and is idempotent;
    leaving the ``with`` block calls it (an MP4 is discarded instead if the block raised).
    """

    def write(self, frame: np.ndarray) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> FrameSink: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


SinkOpener = Callable[..., FrameSink]
"""``opener(target: str, *, fps, width, height, audio, audio_rate, **options) -> FrameSink``."""


def _lazy(module: str, cls: str, *, takes_audio: bool = False) -> SinkOpener:
    def opener(target: str, *, audio: np.ndarray | None = None, audio_rate: int = 16000, **kw: Any) -> FrameSink:
        sink_cls = getattr(importlib.import_module(module), cls)
        if takes_audio:
            return sink_cls(target, audio=audio, audio_rate=audio_rate, **kw)
        return sink_cls(target, **kw)  # audio has nowhere to go in this format

    return opener


_SINKS: dict[str, SinkOpener] = {
    "mp4": _lazy("vcam.sinks.mp4", "Mp4Sink", takes_audio=True),
    "y4m": _lazy("vcam.sinks.y4m", "Y4mSink"),
    "png": _lazy("vcam.sinks.png", "PngSink"),
}
_SUFFIXES = {".mp4": "mp4", ".y4m": "y4m"}


def register_sink(scheme: str, opener: SinkOpener) -> None:
    """Make ``open_sink(f"{scheme}:TARGET")`` call ``opener(TARGET, ...)``."""
    _SINKS[scheme] = opener


def open_sink(
    spec: str,
    *,
    fps: int,
    width: int = 512,
    height: int = 512,
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
    **options: Any,
) -> FrameSink:
    """Open the sink ``spec`` names (see the module docstring).

    ``audio`` (``(n,) float32`` mono at ``audio_rate`` Hz) goes into formats that carry
    sound (MP4) and is ignored by the others. ``options`` go to the sink, e.g. ``crf`` and
    ``preset`` for MP4. Raises ``InputError`` for a spec no sink understands.
    """
    scheme, target = _parse(spec)
    return _SINKS[scheme](target, fps=fps, width=width, height=height, audio=audio, audio_rate=audio_rate, **options)


def _parse(spec: str) -> tuple[str, str]:
    if spec == "-":
        return "y4m", "-"
    scheme, sep, target = spec.partition(":")
    # A one-letter scheme is a Windows drive ("C:\\out.mp4"), not a sink name.
    if sep and len(scheme) > 1 and scheme in _SINKS:
        if not target:
            raise InputError(f"output {spec!r} names no target: write {scheme}:PATH")
        return scheme, target
    suffix = Path(spec).suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix], spec
    known = ", ".join(f"{s}:PATH" for s in _SINKS)
    raise InputError(f"unknown output {spec!r}: use {known}, '-' (Y4M to stdout) or a path ending in .mp4 or .y4m")
