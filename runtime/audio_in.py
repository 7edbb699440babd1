"""AudioSource: live speech from a microphone or from what the computer plays.

``AudioSource(spec)`` captures mono float32 into an :class:`vcam.runtime.audio_ring.AudioRing`
that the engine thread reads once per video frame. ``spec`` is

* ``"mic"``: the default input device;
* ``"system"``: what the computer plays:

  - Linux: the monitor source of the default PulseAudio / PipeWire (pipewire-pulse) sink,
    asked of the sound server through libpulse, opened through PortAudio's ALSA ``pulse`` device with the
    ``PULSE_SOURCE`` environment variable naming the monitor while the stream opens. It
    follows the default sink: when that changes (headphones plugged in), the source reopens
    on the new sink's monitor;
  - Windows: WASAPI loopback of the default output device, through the optional package
    ``pyaudiowpatch`` (``pip install pyaudiowpatch``);
  - macOS: not built in; install a loopback device such as BlackHole, make it (or a
    Multi-Output Device containing it) the output, and pass its name as ``spec``;

* a device as ``vcam devices`` lists it: a PortAudio index (``"3"``), a PortAudio device name
  or a unique part of one, or (Linux) a PulseAudio source name such as
  ``"alsa_output.pci-0000_00_1f.3.analog-stereo.monitor"`` or a unique part of one.

Resilience: a supervisor thread watches the stream. When the stream stops or errors, gives no
audio for ``stall_s`` seconds (longer right after opening), or (PulseAudio) its source
disappears or the default sink changes, it closes the stream and tries to open it again every
``reopen_s`` seconds until the device is back. Meanwhile :meth:`AudioSource.status` says
``"waiting"`` and the engine, getting no samples, feeds silence. PortAudio lists devices once
when it is initialised, so before each attempt, while no stream of this module is open, the
supervisor re-initialises PortAudio (``sounddevice._terminate(); sounddevice._initialize()``)
to see devices that appeared since. ``Pa_Terminate`` closes *every* PortAudio stream of the
process: set :data:`REFRESH_PORTAUDIO` to ``False`` if something else in the process uses
PortAudio (then a device that appears later is only found if PortAudio listed it before).

Nothing happens at import time; ``sounddevice`` is imported by the methods that need it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from vcam.runtime.audio_ring import AudioRing
from vcam.runtime.audio_targets import (
    MIC,
    PULSE_PCM,
    SYSTEM,
    _NotFound,
    _open_loopback,
    _PyAudioStream,
    _resolve,
    _resolve_again,
    _Target,
)
from vcam.runtime.errors import DeviceError
# The sound server is asked through libpulse (vcam.runtime.pulse); these names stay importable here.
from vcam.runtime.pulse import (
    PulseWatcher,
    move_stream,
    pulse_info,
    pulse_sources,
    pulse_streams_of_pid,
)

__all__ = ["AudioSource", "pulse_info", "pulse_sources", "pulse_streams_of_pid"]

log = logging.getLogger(__name__)


REFRESH_PORTAUDIO = True
"""Re-initialise PortAudio before (re)opening when no AudioSource stream is open. Set to
``False`` when other code in the process keeps PortAudio streams open."""

portaudio_lock = threading.RLock()
"""Held while PortAudio is re-initialised, devices are resolved and streams are opened or closed,
and while ``PULSE_SOURCE`` is set. :mod:`vcam.app.devices` takes it to query devices."""

_open_streams = 0  # PortAudio streams opened here and not yet closed (guarded by portaudio_lock)

_STARTUP_GRACE_S = 3.0  # first audio after opening may take 2 s (an idle PulseAudio sink renders 2 s ahead)
_TICK_S = 0.1


# --------------------------------------------------------------------------- PortAudio


def import_sounddevice():
    """``sounddevice``, or :class:`DeviceError` when the PortAudio library is missing."""
    try:
        import sounddevice
    except OSError as e:  # the module raises OSError when libportaudio cannot be loaded
        raise DeviceError(f"audio input needs the PortAudio library (Debian/Ubuntu: libportaudio2); got: {e}") from e
    return sounddevice


def refresh_portaudio(sd=None) -> bool:
    """Re-initialise PortAudio so that its device list is current. Only when no stream of this
    module is open and :data:`REFRESH_PORTAUDIO` is set; returns whether it happened."""
    sd = sd or import_sounddevice()
    with portaudio_lock:
        if not REFRESH_PORTAUDIO or _open_streams:
            return False
        n = getattr(sd, "_initialized", None)
        if n not in (0, 1):  # someone else holds a reference: leave PortAudio alone
            return False
        if n == 1:
            sd._terminate()
        sd._initialize()  # raises PortAudioError when PortAudio cannot start; retried next time
        return True


def input_devices(sd=None) -> list[dict[str, Any]]:
    """PortAudio devices with inputs: ``[{"index", "name", "hostapi", "channels",
    "default_rate", "default"}]`` (``default``: PortAudio's default input)."""
    sd = sd or import_sounddevice()
    with portaudio_lock:
        try:
            devices = sd.query_devices()
            apis = sd.query_hostapis()
        except Exception as e:  # PortAudioError: not initialised or failing
            log.debug("query_devices failed: %s", e)
            return []
        try:
            default_in = int(sd.query_devices(kind="input")["index"])
        except Exception:
            default_in = -1
    out = []
    for d in devices:
        if d["max_input_channels"] > 0:
            out.append({"index": int(d["index"]), "name": str(d["name"]),
                        "hostapi": str(apis[d["hostapi"]]["name"]), "channels": int(d["max_input_channels"]),
                        "default_rate": int(d["default_samplerate"]), "default": int(d["index"]) == default_in})
    return out


class _PulseSourceEnv:
    """Sets ``PULSE_SOURCE`` while a stream of the ALSA ``pulse`` PCM opens (libpulse reads it
    when the plugin connects), then restores the previous value. Hold :data:`portaudio_lock`."""

    def __init__(self, source: str | None) -> None:
        self.source = source
        self._old: str | None = None

    def __enter__(self):
        if self.source is not None:
            self._old = os.environ.get("PULSE_SOURCE")
            os.environ["PULSE_SOURCE"] = self.source
        return self

    def __exit__(self, *exc) -> None:
        if self.source is not None:
            if self._old is None:
                os.environ.pop("PULSE_SOURCE", None)
            else:
                os.environ["PULSE_SOURCE"] = self._old


# --------------------------------------------------------------------------- AudioSource


class AudioSource:
    """Live mono float32 capture into :attr:`ring`, reopened by itself when the device comes and goes.

    Parameters
    ----------
    spec:
        ``"mic"``, ``"system"``, or a device index / name / unique part of a name (see the module
        docstring).
    rate:
        Preferred sample rate in Hz. When the device refuses it, its default rate is used and
        :attr:`ring` has that rate (the engine resamples with :class:`vcam.runtime.resample.StreamResampler`).
    blocksize:
        Frames per callback at ``rate`` (160: 10 ms at 16 kHz; scaled for another rate).
    ring_seconds:
        Capacity of the ring in seconds.
    reopen_s:
        Seconds between attempts to reopen a lost device.
    stall_s:
        A running stream that delivers nothing for this long is taken as lost.

    A context manager (``with AudioSource("mic") as src:`` starts it); :meth:`close` is idempotent.
    """

    def __init__(self, spec: str, *, rate: int = 16000, blocksize: int = 160, ring_seconds: float = 2.0,
                 reopen_s: float = 1.0, stall_s: float = 1.0) -> None:
        spec = str(spec).strip()
        if spec.lower() in (MIC, SYSTEM):
            spec = spec.lower()
        if not spec:
            raise DeviceError("audio source: expected 'mic', 'system' or a device name, got ''")
        if rate < 1 or blocksize < 1 or ring_seconds <= 0 or reopen_s <= 0 or stall_s <= 0:
            raise ValueError(f"rate, blocksize, ring_seconds, reopen_s, stall_s must be > 0, got "
                             f"{rate}, {blocksize}, {ring_seconds}, {reopen_s}, {stall_s}")
        self.spec = spec
        self.rate_pref = int(rate)
        self.blocksize = int(blocksize)
        self.ring_seconds = float(ring_seconds)
        self.reopen_s = float(reopen_s)
        self.stall_s = float(stall_s)
        self._ring: AudioRing | None = None
        self._stream = None
        self._target: _Target | None = None
        self._found: _Target | None = None  # what a device spec (not mic/system) first resolved to
        self._device: str | None = None
        self._state = "closed"
        self._error: str | None = None
        self.reopens = 0
        self.reopen_attempts = 0
        self._opened_ns = 0
        self._next_try_ns = 0
        self._pulse_watch: PulseWatcher | None = None  # sources and default sink, from change events
        self._opened_generation = 0
        self._lost_logged = False
        self._supervisor_warned = False
        self._lock = threading.Lock()  # state changes (supervisor, start, close); never the callback
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False

    # -- public --

    @property
    def ring(self) -> AudioRing:
        """The ring the callback writes, ``capacity = ring_seconds * rate`` samples of ``(n,) float32``
        at ``ring.rate`` Hz; made by the first successful :meth:`start` and the same ever after."""
        if self._ring is None:
            raise RuntimeError("AudioSource.ring: the source has not started; call start() first")
        return self._ring

    def start(self) -> AudioSource:
        """Open the device and start the supervisor. Raises :class:`DeviceError` when ``spec``
        matches no device or the device cannot be opened. Starting a started source does nothing."""
        with self._lock:
            if self._closed:
                raise RuntimeError("AudioSource.start: the source is closed")
            if self._started:
                return self
            sd = None if self._needs_no_portaudio() else import_sounddevice()
            with portaudio_lock:
                if sd is not None:
                    self._try_refresh(sd)
                target = _resolve(self.spec, sd)
                if self.spec not in (MIC, SYSTEM):
                    self._found = target
                self._open(target, sd)
            self._started = True
            self._thread = threading.Thread(target=self._supervise, name=f"audio-in:{self.spec}", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the supervisor and release the device. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10.0)
        with self._lock:
            self._close_stream()
            self._state = "closed"
        if self._pulse_watch is not None:
            self._pulse_watch.close()

    def status(self) -> dict[str, Any]:
        """JSON-safe snapshot: ``{"source", "device", "state", "rate", "error", "status_flags",
        "overruns", "reopens", "reopen_attempts", "last_audio_ms_ago"}``. ``state`` is
        ``"running"`` (a stream is open), ``"waiting"`` (lost; retrying) or ``"closed"``."""
        ring = self._ring
        last = None
        if ring is not None and ring.last_write_ns:
            last = round((time.monotonic_ns() - ring.last_write_ns) / 1e6, 1)
        return {
            "source": self.spec,
            "device": self._device,
            "state": self._state,
            "rate": ring.rate if ring is not None else self.rate_pref,
            "error": self._error,
            "status_flags": ring.status_flags if ring is not None else 0,
            "overruns": ring.overruns if ring is not None else 0,
            "reopens": self.reopens,
            "reopen_attempts": self.reopen_attempts,
            "last_audio_ms_ago": last,
        }

    def __enter__(self) -> AudioSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    # -- opening and closing (self._lock held) --

    def _needs_no_portaudio(self) -> bool:
        return self.spec == SYSTEM and sys.platform == "win32"

    def _try_refresh(self, sd) -> None:
        try:
            refresh_portaudio(sd)
        except Exception as e:  # PortAudio could not start now; the attempt below reports it
            log.debug("PortAudio re-initialisation failed: %s", e)

    def _ring_for(self, rate: int) -> AudioRing:
        if self._ring is None:
            self._ring = AudioRing(max(1, int(round(self.ring_seconds * rate))), rate)
        elif self._ring.rate != rate:
            raise DeviceError(f"audio input {self.spec!r} now runs at {rate} Hz; this source started at "
                              f"{self._ring.rate} Hz (restart it)")
        return self._ring

    def _frames_for(self, rate: int) -> int:
        return max(1, self.blocksize * rate // self.rate_pref)

    def _make_callback(self, ring: AudioRing):
        write = ring.write

        def callback(indata, frames, time_info, status):
            """Called by PortAudio's audio thread for each block of ``frames`` input frames.

            Parameters
            ----------
            indata:
                ``(frames, channels) float32``, valid only during the call (copied, never kept).
            frames:
                Number of frames in ``indata``.
            time_info:
                PortAudio's timestamps (unused).
            status:
                ``sounddevice.CallbackFlags``; true when the block had an input overflow or the like.

            Contract: copies ``indata`` into the preallocated ring and counts ``status``; it
            allocates no arrays, takes no locks, logs nothing and never raises, because it runs
            on the real-time audio thread.
            """
            write(indata, bool(status))

        return callback

    def _open(self, target: _Target, sd) -> None:
        """Open ``target``; on success the state is ``running``. Raises :class:`DeviceError`."""
        global _open_streams
        if target.kind == "loopback":
            stream, label, rate = _open_loopback(self._ring_for, self._frames_for)
            self._set_running(stream, target, label)
            return
        idx = next((d["index"] for d in input_devices(sd) if d["name"] == target.pa_name), None)
        if idx is None:
            if target.kind == "pulse":
                raise _NotFound(f"audio input {target.label!r}: PortAudio has no ALSA '{PULSE_PCM}' device to reach "
                                "PulseAudio through; install the ALSA PulseAudio plugin (Debian/Ubuntu: "
                                "libasound2-plugins; Fedora: alsa-plugins-pulseaudio)")
            raise _NotFound(f"audio input {target.pa_name!r} is gone")
        info = sd.query_devices(idx)
        default_rate = int(info["default_samplerate"])
        if self._ring is not None:
            rates = [self._ring.rate]  # the ring's rate is fixed once made
        else:
            rates = [self.rate_pref] + ([default_rate] if default_rate != self.rate_pref else [])
        channel_options = [1] + ([2] if info["max_input_channels"] >= 2 else [])
        last_err: Exception | None = None
        with _PulseSourceEnv(target.pulse_source if target.kind == "pulse" else None):
            for rate in rates:
                for ch in channel_options:
                    try:
                        sd.check_input_settings(device=idx, channels=ch, dtype="float32", samplerate=rate)
                    except Exception as e:
                        last_err = e
                        continue
                    # a new ring only becomes the source's ring when its stream is running
                    ring = self._ring or AudioRing(max(1, int(round(self.ring_seconds * rate))), rate)
                    stream = None
                    try:
                        stream = sd.InputStream(device=idx, samplerate=rate, channels=ch, dtype="float32",
                                                blocksize=self._frames_for(rate),
                                                callback=self._make_callback(ring))
                        stream.start()
                    except Exception as e:
                        last_err = e
                        if stream is not None:
                            stream.close(ignore_errors=True)
                        continue
                    _open_streams += 1
                    self._ring = ring
                    self._set_running(stream, target, target.label)
                    if target.kind == "pulse":
                        self._check_pulse_routing(target)
                    return
        if self._ring is not None and len(rates) == 1 and rates[0] != default_rate:
            raise DeviceError(f"audio input {target.label!r} refuses {rates[0]} Hz, the rate this source started "
                              f"at (it offers {default_rate} Hz): {last_err}")
        raise DeviceError(f"could not open audio input {target.label!r} at {rates} Hz: {last_err}")

    def _set_running(self, stream, target: _Target, label: str) -> None:
        if self._started:
            self.reopens += 1  # counted before the state says so, for readers of status()
        self._stream = stream
        self._target = target
        self._device = label
        self._state = "running"
        self._error = None
        self._opened_ns = time.monotonic_ns()
        if target.kind == "pulse" and self._pulse_watch is None:
            self._pulse_watch = PulseWatcher()
            self._pulse_watch.start()
        # only what the server says after this open can disagree with the target just resolved
        state = self._pulse_watch.state if self._pulse_watch is not None else None
        self._opened_generation = state.generation if state is not None else 0

    def _check_pulse_routing(self, target: _Target) -> None:
        """Make sure our record stream is on ``target``'s source (a PipeWire ALSA plugin, say,
        ignores ``PULSE_SOURCE``): move it there when it is not."""
        ours = pulse_streams_of_pid(os.getpid(), "source-outputs")
        if not ours or any(src == target.pulse_index for _, src in ours):
            return
        out_idx = max(o for o, _ in ours)
        if move_stream("source-outputs", out_idx, target.pulse_source or ""):
            log.warning("the record stream opened on another source; moved it to %r", target.pulse_source)

    def _close_stream(self) -> None:
        global _open_streams
        stream, self._stream = self._stream, None
        if stream is None:
            return
        with portaudio_lock:
            try:
                stream.close(ignore_errors=True)
            except Exception as e:
                log.debug("closing the audio stream: %s", e)
            if not isinstance(stream, _PyAudioStream):
                _open_streams -= 1

    # -- supervisor thread --

    def _supervise(self) -> None:
        while not self._stop.wait(_TICK_S):
            try:
                with self._lock:
                    if self._stop.is_set():
                        return
                    if self._stream is not None:
                        why = self._health()
                        if why is not None:
                            self._lose(why)
                    elif time.monotonic_ns() >= self._next_try_ns:
                        self._reopen()
            except Exception as e:  # never let the supervisor die
                (log.debug if self._supervisor_warned else log.warning)(
                    "audio supervisor: %s: %s", type(e).__name__, e, exc_info=self._supervisor_warned)
                self._supervisor_warned = True
                self._next_try_ns = time.monotonic_ns() + int(self.reopen_s * 1e9)

    def _health(self) -> str | None:
        """Why the open stream counts as lost, or ``None`` when it is fine."""
        now = time.monotonic_ns()
        if not self._stream.active:
            return "the stream stopped (device lost or its server went away)"
        target = self._target
        ring = self._ring
        if target is not None and target.kind != "loopback" and ring is not None:
            # WASAPI loopback delivers nothing while nothing plays, so no stall check there. Right
            # after opening, audio may come late and in bursts: no check during the grace time.
            if now - self._opened_ns > max(_STARTUP_GRACE_S, 2 * self.stall_s) * 1e9:
                since = max(ring.last_write_ns, self._opened_ns)
                if now - since > self.stall_s * 1e9:
                    return f"no audio for {(now - since) / 1e9:.1f} s"
        state = self._pulse_watch.state if self._pulse_watch is not None else None
        if target is not None and target.kind == "pulse" and state is not None \
                and state.generation > self._opened_generation:
            # a server that went away stops the stream itself; state None means "not known now"
            cur = state.sources.get(target.pulse_source)
            if cur is None:
                return f"the PulseAudio source {target.pulse_source!r} is gone"
            if cur != target.pulse_index:
                return f"the PulseAudio source {target.pulse_source!r} was recreated"
            if self.spec == SYSTEM and state.default_sink and f"{state.default_sink}.monitor" != target.pulse_source:
                return f"the default sink is now {state.default_sink!r}"
        return None

    def _lose(self, why: str) -> None:
        self._close_stream()
        self._state = "waiting"
        self._error = f"{self._device or self.spec}: {why}"
        if not self._lost_logged:
            log.warning("audio source %r lost: %s; retrying every %.1f s", self.spec, self._error, self.reopen_s)
            self._lost_logged = True
        self._next_try_ns = time.monotonic_ns()  # the first attempt right away (a sink change, a stall)

    def _reopen(self) -> None:
        self.reopen_attempts += 1
        self._next_try_ns = time.monotonic_ns() + int(self.reopen_s * 1e9)
        sd = None if self._needs_no_portaudio() else import_sounddevice()
        try:
            with portaudio_lock:
                if sd is not None:
                    self._try_refresh(sd)
                if self._found is not None:
                    target = _resolve_again(self.spec, sd, self._found)
                else:
                    target = _resolve(self.spec, sd)
                self._open(target, sd)
        except Exception as e:  # DeviceError, PortAudioError, OSError: keep waiting
            self._state = "waiting"
            line = (str(e).splitlines() or [""])[0]
            if not isinstance(e, DeviceError):
                line = f"audio input {self.spec!r}: {type(e).__name__}: {line}"
            self._error = line
            log.debug("audio source %r: reopen attempt %d failed: %s", self.spec, self.reopen_attempts, e)
            return
        log.warning("audio source %r is back: %r at %d Hz", self.spec, self._device, self._ring.rate)
        self._lost_logged = False
