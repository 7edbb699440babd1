"""Read a speech file of any common format into mono float32 PCM.

Decoding goes through PyAV (FFmpeg), so wav, flac, mp3, ogg/vorbis, ogg/opus, m4a/aac and
the audio track of a video file all work, at any sample rate and channel count. Channels are
averaged (not summed), so the result stays in ``[-1, 1]``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np

from vcam.runtime.errors import InputError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""Rate of the audio the motion graph reads, in Hz."""

MIN_SECONDS = 0.1
"""Shorter recordings are rejected as empty."""

_FORMATS = "wav, flac, mp3, ogg or m4a"


def load_audio(path: str | Path, *, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``path`` to mono PCM at ``rate`` Hz.

    Returns ``(n,) float32`` in ``[-1, 1]``, ``n >= MIN_SECONDS * rate``.
    Use ``rate=48000`` to keep the full bandwidth for muxing into a video.

    Raises ``InputError`` naming the file when it is missing, not audio, has no audio
    stream, or holds less than ``MIN_SECONDS`` of sound.
    """
    path = _existing(path)
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.audio:
                raise InputError(f"{path} has no audio stream: give a {_FORMATS} file")
            stream = container.streams.audio[0]
            # Keep the source layout and average channels ourselves: FFmpeg's stereo->mono
            # downmix scales by 1/sqrt(2) per channel and can exceed 1.0.
            resampler = av.AudioResampler(format="fltp", layout=None, rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(_mono(out.to_ndarray()))
            for out in resampler.resample(None):
                chunks.append(_mono(out.to_ndarray()))
    except InputError:
        raise
    except (av.FFmpegError, ValueError, OSError) as e:
        raise InputError(f"cannot read audio from {path}: {_one_line(e)}; give a {_FORMATS} file") from e
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if pcm.size < MIN_SECONDS * rate:
        raise InputError(
            f"audio file {path} is empty ({pcm.size / rate:.2f} s of sound, need at least {MIN_SECONDS} s)"
        )
    np.clip(pcm, -1.0, 1.0, out=pcm)
    log.debug("audio %s: %.2f s at %d Hz", path, pcm.size / rate, rate)
    return pcm


def write_wav(path: str | Path, pcm: np.ndarray, *, rate: int = SAMPLE_RATE) -> None:
    """Write ``(n,) float`` mono PCM in ``[-1, 1]`` as a 16-bit WAV file at ``rate`` Hz."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def check_audio(path: str | Path) -> None:
    """Cheap early check that ``path`` exists and has an audio stream (reads headers only).

    Raises the same ``InputError``s as ``load_audio`` for a missing file, a file that is not
    audio, or one without an audio stream; an empty stream is found only by ``load_audio``.
    """
    path = _existing(path)
    try:
        with av.open(str(path), mode="r") as container:
            has_audio = bool(container.streams.audio)
    except (av.FFmpegError, ValueError, OSError) as e:
        raise InputError(f"cannot read audio from {path}: {_one_line(e)}; give a {_FORMATS} file") from e
    if not has_audio:
        raise InputError(f"{path} has no audio stream: give a {_FORMATS} file")


def resample(pcm: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    """Resample mono PCM ``(n,) float32`` at ``rate`` Hz to ``(m,) float32`` at ``to_rate`` Hz."""
    pcm = np.ascontiguousarray(pcm, dtype=np.float32)
    if rate == to_rate:
        return pcm.copy()
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_rate)
    frame = av.AudioFrame.from_ndarray(pcm[None, :], format="flt", layout="mono")
    frame.sample_rate = rate
    frames = resampler.resample(frame) + resampler.resample(None)
    if not frames:
        return np.zeros(0, np.float32)
    return np.concatenate([f.to_ndarray()[0] for f in frames])


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"audio not found: {path}")
    if path.is_dir():
        raise InputError(f"cannot read audio from {path}: it is a directory, give a {_FORMATS} file")
    return path


def _mono(planes: np.ndarray) -> np.ndarray:
    """``(channels, n) float32`` planar samples -> ``(n,) float32``, the channel mean."""
    if planes.shape[0] == 1:
        return planes[0].astype(np.float32, copy=True)
    return planes.mean(axis=0, dtype=np.float32)


def _one_line(e: BaseException) -> str:
    # FFmpegError's str() repeats the errno and file name; strerror alone says what went wrong.
    text = " ".join(str(getattr(e, "strerror", None) or e).split())
    return text or type(e).__name__
