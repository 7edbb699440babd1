"""Offline render: photo + speech file -> talking-portrait MP4 (and optional motion CSV).

This is the real-time engine run from a file: the same streaming features, motion graph
and render graph as the live daemon, stepped one video frame at a time.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np

from vcam.runtime.channels import MOTION
from vcam.runtime.stats import StageTimer

STAGES = ("enroll", "features", "motion", "render", "encode")


def motion_csv_header() -> str:
    """``time_s`` then every motion channel (blendshapes 0..1, head angles in degrees)."""
    return ",".join(("time_s",) + MOTION)


def frame_count(pcm16: np.ndarray, fps: int) -> int:
    """Video frames for speech ``(n,) float32`` at 16 kHz: ``ceil(duration * fps)``, at least 1."""
    return max(1, math.ceil(pcm16.shape[0] / 16000.0 * fps - 1e-9))


class FileWindows:
    """A whole file's log-mel frames, cut into the windows the live stream would give.

    ``mel``: ``(T, n_mels) float32`` (``vcam.runtime.features.log_mel``); ``width``: frames per
    window. Rows before the start and past the end read as silence (the features' floor).
    """

    def __init__(self, mel: np.ndarray, width: int) -> None:
        from vcam.runtime.features import FLOOR

        self._width = width
        self._padded = np.full((width + mel.shape[0] + width, mel.shape[1]), FLOOR, np.float32)
        self._padded[width:width + mel.shape[0]] = mel  # mel frame k is row k + width
        self._last_start = self._padded.shape[0] - width

    def fill(self, end_frame: int, out: np.ndarray) -> np.ndarray:
        """Write the window ending at mel frame ``end_frame`` into ``out`` ``(n_mels, width)``."""
        start = min(max(end_frame + 1, 0), self._last_start)
        out[...] = self._padded[start:start + self._width].T
        return out


def motion_track(pcm16: np.ndarray, *, fps: int, seed: int = 0, provider: str = "cpu", graph_dir=None) -> np.ndarray:
    """The motion graph alone over speech ``(n,) float32`` at 16 kHz, neutral emotion, stepped as
    :func:`render_file` steps it: ``(ceil(duration * fps), N_MOTION) float32``, one row per frame."""
    from vcam.runtime.channels import N_BLENDSHAPES, N_MOTION
    from vcam.runtime.features import log_mel
    from vcam.runtime.motion import MotionStage

    n_frames = frame_count(pcm16, fps)
    out = np.zeros((n_frames, N_MOTION), np.float32)
    neutral = np.zeros(N_BLENDSHAPES, np.float32)
    with MotionStage(fps=fps, seed=seed, provider=provider, graph_dir=graph_dir) as stage:
        window = stage.mel_buffer
        windows = FileWindows(log_mel(pcm16), window.shape[1])
        for i in range(n_frames):
            windows.fill(stage.frame_window_end((i + 0.5) / fps), window)
            out[i] = stage.step(window, neutral, 1.0 / fps)
    return out


def render_file(photo, audio, out, *, settings, emotion: str, intensity: float, fps: int, seed: int,
                motion_csv=None, provider: str = "auto", progress=None, timer: StageTimer | None = None) -> int:
    """Render ``photo`` speaking ``audio`` into the MP4 ``out``; returns the frame count.

    ``ceil(duration * fps)`` frames at 512x512, the speech muxed in. ``motion_csv``, when
    given, receives one row per frame (see :func:`motion_csv_header`). Nothing is left at
    ``out`` or ``motion_csv`` unless the whole render succeeds.
    """
    import time

    from vcam.runtime.emotion import EmotionMixer, load_emotion_presets
    from vcam.runtime.features import log_mel
    from vcam.runtime.motion import MotionStage
    from vcam.runtime.render import RenderStage
    from vcam.runtime.audio_file import load_audio
    from vcam.provenance.badge import make_badge
    from vcam.provenance.credentials import content_credentials
    from vcam.avatar.build import load_avatar
    from vcam.sinks.mp4 import Mp4Sink
    from vcam.sinks.threaded import ThreadedSink

    timer = timer or StageTimer(STAGES)
    threads = settings.engine.threads
    t0 = time.perf_counter_ns()
    avatar = load_avatar(photo, face_width_frac=settings.enroll.face_width_frac)
    timer.add("enroll", time.perf_counter_ns() - t0)

    pcm16 = load_audio(audio)
    pcm48 = load_audio(audio, rate=48000)
    t0 = time.perf_counter_ns()
    mel = log_mel(pcm16)  # (T, n_mels) float32, causal: identical to the live stream
    timer.add("features", time.perf_counter_ns() - t0)
    n_frames = frame_count(pcm16, fps)

    mixer = EmotionMixer(load_emotion_presets(), fade_s=settings.emotion.crossfade_ms / 1000.0)
    mixer.set(emotion, intensity)
    mixer.advance(10.0)  # start fully in the chosen emotion

    csv_tmp = None
    rows = np.zeros((n_frames, 1 + len(MOTION)), np.float32) if motion_csv else None
    with MotionStage(fps=fps, seed=seed, provider=provider, threads=threads,
                     head_motion=settings.motion.scale) as motion_stage, \
            RenderStage(avatar, provider=provider, threads=threads, badge=make_badge(settings)) as render_stage, \
            ThreadedSink(Mp4Sink(out, fps=fps, audio=pcm48, audio_rate=48000, crf=settings.render.crf,
                                 preset=settings.render.preset, sign=content_credentials(out))) as sink:
        window = motion_stage.mel_buffer  # (n_mels, W) float32, bound to the graph
        windows = FileWindows(mel, window.shape[1])
        if progress is not None:
            progress.update(0, n_frames)
        dt = 1.0 / fps
        for i in range(n_frames):
            t_s = (i + 0.5) * dt  # the middle of the frame's display interval
            t0 = time.perf_counter_ns()
            windows.fill(motion_stage.frame_window_end(t_s), window)
            motion = motion_stage.step(window, mixer.advance(dt), dt)
            t1 = time.perf_counter_ns()
            frame = render_stage.render(motion)
            t2 = time.perf_counter_ns()
            sink.write(frame)
            t3 = time.perf_counter_ns()
            timer.add("motion", t1 - t0)
            timer.add("render", t2 - t1)
            timer.add("encode", t3 - t2)
            if rows is not None:
                rows[i, 0] = t_s
                rows[i, 1:] = motion
            if progress is not None:
                progress.update(i + 1, n_frames)
        if motion_csv:
            csv_path = Path(motion_csv)
            fd, csv_tmp = tempfile.mkstemp(prefix=".vcam-", suffix=".csv", dir=csv_path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(motion_csv_header() + "\n")
                    np.savetxt(f, rows, delimiter=",", fmt="%.5g")
            except BaseException:
                os.unlink(csv_tmp)
                raise
    if csv_tmp is not None:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(csv_tmp, 0o666 & ~umask)
        os.replace(csv_tmp, motion_csv)
    return n_frames
