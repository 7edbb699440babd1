"""Which device an audio-input spec means: ``"mic"``, ``"system"`` (the default output's monitor
on PulseAudio / PipeWire, WASAPI loopback on Windows), a PortAudio index or name, or a
PulseAudio source; found again by name after a device comes back. And the Windows loopback
stream, opened through pyaudiowpatch. :class:`vcam.runtime.audio_in.AudioSource` uses these."""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from vcam.runtime.errors import DeviceError
from vcam.runtime.pulse import pulse_info, pulse_sources

log = logging.getLogger(__name__)

MIC = "mic"
SYSTEM = "system"
PULSE_PCM = "pulse"  # the ALSA PCM of the PulseAudio plugin (libasound2-plugins), as PortAudio lists it


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class _Target:
    """What to open: a PortAudio device by exact name, a PulseAudio source through the ``pulse``
    PCM, or the WASAPI loopback of the default output (pyaudiowpatch)."""

    kind: str  # "portaudio" | "pulse" | "loopback"
    label: str  # shown in status()["device"]
    pa_name: str | None = None
    pulse_source: str | None = None
    pulse_index: int | None = None


class _NotFound(DeviceError):
    pass


def _quote_list(names: list[str], limit: int = 8) -> str:
    if not names:
        return "none"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


def _one(spec: str, matches: list[str], what: str) -> str | None:
    if len(matches) > 1:
        raise _NotFound(f"audio input {spec!r} matches several {what}: {_quote_list(matches)}; "
                        "give more of the name (run `vcam devices`)")
    return matches[0] if matches else None


def _pulse_target(source: str, sources: list[dict[str, Any]]) -> _Target:
    index = next(s["index"] for s in sources if s["name"] == source)
    return _Target("pulse", source, pa_name=PULSE_PCM, pulse_source=source, pulse_index=index)


def _resolve_system(sd) -> _Target:
    if sys.platform.startswith("linux"):
        info = pulse_info()
        if info is None:
            raise _NotFound("system audio on Linux needs PulseAudio or PipeWire (pipewire-pulse); "
                            "got: no sound server answers (or libpulse is missing)")
        sink = info.get("default_sink", "")
        if not sink or sink == "@DEFAULT_SINK@":
            raise _NotFound("system audio: PulseAudio has no default sink (no output device)")
        monitor = f"{sink}.monitor"
        sources = pulse_sources() or []
        if not any(s["name"] == monitor for s in sources):
            raise _NotFound(f"system audio: the default sink {sink!r} has no monitor source {monitor!r}; "
                            f"sources: {_quote_list([s['name'] for s in sources])}")
        return _pulse_target(monitor, sources)
    if sys.platform == "win32":
        try:
            import pyaudiowpatch  # noqa: F401
        except ImportError as e:
            raise _NotFound("system audio on Windows needs the optional package pyaudiowpatch for WASAPI "
                            "loopback (pip install pyaudiowpatch); or pass a loopback input's name such as "
                            "'Stereo Mix' (run `vcam devices`)") from e
        return _Target("loopback", "default output (WASAPI loopback)")
    if sys.platform == "darwin":
        raise _NotFound("system audio on macOS needs a loopback device: install BlackHole "
                        "(https://existential.audio/blackhole/), send the output to it (a Multi-Output Device "
                        "keeps your speakers), and pass its name, e.g. 'BlackHole 2ch' (run `vcam devices`)")
    raise _NotFound(f"system audio is not supported on {sys.platform}; pass an input device's name "
                    "(run `vcam devices`)")


def _base_name(name: str) -> str:
    """``name`` without ALSA's card suffix ``" (hw:1,0)"``, which changes when a USB device is replugged."""
    return re.sub(r"\s*\(hw:\d+,\d+\)$", "", name)


def _resolve_again(spec: str, sd, found: _Target) -> _Target:
    """The target for reopening what ``spec`` first resolved to (``found``): the same device by
    its exact name, else (replugged under another name) what ``spec`` means now."""
    from vcam.runtime.audio_in import input_devices  # a cycle at import time otherwise

    if found.kind == "pulse":
        sources = pulse_sources() or []
        if any(s["name"] == found.pulse_source for s in sources):
            return _pulse_target(found.pulse_source, sources)
    else:
        names = [d["name"] for d in input_devices(sd)]
        if found.pa_name in names:
            return _Target("portaudio", found.pa_name, pa_name=found.pa_name)
        if spec.strip().isdigit():  # an index: look for the same device under its new card number
            base = _base_name(found.pa_name or "")
            same = [n for n in names if _base_name(n) == base]
            if len(same) == 1:
                return _Target("portaudio", same[0], pa_name=same[0])
            raise _NotFound(f"audio input {found.label!r} is not there; inputs: {_quote_list(names)}")
    return _resolve(spec, sd)


def _resolve(spec: str, sd) -> _Target:
    """The target ``spec`` means now, or :class:`_NotFound` (one line naming what exists)."""
    from vcam.runtime.audio_in import input_devices

    if spec == SYSTEM:
        return _resolve_system(sd)
    devices = input_devices(sd)
    if spec == MIC:
        for d in devices:
            if d["default"]:
                return _Target("portaudio", d["name"], pa_name=d["name"])
        raise _NotFound(f"audio input 'mic': there is no default input device; inputs: "
                        f"{_quote_list([d['name'] for d in devices])} (run `vcam devices`)")
    names = [d["name"] for d in devices]
    if spec.strip().isdigit():
        i = int(spec)
        for d in devices:
            if d["index"] == i:
                return _Target("portaudio", d["name"], pa_name=d["name"])
        raise _NotFound(f"audio input {spec!r}: no input device has index {i}; inputs: "
                        + ", ".join(f"{d['index']} {d['name']!r}" for d in devices[:8]) + " (run `vcam devices`)")
    want = spec.strip().lower()
    exact = [n for n in names if n.lower() == want]
    if exact:
        return _Target("portaudio", exact[0], pa_name=exact[0])
    sources = pulse_sources() if sys.platform.startswith("linux") else None
    src_names = [s["name"] for s in sources or []]
    hit = next((n for n in src_names if n.lower() == want), None)
    if hit is None:
        hit_pa = _one(spec, [n for n in names if want in n.lower()], "input devices")
        if hit_pa is not None:
            return _Target("portaudio", hit_pa, pa_name=hit_pa)
        hit = _one(spec, [n for n in src_names if want in n.lower()], "PulseAudio sources")
    if hit is not None:
        return _pulse_target(hit, sources or [])
    pulse_part = f"; PulseAudio sources: {_quote_list(src_names)}" if sources is not None else ""
    raise _NotFound(f"no audio input matches {spec!r}; inputs: {_quote_list(names)}{pulse_part} (run `vcam devices`)")


# --------------------------------------------------------------------------- streams


class _PyAudioStream:
    """A pyaudiowpatch (PyAudio) input stream shaped like a sounddevice stream (``active``, ``close``)."""

    def __init__(self, pa, stream) -> None:
        self._pa, self._stream = pa, stream

    @property
    def active(self) -> bool:
        try:
            return bool(self._stream.is_active())
        except Exception:
            return False

    def close(self, ignore_errors: bool = True) -> None:
        try:
            self._stream.stop_stream()
            self._stream.close()
        finally:
            self._pa.terminate()


def _open_loopback(ring_for_rate, frames_for_rate):
    """Open WASAPI loopback of the default output with pyaudiowpatch (Windows only; not tested
    on this project's CI). ``ring_for_rate(rate)`` returns the ring to write to,
    ``frames_for_rate(rate)`` the frames per callback. Returns ``(stream, label, rate)``."""
    import pyaudiowpatch as pyaudio

    pa = pyaudio.PyAudio()
    try:
        wasapi = pa.get_host_api_info_by_type(pyaudio.paWASAPI)
        speakers = pa.get_device_info_by_index(wasapi["defaultOutputDevice"])
        if not speakers.get("isLoopbackDevice"):
            for lb in pa.get_loopback_device_info_generator():
                if speakers["name"] in lb["name"]:
                    speakers = lb
                    break
            else:
                raise _NotFound(f"system audio: no WASAPI loopback device for the output {speakers['name']!r}")
        channels = max(1, int(speakers["maxInputChannels"]))
        rate = int(speakers["defaultSampleRate"])  # shared-mode loopback runs at the mix rate
        ring = ring_for_rate(rate)
        write = ring.write
        cont = pyaudio.paContinue

        def callback(in_data, frame_count, time_info, status):
            # Same contract as AudioSource's sounddevice callback: copy into the ring, nothing else.
            write(np.frombuffer(in_data, np.float32).reshape(frame_count, channels), bool(status))
            return (None, cont)

        stream = pa.open(format=pyaudio.paFloat32, channels=channels, rate=rate, input=True,
                         input_device_index=speakers["index"], frames_per_buffer=frames_for_rate(rate),
                         stream_callback=callback)
        stream.start_stream()
        return _PyAudioStream(pa, stream), f"{speakers['name']} (WASAPI loopback)", rate
    except BaseException:
        pa.terminate()
        raise
