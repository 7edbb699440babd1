"""Read a picture or a video as the luma the watermark detector looks at.

A video's frames are averaged: the mark is the same in every frame and adds up, while the
moving face and the codec's noise average out. At most :data:`MAX_FRAMES` frames are used,
spread over the whole video; a long one is read from its keyframes only, so checking it costs
little more than demuxing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcam.runtime.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".y4m", ".avi", ".m4v")
#: Frames averaged from one video, at most.
MAX_FRAMES = 200
#: A long video is read from its keyframes alone when it has at least this many.
KEYFRAMES_ENOUGH = 8


@dataclass(frozen=True, slots=True)
class LumaImage:
    """``luma`` ``(H, W) float64`` 0..255 (a video's: its frames' mean); ``kind`` "image" or
    "video"; ``frames`` averaged."""

    luma: np.ndarray
    kind: str
    frames: int


def read_luma(path: str | Path) -> LumaImage:
    """Read ``path`` (any picture Pillow opens, any video PyAV opens) as luma.

    Raises ``InputError`` naming the file when it is missing, a folder, or neither."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"not a picture or video: {path} (it is a folder)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _read_image(path)
    try:
        return _read_video(path)
    except InputError:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            raise
        return _read_image(path)


def _read_image(path: Path) -> LumaImage:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            luma = np.asarray(image.convert("L"), np.float64)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise _unreadable(path, e) from None
    return LumaImage(luma, "image", 1)


def _unreadable(path: Path, why: BaseException) -> InputError:
    return InputError(f"cannot read {path} as a picture or video ({getattr(why, 'strerror', None) or why}); "
                      "give a video (mp4, mkv, webm, mov, y4m) or a picture (png, jpg, webp)")


def _read_video(path: Path) -> LumaImage:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise _unreadable(path, e) from None
    with container:
        if not container.streams.video:
            raise InputError(f"no video in {path}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        total = stream.frames or 0
        if not total and stream.duration and stream.average_rate:
            total = int(stream.duration * stream.time_base * stream.average_rate)
        if total > 4 * MAX_FRAMES:
            # A long video: its keyframes only (the demuxer still reads every packet, the
            # decoder only these), the encoder's best-kept frames.
            acc, used = _average(container, stream, 1, keyframes_only=True)
            if used >= KEYFRAMES_ENOUGH:
                return LumaImage(acc / used, "video", used)
            container.seek(0)
        step = max(1, -(-total // MAX_FRAMES)) if total else 1
        acc, used = _average(container, stream, step)
        if not used:
            raise InputError(f"no frames in {path}")
    return LumaImage(acc / used, "video", used)


def _average(container, stream, step: int, *, keyframes_only: bool = False):
    """``(sum of luma, frames summed)`` over every ``step``-th frame (at most :data:`MAX_FRAMES`)."""
    import av

    stream.codec_context.skip_frame = "NONKEY" if keyframes_only else "DEFAULT"
    acc = None
    used = seen = 0
    try:
        for frame in container.decode(stream):
            seen += 1
            if used >= MAX_FRAMES:
                break
            if (seen - 1) % step:
                continue
            y = frame.to_ndarray(format="gray")
            if acc is None:
                acc = np.zeros(y.shape, np.float64)
            if y.shape != acc.shape:
                continue  # a mid-stream size change: keep the first size
            acc += y
            used += 1
    except av.error.FFmpegError:
        if not used:
            raise InputError(f"cannot decode the video in {container.name}") from None
    return acc, used
