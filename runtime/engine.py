"""LiveEngine: the frame loop of the live webcam.

Once per tick of a :class:`vcam.runtime.clock.FrameClock` the engine thread

1. applies the operations posted since the last frame (emotion, pause, new portrait,
   audio source, outputs): the only place state changes;
2. takes the audio captured since the last tick from the :class:`vcam.runtime.audio_ring.AudioRing`
   (resampled to 16 kHz if the device runs at another rate) into the streaming log-mel
   features; while no audio arrives (device lost, none configured) it feeds silence so
   the face idles instead of freezing;
3. steps the motion graph with the window ending at the newest audio;
4. renders the frame;
5. offers it, with its tick timestamp, to every output's :class:`vcam.runtime.frame_slot.LatestFrameSlot`.

Nothing is allocated per frame: every buffer is made in ``__init__``. A tick that comes late
is skipped, not queued, and counted. A context manager; :meth:`close` is idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vcam.runtime.audio_ring import AudioRing
from vcam.runtime.badge import Badge
from vcam.runtime.clock import FrameClock
from vcam.runtime.emotion import EmotionMixer
from vcam.runtime.errors import GraphError
from vcam.runtime.features import SAMPLE_RATE, LogMelStream
from vcam.runtime.frame_slot import LatestFrameSlot
from vcam.runtime.motion import MotionStage
from vcam.runtime.mouth_rise import MouthRiseMeter
from vcam.runtime.render import AvatarTensors, RenderStage
from vcam.runtime.stats import StageTimer

log = logging.getLogger(__name__)

STAGES = ("audio", "motion", "render", "publish", "frame", "latency")
"""Timed per frame: audio in + features, motion graph, render graph, hand-off to outputs,
the whole frame, and audio->frame latency: from the newest audio sample's arrival to the
frame's hand-off, plus the motion graph's look-ahead (the mouth a frame shows is the one for
the audio that much older than the newest), i.e. what a viewer sees as the face's delay."""

STALL_MS = 120.0
"""No audio for this long (device lost, stalled or none): feed silence, keep time moving."""
BACKLOG_MS = 250.0
"""More unread audio than this at a tick (the engine was held up): skip to the newest."""
KEEP_MS = 100.0
"""How much of a skipped backlog is still fed."""
_MAX_DT_S = 0.2


class LiveEngine:
    """The live frame loop on its own thread.

    Parameters
    ----------
    avatar:
        The portrait's tensors (``vcam.avatar.build.load_avatar``).
    fps:
        Output frame rate.
    presets:
        ``{emotion: (37,) float32}`` from ``vcam.runtime.emotion.load_emotion_presets``.
    emotion, intensity, fade_s:
        Starting expression and the cross-fade time.
    motion_scale:
        How much the head moves, 0 (still) .. 2 (lively); 1 is a speaker's range (see
        :attr:`vcam.runtime.motion.MotionStage.head_motion`).
    provider, threads, seed, badge:
        As :class:`vcam.runtime.motion.MotionStage` / :class:`vcam.runtime.render.RenderStage` (every
        frame carries the invisible watermark; ``badge`` adds the visible "AI" label).

    Thread-safe controls (applied between frames): :meth:`set_audio`, :meth:`set_emotion`,
    :meth:`set_intensity`, :meth:`set_motion_scale`, :meth:`set_paused`, :meth:`set_avatar`, :meth:`add_output`,
    :meth:`remove_output`. :meth:`status` returns a JSON-safe snapshot, refreshed twice a second.
    """

    def __init__(self, avatar: AvatarTensors, *, fps: float, presets: dict[str, np.ndarray],
                 emotion: str = "neutral", intensity: float = 0.8, fade_s: float = 0.3,
                 provider: str = "auto", threads: int = 0, seed: int | None = None,
                 badge: Badge | None = None, motion_scale: float = 1.0) -> None:
        self.fps = float(fps)
        self._motion_scale = float(motion_scale)  # for opening the motion stage
        self._badge = badge
        self._provider_req, self._threads, self._seed = provider, threads, seed
        self._motion, self._render = self._open_stages(avatar)
        self._avatar = avatar
        self._lookahead_ns = int(self._motion.lookahead_ms * 1e6)
        self._features = LogMelStream(capacity=512)
        self._rise = MouthRiseMeter(self._features, lookahead_ms=self._motion.lookahead_ms)
        self._rise.set_view(getattr(avatar, "mouth_view", None))
        self._mixer = EmotionMixer(presets, fade_s=fade_s)
        self._mixer.set(emotion, intensity)
        self._mixer.advance(10.0)
        self._emotion, self._intensity = emotion, float(intensity)
        self._paused = False
        self._ring: AudioRing | None = None
        self._resampler = None
        self._in_buf = np.zeros(SAMPLE_RATE, np.float32)  # refit by set_audio for the ring's rate
        self._pcm16 = np.zeros(SAMPLE_RATE, np.float32)
        self._silence = np.zeros(SAMPLE_RATE // 2, np.float32)
        self._outputs: list[LatestFrameSlot] = []
        self.timer = StageTimer(STAGES, capacity=1024)
        self.clock = FrameClock(fps)
        self._ops: list[tuple[str, Any]] = []
        self._ops_lock = threading.Lock()
        self._status: dict[str, Any] = {}
        self._status_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.frames = 0
        self.errors = 0
        self.audio_skipped_ms = 0.0
        self.silence_fed_ms = 0.0
        self._last_audio_ns = 0  # arrival of the newest real sample fed
        self._fed_ns = 0  # when anything (audio or silence) was last fed
        self._fresh_audio = False  # this tick fed real audio
        self._started_ns = 0
        self.on_frame: Callable[[np.ndarray, int], None] | None = None  # engine thread; tests

    def _open_stages(self, avatar: AvatarTensors) -> tuple[MotionStage, RenderStage]:
        """Both graphs on the requested provider. A live webcam must not refuse to start because
        CUDA does not load where ``cuda`` was asked for: then both run on the CPU, with one warning."""
        try:
            return self._open_on(self._provider_req, avatar)
        except GraphError as e:
            if str(self._provider_req).lower() != "cuda":
                raise
            why = str(e)
        # raises the graph's own error if it does not load on the CPU either
        stages = self._open_on("cpu", avatar)
        self._provider_req = "cpu"
        log.warning("%s; running on the CPU instead", why)
        return stages

    def _open_on(self, provider: str, avatar: AvatarTensors) -> tuple[MotionStage, RenderStage]:
        """Both graphs on ``provider`` (``"auto"`` keeps the motion graph on the CPU, see
        :class:`MotionStage`); nothing left open if either fails."""
        motion = MotionStage(fps=self.fps, seed=self._seed, provider=provider, threads=self._threads,
                             head_motion=self._motion_scale)
        try:
            return motion, RenderStage(avatar, provider=provider, threads=self._threads, badge=self._badge)
        except BaseException:
            motion.close()
            raise

    # -- controls (any thread) --

    def _post(self, op: str, value: Any = None) -> None:
        with self._ops_lock:
            self._ops.append((op, value))

    def set_audio(self, ring: AudioRing | None) -> None:
        """Take speech from ``ring`` (``None``: no source; the face idles)."""
        self._post("audio", ring)

    def set_emotion(self, name: str, intensity: float | None = None) -> None:
        """Cross-fade to ``name``; ``intensity`` ``None`` keeps the current strength."""
        self._post("emotion", (name, intensity))

    def set_intensity(self, intensity: float) -> None:
        self._post("emotion", (None, intensity))

    def set_motion_scale(self, scale: float) -> None:
        """How much the head moves: 0 (still) .. 2 (lively), 1 a speaker's range."""
        self._post("motion_scale", float(scale))

    def set_paused(self, paused: bool | None) -> None:
        """Pause (``True``) or resume lip motion; ``None`` toggles. Paused, the audio is ignored."""
        self._post("paused", paused)

    def set_avatar(self, avatar: AvatarTensors) -> None:
        """Swap in another portrait without stopping."""
        self._post("avatar", avatar)

    def add_output(self, slot: LatestFrameSlot) -> None:
        self._post("add_output", slot)

    def remove_output(self, slot: LatestFrameSlot) -> None:
        """Stop offering frames to ``slot`` (the caller closes it)."""
        self._post("remove_output", slot)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def lookahead_ms(self) -> float:
        """The motion graph's look-ahead: a frame's mouth is for audio this much older than the newest."""
        return self._lookahead_ns / 1e6

    @property
    def mouth_rise_ms(self) -> float:
        """How long after a voice onset the drawn mouth is half open, in the audio's time (ms): the
        mean of the middle half of recent onsets' rises (:class:`vcam.runtime.mouth_rise.MouthRiseMeter`). The engine's
        latency plus this is how long after a voice starts arriving the face shows it."""
        return self._rise.rise_ms

    @property
    def provider(self) -> str:
        return self._render.provider

    # -- lifecycle --

    def start(self) -> None:
        """Start the frame loop thread."""
        if self._thread is not None:
            return
        self._started_ns = time.monotonic_ns()
        self._fed_ns = self._started_ns
        self._thread = threading.Thread(target=self._run, name="vcam-engine", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the loop and release the graphs (not the outputs or the audio source). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        self._motion.close()
        self._render.close()

    def __enter__(self) -> LiveEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the loop (engine thread) --

    def _run(self) -> None:
        prev_due = None
        next_status_ns = 0
        while not self._stop.is_set():
            due = self.clock.wait()
            dt = 1.0 / self.fps if prev_due is None else min((due - prev_due) / 1e9, _MAX_DT_S)
            prev_due = due
            try:
                self.tick(due, dt)
            except Exception as e:  # noqa: BLE001 - keep the camera alive
                self._on_error(e)
            if due >= next_status_ns:
                self._refresh_status()
                next_status_ns = due + 500_000_000

    def tick(self, due_ns: int, dt_s: float) -> np.ndarray:
        """Draw one frame for tick ``due_ns`` (``monotonic_ns``), ``dt_s`` after the previous one.

        Called by the loop; callable directly (without :meth:`start`) in tests. Returns the
        frame ``(512, 512, 3) uint8`` (the render buffer, overwritten by the next tick).
        """
        t0 = time.perf_counter_ns()
        self._apply_ops()
        self._feed_audio()
        win = self._motion.mel_buffer
        self._features.window(self._features.frames - 1, win)
        t1 = time.perf_counter_ns()
        motion = self._motion.step(win, self._mixer.advance(dt_s), dt_s)
        t2 = time.perf_counter_ns()
        self._rise.observe(motion)
        frame = self._render.render(motion)
        t3 = time.perf_counter_ns()
        if self.on_frame is not None:
            self.on_frame(frame, due_ns)
        for slot in self._outputs:
            slot.offer(frame, due_ns)
        t4 = time.perf_counter_ns()
        self.frames += 1
        timer = self.timer
        timer.add("audio", t1 - t0)
        timer.add("motion", t2 - t1)
        timer.add("render", t3 - t2)
        timer.add("publish", t4 - t3)
        timer.add("frame", t4 - t0)
        if self._fresh_audio and not self._paused:
            timer.add("latency", time.monotonic_ns() - self._last_audio_ns + self._lookahead_ns)
        return frame

    def _apply_ops(self) -> None:
        if not self._ops:
            return
        with self._ops_lock:
            ops, self._ops = self._ops, []
        for op, value in ops:
            if op == "audio":
                self._attach(value)
            elif op == "emotion":
                name, intensity = value
                self._emotion = name or self._emotion
                if intensity is not None:
                    self._intensity = float(intensity)
                self._mixer.set(self._emotion, self._intensity)
            elif op == "motion_scale":
                self._motion.head_motion = value
            elif op == "paused":
                self._paused = (not self._paused) if value is None else bool(value)
            elif op == "avatar":
                self._render.set_avatar(value)
                self._rise.set_view(getattr(value, "mouth_view", None))
                self._avatar = value
            elif op == "add_output":
                if value not in self._outputs:
                    self._outputs.append(value)
            elif op == "remove_output":
                if value in self._outputs:
                    self._outputs.remove(value)

    def _attach(self, ring: AudioRing | None) -> None:
        self._ring = ring
        self._resampler = None
        if ring is None:
            return
        if ring.rate != SAMPLE_RATE:
            from vcam.runtime.resample import StreamResampler

            self._in_buf = np.zeros(ring.rate // 2, np.float32)
            self._resampler = StreamResampler(ring.rate, SAMPLE_RATE, max_block=self._in_buf.shape[0])
            self._pcm16 = np.zeros(SAMPLE_RATE // 2 + 64, np.float32)
        else:
            self._in_buf = np.zeros(SAMPLE_RATE // 2, np.float32)
        ring.skip_to_newest(0)  # what was captured before now is stale

    def _feed_audio(self) -> None:
        now = time.monotonic_ns()
        ring = self._ring
        got = 0
        self._fresh_audio = False
        if ring is not None:
            backlog = ring.unread
            if backlog > ring.rate * BACKLOG_MS / 1000.0:
                keep = int(ring.rate * KEEP_MS / 1000.0)
                self.audio_skipped_ms += (backlog - keep) * 1000.0 / ring.rate
                ring.skip_to_newest(keep)
            while True:
                n = ring.read_new(self._in_buf)
                if n == 0:
                    break
                block = self._in_buf[:n]
                if self._resampler is not None:
                    m = self._resampler.process(block, self._pcm16)
                    block = self._pcm16[:m]
                if self._paused:
                    block[:] = 0.0
                self._features.push(block)
                got += n
            if got:
                self._last_audio_ns = ring.last_write_ns
                self._fed_ns = now
                self._fresh_audio = True
        if not got and (now - self._fed_ns) > STALL_MS * 1e6:
            n = min(int((now - self._fed_ns) * SAMPLE_RATE // 1_000_000_000), self._silence.shape[0])
            self._features.push(self._silence[:n])
            self.silence_fed_ms += n * 1000.0 / SAMPLE_RATE
            self._fed_ns = now

    def _on_error(self, e: Exception) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 100 == 0:
            log.warning("frame failed (%d so far): %s: %s", self.errors, type(e).__name__, e)
        if self._render.provider != "CPUExecutionProvider" and self._provider_req != "cpu":
            log.warning("the %s provider failed while running; falling back to the CPU", self._render.provider)
            self._reopen_on_cpu()

    def _reopen_on_cpu(self) -> None:
        old_m, old_r = self._motion, self._render
        self._motion, self._render = self._open_on("cpu", self._avatar)
        self._provider_req = "cpu"
        old_m.close()
        old_r.close()

    # -- status --

    def _refresh_status(self) -> None:
        t = self.timer
        now = time.monotonic_ns()
        uptime_s = (now - self._started_ns) / 1e9 if self._started_ns else 0.0

        def ms(stage: str) -> dict[str, float | None]:
            s = t.summary_ms(stage)
            return {k: (None if s["n"] == 0 else round(s[k], 2)) for k in ("p50", "p95")}

        recent = min(t.count("frame"), 1024)
        status = {
            "fps_target": self.fps,
            "fps": round(self.frames / uptime_s, 2) if uptime_s > 1 else None,
            "frames": self.frames,
            "missed_ticks": self.clock.missed,
            "errors": self.errors,
            "provider": self._render.provider.replace("ExecutionProvider", "").lower(),
            "emotion": self._emotion,
            "intensity": round(self._intensity, 3),
            "motion_scale": round(self._motion.head_motion, 3),
            "paused": self._paused,
            "latency_ms": ms("latency"),
            "stages_ms": {s: ms(s) for s in ("audio", "motion", "render", "publish", "frame")},
            "mouth_rise_ms": round(self._rise.rise_ms, 1),
            "onsets": {"found": self._rise.onsets, "measured": self._rise.measured},
            "audio_skipped_ms": round(self.audio_skipped_ms, 1),
            "silence_fed_ms": round(self.silence_fed_ms, 1),
            "outputs": {s.name: {"written": s.written, "dropped": s.dropped, "errors": s.errors,
                                 "last_error": s.last_error} for s in list(self._outputs)},
            "recent_frames": recent,
            "uptime_s": round(uptime_s, 1),
        }
        with self._status_lock:
            self._status = status

    def status(self) -> dict[str, Any]:
        """A JSON-safe snapshot: fps, frames, drops, latency and stage timings (p50/p95 ms), emotion."""
        with self._status_lock:
            if self._status:
                return dict(self._status)
        self._refresh_status()  # before the loop's first refresh
        with self._status_lock:
            return dict(self._status)
