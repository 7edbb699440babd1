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

from runtime.channels import MOTION
from runtime.stats import StageTimer

STAGES = ("enroll", "features", "motion", "render", "encode")


def motion_csv_header() -> str:
    """``time_s`` then every motion channel (blendshapes 0..1, head angles in degrees)."""
    return ",".join(("time_s",) + MOTION)


def render_file(photo, audio, out, *, settings, emotion: str, intensity: float, fps: int, seed: int,
                motion_csv=None, provider: str = "auto", progress=None, timer: StageTimer | None = None) -> int:
    """Render ``photo`` speaking ``audio`` into the MP4 ``out``; returns the frame count.

    ``ceil(duration * fps)`` frames at 512x512, the speech muxed in. ``motion_csv``, when
    given, receives one row per frame (see :func:`motion_csv_header`). Nothing is left at
    ``out`` or ``motion_csv`` unless the whole render succeeds.
    """
    import time

    from runtime.emotion import EmotionMixer, load_emotion_presets
    from runtime.features import FLOOR, log_mel
    from runtime.motion import MotionStage
    from runtime.render import RenderStage
    from vcam.audio_file import load_audio
    from vcam.avatar import load_avatar
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
    duration_s = pcm16.shape[0] / 16000.0
    n_frames = max(1, math.ceil(duration_s * fps - 1e-9))

    mixer = EmotionMixer(load_emotion_presets(), fade_s=settings.emotion.crossfade_ms / 1000.0)
    mixer.set(emotion, intensity)
    mixer.advance(10.0)  # start fully in the chosen emotion

    csv_tmp = None
    rows = np.zeros((n_frames, 1 + len(MOTION)), np.float32) if motion_csv else None
    with MotionStage(fps=fps, seed=seed, provider=provider, threads=threads) as motion_stage, \
            RenderStage(avatar, provider=provider, threads=threads) as render_stage, \
            ThreadedSink(Mp4Sink(out, fps=fps, audio=pcm48, audio_rate=48000, crf=settings.render.crf,
                                 preset=settings.render.preset)) as sink:
        window = motion_stage.mel_buffer  # (n_mels, W) float32, bound to the graph
        n_mels, width = window.shape
        # mel frame k is row k + width; rows before the start and past the end read as silence
        padded = np.full((width + mel.shape[0] + width, n_mels), FLOOR, np.float32)
        padded[width:width + mel.shape[0]] = mel
        last_start = padded.shape[0] - width
        if progress is not None:
            progress.update(0, n_frames)
        dt = 1.0 / fps
        for i in range(n_frames):
            t_s = (i + 0.5) * dt  # the middle of the frame's display interval
            t0 = time.perf_counter_ns()
            start = min(max(motion_stage.frame_window_end(t_s) + 1, 0), last_start)
            window[...] = padded[start:start + width].T
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
