"""MotionStage: the motion graph, stepped once per video frame.

Per step the caller fills a log-mel window (``vcam.runtime.features.LogMelStream.window``) ending at
:meth:`MotionStage.frame_window_end` of the frame's time, and passes the current emotion
offsets (``vcam.runtime.emotion.EmotionMixer.current``). :meth:`MotionStage.step` returns the
``(43,) float32`` motion vector (``vcam.runtime.channels.MOTION`` order) in a buffer that is reused
at the next step. Nothing is allocated per step.
"""

from __future__ import annotations

import math

import numpy as np

from vcam.runtime.channels import N_BLENDSHAPES, N_MOTION
from vcam.runtime.errors import GraphError
from vcam.runtime.graph import OnnxGraph


#: The largest head-motion scale (``[motion] scale``): twice a calm speaker's range.
HEAD_MOTION_MAX = 2.0


def frame_window_end(t_s: float, lookahead_ms: float, hop_s: float = 0.01) -> int:
    """Index of the last mel frame the graph may see for a video frame shown at ``t_s`` seconds.

    Frame ``k`` covers audio up to ``(k + 1) * hop_s``; the result is the newest frame that
    ends at or before ``t_s + lookahead``. (May be negative early on; the window then reads as
    silence.)
    """
    return int(math.floor((t_s + lookahead_ms / 1000.0) / hop_s + 1e-6)) - 1


class MotionStage:
    """The ONNX motion graph with its state, noise and I/O buffers.

    Parameters
    ----------
    fps:
        Video frame rate; sets the default ``dt`` of :meth:`step`.
    seed:
        Seed of the noise generator (blinks, saccades, sway); ``None`` draws one from the OS.
    provider, threads, copy_inputs:
        As :class:`vcam.runtime.graph.OnnxGraph`.

    A context manager; :meth:`close` is idempotent.
    """

    def __init__(self, *, fps: float, seed: int | None, provider: str = "auto", threads: int = 0,
                 graph_dir=None, copy_inputs: bool | None = None, head_motion: float = 1.0) -> None:
        if not fps > 0:
            raise GraphError(f"motion stage: fps must be > 0, got {fps}")
        self.fps = float(fps)
        # "auto" is the CPU: the graph is hundreds of tiny kernels, launch-bound on a GPU (H200:
        # 2.6 ms a frame through CUDA, 0.54 ms on that machine's CPU). "cuda" still forces it.
        if provider == "auto":
            provider = "cpu"
        self._graph = OnnxGraph("motion", provider=provider, threads=threads, graph_dir=graph_dir,
                                copy_inputs=copy_inputs)
        meta = self._graph.meta
        try:
            self.n_mels = int(meta["n_mels"])
            self._window = int(meta["window_frames"])
            self._lookahead_ms = float(meta["lookahead_ms"])
            state_size = int(meta["state_size"])
            noise_size = int(meta["noise_size"])
            self._hop_s = int(meta["hop"]) / int(meta["sample_rate"])
        except KeyError as e:
            raise GraphError(f"motion graph manifest meta lacks {e.args[0]!r}; re-run the export") from None
        self._mel = np.zeros((1, self.n_mels, self._window), np.float32)
        self._mel0 = self._mel[0]
        self._emotion = np.zeros((1, N_BLENDSHAPES), np.float32)
        self._state = np.zeros((1, state_size), np.float32)
        self._noise = np.zeros((1, noise_size), np.float32)
        self._dt = np.full((1, 1), 1.0 / self.fps, np.float32)
        for name, buf in (("mel", self._mel), ("emotion", self._emotion), ("state", self._state),
                          ("noise", self._noise), ("dt", self._dt)):
            self._graph.bind_input(name, buf)
        self._motion_out = self._graph.output("motion")
        self._state_out = self._graph.output("state_out")
        if self._motion_out.shape != (1, N_MOTION):
            raise GraphError(f"motion graph output is {self._motion_out.shape}, expected (1, {N_MOTION})")
        self._motion = self._motion_out[0]
        self._pose = self._motion[N_BLENDSHAPES:]  # yaw, pitch, roll (deg), headX, headY (px), headZ
        self.head_motion = head_motion
        self._rng = np.random.default_rng(seed)
        self._closed = False

    @property
    def head_motion(self) -> float:
        """How much the head moves: 0 still, 1 as the graph makes it (a speaker's range), up to
        :data:`HEAD_MOTION_MAX` (lively). Scales the pose the graph outputs (yaw, pitch, roll,
        sway); its dynamics, in the state, are untouched, so a change is smooth."""
        return self._head_motion

    @head_motion.setter
    def head_motion(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= HEAD_MOTION_MAX:
            raise GraphError(f"motion stage: head motion must be 0..{HEAD_MOTION_MAX:g}, got {value!r}")
        self._head_motion = value

    @property
    def window_frames(self) -> int:
        """Mel frames per window ``W`` (the graph's ``mel`` input is ``(1, n_mels, W)``)."""
        return self._window

    @property
    def lookahead_ms(self) -> float:
        """How far past a video frame's time the graph listens (ms)."""
        return self._lookahead_ms

    @property
    def provider(self) -> str:
        return self._graph.provider

    @property
    def mel_buffer(self) -> np.ndarray:
        """The bound ``(n_mels, W) float32`` window: fill it in place and call :meth:`step` with it."""
        return self._mel0

    def frame_window_end(self, t_s: float) -> int:
        """Last mel frame index for a video frame shown at ``t_s`` (see :func:`frame_window_end`)."""
        return frame_window_end(t_s, self._lookahead_ms, self._hop_s)

    def reset(self, seed: int | None = None) -> None:
        """Back to the initial state (mouth closed, head centred); reseed the noise generator."""
        self._state[:] = 0.0
        self._motion[:] = 0.0
        self._rng = np.random.default_rng(seed)

    def step(self, mel_window: np.ndarray, emotion: np.ndarray, dt_s: float | None = None) -> np.ndarray:
        """One video frame.

        Parameters
        ----------
        mel_window:
            ``(n_mels, W) float32`` features ending at ``frame_window_end(t)``.
        emotion:
            ``(37,) float32`` blendshape offsets.
        dt_s:
            Seconds since the previous step (default ``1 / fps``).

        Returns
        -------
        ``(43,) float32`` motion vector, a view that the next step overwrites.
        """
        if self._closed:
            raise GraphError("motion stage is closed")
        mel = self._mel0
        if mel_window is not mel:
            if mel_window.shape != mel.shape:
                raise GraphError(f"motion stage: mel window must be {mel.shape} float32, got {mel_window.shape}")
            mel[...] = mel_window
        self._emotion[0] = emotion
        self._dt[0, 0] = (1.0 / self.fps) if dt_s is None else dt_s
        self._rng.random(dtype=np.float32, out=self._noise)
        self._graph.run()
        self._state[...] = self._state_out
        if self._head_motion != 1.0:
            self._pose *= self._head_motion
        return self._motion

    @property
    def motion(self) -> np.ndarray:
        """The last motion vector ``(43,) float32`` (same buffer :meth:`step` returns)."""
        return self._motion

    def close(self) -> None:
        """Release the graph. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._graph.close()

    def __enter__(self) -> MotionStage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
