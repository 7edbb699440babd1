"""MP4 file sink: H.264 video (libx264) plus AAC audio, written all-or-nothing.

Frames are encoded as they arrive; the audio track is given up front and muxed alongside the
video, so packets interleave. Everything goes to a hidden temporary file next to the target,
renamed into place by a successful ``close()``; ``abort()`` (or an exception inside the
``with`` block) deletes it, so a failed render leaves nothing behind. A ``sign`` step, when
given, turns the finished file into a signed copy before the rename (Content Credentials).
"""

from __future__ import annotations

import logging
import numbers
import os
import secrets
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vcam.runtime.errors import InputError
from vcam.sinks.yuv import I420Converter

log = logging.getLogger(__name__)

AUDIO_RATE = 48000
"""AAC sample rate in Hz; audio of any other rate is resampled to it."""

AUDIO_BITRATE = 96_000
"""AAC bit rate for the mono speech track, in bit/s."""

# H.264 VUI "matrix_coefficients" 6 (SMPTE 170M = BT.601), as vcam.sinks.yuv converts.
_COLORSPACE_BT601 = 6
_COLOR_RANGE_LIMITED = 1


#: Seconds between key frames of a rendered MP4.
KEYFRAME_S = 30


class Mp4Sink:
    """Encodes ``(height, width, 3) uint8`` RGB frames to an H.264 + AAC MP4 at ``path``.

    Frame ``i`` gets ``pts = i`` in time base ``1/fps``, so the file holds exactly the frames
    written, at a constant rate. ``audio`` is ``(n,) float32`` mono in ``[-1, 1]`` at
    ``audio_rate`` Hz, muxed in full (the file lasts as long as the longer track), or
    ``None`` for a silent video. ``sign(src, dst)``, when given, writes a signed copy of the
    finished file ``src`` to ``dst`` (see ``vcam.provenance.credentials.sign_mp4``); a failure
    there fails :meth:`close` and leaves nothing at ``path``.

    Use as a context manager; ``close()`` is idempotent.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: int,
        width: int = 512,
        height: int = 512,
        audio: np.ndarray | None = None,
        audio_rate: int = 16000,
        crf: int = 18,
        preset: str = "veryfast",
        sign: Callable[[Path, Path], None] | None = None,
    ) -> None:
        self.path = Path(path)
        if not isinstance(fps, numbers.Integral) or fps <= 0:
            raise ValueError(f"fps must be a positive integer, got {fps!r}")
        fps = int(fps)
        self.fps = fps
        self.frames_written = 0
        self._closed = False
        self._convert = I420Converter(width, height)
        self._audio = _prepare_audio(audio, audio_rate)
        self._audio_pos = 0  # samples of self._audio already sent to the encoder
        self._sign = sign

        parent = self.path.parent
        if not parent.is_dir():
            raise InputError(f"cannot write {self.path}: directory {parent} does not exist")
        # Hidden, unique, same directory (so the final rename is atomic); created by FFmpeg,
        # so it gets the usual umask permissions.
        self._tmp = parent / f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}.part"
        try:
            self._container = av.open(
                str(self._tmp), mode="w", format="mp4", options={"movflags": "+faststart"}
            )
        except (av.FFmpegError, OSError) as e:
            self._tmp.unlink(missing_ok=True)
            raise InputError(f"cannot write {self.path}: {getattr(e, 'strerror', None) or e}") from e
        try:
            self._video = self._add_video(width, height, crf, preset)
            self._audio_stream = None
            if self._audio is not None:
                self._audio_stream = self._container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
                self._audio_stream.bit_rate = AUDIO_BITRATE
                self._audio_stream.codec_context.time_base = Fraction(1, AUDIO_RATE)
            # One frame wrapping the converter's buffer: each write() refills it in place.
            planes = self._convert.buffer.reshape(height * 3 // 2, width)
            self._frame = av.VideoFrame.from_numpy_buffer(planes, format="yuv420p")
            self._frame.time_base = Fraction(1, fps)
        except BaseException:
            self.abort()
            raise

    def _add_video(self, width: int, height: int, crf: int, preset: str) -> av.VideoStream:
        stream = self._container.add_stream(
            "libx264",
            rate=self.fps,
            # A key frame every 30 s instead of x264's 10 s: a portrait's background is still,
            # and each key frame codes it afresh, so it visibly pumps (and sharp edges flicker)
            # every 10 s; a talking-head clip seeks well enough with fewer.
            options={"crf": str(crf), "preset": preset,
                     "x264-params": f"chromaloc=1:keyint={KEYFRAME_S * self.fps}"},
        )
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        cc = stream.codec_context
        cc.time_base = Fraction(1, self.fps)
        cc.colorspace = _COLORSPACE_BT601
        cc.color_range = _COLOR_RANGE_LIMITED
        cc.thread_count = 0  # libx264 picks (about 1.5 x cores)
        cc.thread_type = "FRAME"  # frame threads: best throughput for a file
        return stream

    def __enter__(self) -> Mp4Sink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Encode one ``(height, width, 3) uint8`` RGB frame; the sink keeps no reference."""
        if self._closed:
            raise ValueError(f"write to closed Mp4Sink for {self.path}")
        self._convert.convert(frame)
        self._frame.pts = self.frames_written
        self._mux(self._video.encode(self._frame))
        self.frames_written += 1
        if self._audio is not None:  # keep audio level with the video written so far
            self._send_audio(self.frames_written * AUDIO_RATE // self.fps)

    def close(self) -> None:
        """Flush both encoders, finish the file and move it to ``path``. Idempotent."""
        if self._closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"no frames were written; {self.path} not created")
        try:
            if self._audio is not None:
                self._send_audio(self._audio.size)
                self._mux(self._audio_stream.encode(None))
            self._mux(self._video.encode(None))
            self._container.close()
            if self._sign is not None:
                signed = self._tmp.with_name(self._tmp.name + ".signed")
                try:
                    self._sign(self._tmp, signed)
                    os.replace(signed, self._tmp)
                finally:
                    signed.unlink(missing_ok=True)
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        log.debug("wrote %s: %d frames at %d fps", self.path, self.frames_written, self.fps)

    def abort(self) -> None:
        """Stop without creating ``path``; the temporary file is deleted. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.close()
        except Exception as e:  # the file is being thrown away; the first error matters
            log.debug("closing aborted %s: %s", self._tmp, e)
        finally:
            self._tmp.unlink(missing_ok=True)

    def _send_audio(self, until: int) -> None:
        until = min(until, self._audio.size)
        if until <= self._audio_pos:
            return
        chunk = av.AudioFrame.from_ndarray(
            self._audio[None, self._audio_pos : until], format="flt", layout="mono"
        )
        chunk.sample_rate = AUDIO_RATE
        chunk.pts = self._audio_pos
        chunk.time_base = Fraction(1, AUDIO_RATE)
        self._audio_pos = until
        self._mux(self._audio_stream.encode(chunk))

    def _mux(self, packets) -> None:
        for packet in packets:
            self._container.mux(packet)


def _prepare_audio(audio: np.ndarray | None, rate: int) -> np.ndarray | None:
    """``(n,) float32`` at ``rate`` -> ``(m,) float32`` at ``AUDIO_RATE``, or ``None``."""
    if audio is None:
        return None
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.dtype != np.float32:
        raise ValueError(f"audio must be (n,) float32 mono, got {audio.shape} {audio.dtype}")
    if audio.size == 0:
        return None
    from vcam.runtime.audio_file import resample

    return np.ascontiguousarray(resample(audio, rate, AUDIO_RATE))
