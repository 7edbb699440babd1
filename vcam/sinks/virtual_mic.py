"""VirtualMicrophone: the voice, in step with the face, as a microphone call apps can pick.

``vcam run`` animates the face from an audio source (the user's microphone, what the computer
plays, a named device). A call app that takes the voice straight from the microphone hears it
about 100 ms before the lips move. This sink plays the same captured audio, delayed by the
engine's measured audio->frame latency (plus a user offset), into a microphone device
(:mod:`vcam.sinks.mic_devices`): on Linux vcam's own PulseAudio/PipeWire source "vcam
microphone", on Windows a VB-Audio cable, on macOS BlackHole.

Threads: PortAudio's output thread calls the stream callback, which only runs
:meth:`vcam.runtime.voice_delay.VoiceDelay.fill` (no locks, no allocation); a supervisor thread
(``vcam-mic``) reopens the stream when it stops, checks every ``check_s`` that the device is
still there (a sound server restart removes vcam's modules: they are made again), and retries
a missing device every ``retry_s`` (growing to a minute). The engine never waits on any of it.

The output stream is counted among :mod:`vcam.runtime.audio_in`'s open PortAudio streams, so the
audio source never re-initialises PortAudio under it. A context manager; :meth:`close` is
idempotent and removes the device.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import numpy as np

from vcam.runtime import audio_in
from vcam.runtime.audio_ring import AudioRing
from vcam.runtime.voice_delay import VoiceDelay
from vcam.sinks.mic_devices import MicNameTaken, MicUnavailable, OutputTarget, ensure_on_sink, make_device

log = logging.getLogger(__name__)

RATE = 48000
BLOCK = 480  # 10 ms
LATENCY_S = 0.03
"""Output buffer PortAudio is asked for. The delay is kept by timestamps, so the buffer costs
no sync, but it must stay well under the delay (~120 ms) together with the capture's gaps
(see :mod:`vcam.runtime.voice_delay`); at "low" (~20 ms) the stream underran on two loaded cores."""
PUBLISH_MS = 3.0
"""From the engine's hand-off of a frame to its arrival in the camera / pipe, measured from
outside (``vcam bench --av-sync``); added to the engine's latency."""
_TICK_S = 0.25


class VirtualMicrophone:
    """The delayed voice on a microphone device.

    Parameters
    ----------
    name, description:
        Linux: the PulseAudio source's name and what call apps list (``vcam_mic``, "vcam microphone").
    device:
        An output device to play into instead of the platform's default (Windows: "CABLE
        Input", macOS: "BlackHole").
    offset_ms:
        Added to the measured delay: positive plays the voice later.
    mic_device:
        A device object (tests); default: :func:`vcam.sinks.mic_devices.make_device`.
    sd:
        The ``sounddevice`` module (tests pass a fake one).
    """

    def __init__(self, *, name: str = "vcam_mic", description: str = "vcam microphone", device: str = "",
                 offset_ms: float = 0.0, avoid: str | None = None, mic_device: Any = None, sd: Any = None,
                 check_s: float = 3.0, retry_s: float = 2.0) -> None:
        self._sd = sd
        self.device = mic_device or make_device(name, description, device, sd=sd, avoid=avoid)
        self.name = name
        self.description = description
        self.delay = VoiceDelay(RATE, max_block=8192)
        self.offset_ms = float(offset_ms)
        self.video_latency_ms = 0.0
        self.check_s, self.retry_s = float(check_s), float(retry_s)
        self._mono = np.zeros(8192, np.float32)
        self._stream = None
        self._target: OutputTarget | None = None
        self._channels = 1
        self._latency_s = 0.0
        self.state = "closed"
        self.error: str | None = None
        self.status_flags = 0
        self.reopens = 0
        self._created = False
        self._next_try = 0.0
        self._next_check = 0.0
        self._backoff = float(retry_s)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._started = False

    # -- controls (any thread) --

    def set_ring(self, ring: AudioRing | None) -> None:
        """Play the audio the engine reads from ``ring`` (``None``: silence)."""
        self.delay.set_ring(ring)

    def set_video_latency_ms(self, latency_ms: float) -> None:
        """The engine's audio->frame latency now (p50, ms); the voice is delayed to match."""
        self.video_latency_ms = float(latency_ms)
        self._update_delay()

    def set_offset_ms(self, offset_ms: float) -> None:
        """User trim: positive plays the voice later (ms)."""
        self.offset_ms = float(offset_ms)
        self._update_delay()

    def _update_delay(self) -> None:
        self.delay.set_delay_ms(self.video_latency_ms + PUBLISH_MS + self.offset_ms)

    # -- lifecycle --

    def start(self) -> VirtualMicrophone:
        """Make the device and start playing. Raises :class:`MicNameTaken` (another vcam owns the
        name: refuse). :class:`MicUnavailable` is *not* raised: the state says ``unavailable``,
        :attr:`error` says why and what to do, and the supervisor keeps trying."""
        with self._lock:
            if self._closed:
                raise RuntimeError("VirtualMicrophone.start: closed")
            if self._started:
                return self
            self._started = True
            try:
                self._bring_up()
            except MicNameTaken:
                self._started = False
                raise
            except MicUnavailable as e:
                self._set_unavailable(str(e))
        self._thread = threading.Thread(target=self._supervise, name="vcam-mic", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop, close the stream, remove the device. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(10.0)
        with self._lock:
            self._close_stream()  # first: a stream left on a removed sink would move to the speakers
            if self._created:
                try:
                    self.device.remove()
                except Exception as e:  # noqa: BLE001
                    log.debug("removing the microphone: %s", e)
                self._created = False
            self.state = "closed"

    def __enter__(self) -> VirtualMicrophone:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def status(self) -> dict[str, Any]:
        """JSON-safe: ``state`` (running / waiting / unavailable / closed), ``name``, ``device``
        (what call apps list), ``delay_ms`` (aimed at), ``offset_ms``, ``error_ms``, ``underruns``,
        ``underrun_ms``, ``silence_ms``, ``resyncs``, ``reopens``, ``error``."""
        s = {"state": self.state, "name": self.name,
             "device": self._target.label if self._target is not None else None,
             "offset_ms": round(self.offset_ms, 1), "video_latency_ms": round(self.video_latency_ms, 1),
             "reopens": self.reopens, "status_flags": self.status_flags, "error": self.error}
        s.update(self.delay.status())
        return s

    # -- bringing the device and stream up (self._lock held) --

    def _bring_up(self) -> None:
        if not self._created:
            self._target = self.device.create()
            self._created = True
        self._open_stream()
        self.state = "running"
        self.error = None
        self._backoff = self.retry_s
        self._next_check = time.monotonic() + self.check_s

    def _set_unavailable(self, why: str) -> None:
        first = self.error is None or self.state not in ("unavailable", "waiting")
        self.state = "unavailable"
        self.error = why
        self._next_try = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2.0, 60.0)
        if first:
            log.warning("%s", why)

    def _sounddevice(self):
        if self._sd is None:
            self._sd = audio_in.import_sounddevice()
        return self._sd

    def _open_stream(self) -> None:
        sd = self._sounddevice()
        target = self._target
        with audio_in.portaudio_lock:
            saved = {k: os.environ.get(k) for k in target.env}
            os.environ.update(target.env)
            try:
                last: Exception | None = None
                for channels in (1, 2):
                    try:
                        stream = sd.OutputStream(device=target.device, samplerate=RATE, channels=channels,
                                                 dtype="float32", blocksize=BLOCK, latency=LATENCY_S,
                                                 callback=self._callback)
                        self._channels = channels
                        self._latency_s = float(getattr(stream, "latency", 0.0) or 0.0)
                        stream.start()
                    except Exception as e:  # noqa: BLE001 - PortAudioError and kin: try stereo, then give up
                        last = e
                        continue
                    self._stream = stream
                    audio_in._open_streams += 1
                    break
                else:
                    raise MicUnavailable(f"virtual microphone: cannot play into {target.label!r}: {last}")
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        if target.pulse_sink is not None and ensure_on_sink(target.pulse_sink):
            log.warning("the microphone's playback stream opened on another sink; moved it to %r", target.pulse_sink)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        with audio_in.portaudio_lock:
            try:
                stream.close(ignore_errors=True)
            except Exception as e:  # noqa: BLE001
                log.debug("closing the microphone stream: %s", e)
            audio_in._open_streams -= 1

    def _callback(self, outdata, frames, time_info, status) -> None:
        """PortAudio's output thread, once per block of ``frames`` frames.

        ``outdata``: ``(frames, channels) float32`` to fill; ``time_info.outputBufferDacTime -
        time_info.currentTime``: seconds until its first frame reaches the device (the stream's
        latency when the host API gives no times); ``status``: underflow flags, counted.

        Contract: fills ``outdata`` from :class:`VoiceDelay` and nothing else: no locks, no
        allocation of arrays, no logging, no exceptions.
        """
        if status:
            self.status_flags += 1
        ahead = time_info.outputBufferDacTime - time_info.currentTime
        if not 0.0 < ahead < 1.0:
            ahead = self._latency_s
        mono = self._mono[:frames]
        now = time.monotonic_ns()
        self.delay.fill(mono, now + int(ahead * 1e9), now)
        outdata[:, 0] = mono
        if self._channels > 1:
            outdata[:, 1] = mono

    # -- supervisor thread --

    def _supervise(self) -> None:
        while not self._stop.wait(_TICK_S):
            try:
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._tick()
            except Exception as e:  # noqa: BLE001 - never let the supervisor die
                log.debug("microphone supervisor: %s: %s", type(e).__name__, e)

    def _tick(self) -> None:
        now = time.monotonic()
        if self._stream is not None:
            device_lost = None
            if not self._stream.active:
                why = "its playback stream stopped"
                device_lost = self.device.check()  # a server restart stops the stream and takes the device
            elif now >= self._next_check:
                self._next_check = now + self.check_s
                why = device_lost = self.device.check()
            else:
                return
            if why is None:
                return
            self._close_stream()
            if device_lost is not None:
                self.device.forget()
                self._created = False
            self.state = "waiting"
            self.error = f"virtual microphone lost: {why}"
            log.warning("%s; making it again", self.error)
            self._next_try = now
            return
        if now < self._next_try:
            return
        try:
            self._bring_up()
        except MicNameTaken as e:  # someone took the name while ours was gone: stop trying loudly
            self._set_unavailable(str(e))
            return
        except MicUnavailable as e:
            self._set_unavailable(str(e))
            return
        self.reopens += 1
        log.warning("virtual microphone %r is back", self._target.label if self._target else self.name)
