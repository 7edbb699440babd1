"""Where the virtual microphone's audio goes, per platform.

* Linux (:class:`PulseMicDevice`): vcam makes the microphone itself with the sound server's
  own modules, which PulseAudio and PipeWire (pipewire-pulse) both have: a null sink
  ``<name>_feed`` that vcam plays into, and a remap source ``<name>`` ("vcam microphone") on
  that sink's monitor, which call apps list as a microphone. Both carry the property
  ``vcam.pid``; on exit vcam unloads them. A run that crashed leaves them behind: the next
  run finds them by name, sees their process is gone, and replaces them. While another
  running vcam owns them, the name is refused.
* Windows (:class:`NamedOutputDevice`): a virtual audio cable, VB-Audio's "CABLE Input"; the
  call app picks "CABLE Output" as its microphone.
* macOS (:class:`NamedOutputDevice`): BlackHole; the call app picks the same BlackHole device
  as its microphone.

Each device's :meth:`create` returns an :class:`OutputTarget` (the PortAudio output to open
and the environment to open it in), :meth:`check` says why the device is lost (``None``: it is
fine), :meth:`remove` undoes :meth:`create`. Nothing happens at import time.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from vcam.runtime.errors import DeviceError
from vcam.runtime.pulse import (
    PulseUnavailable,
    load_module,
    move_stream,
    pulse_info,
    pulse_modules,
    pulse_sinks,
    pulse_sources,
    pulse_streams_of_pid,
    unload_module,
)

PULSE_PCM = "pulse"  # PortAudio's name for the ALSA PulseAudio plugin (as vcam.runtime.audio_in)


class MicUnavailable(DeviceError):
    """The platform cannot give a virtual microphone now (no sound server, no module support,
    no virtual cable installed). The camera keeps running; the message says what to do."""


class MicNameTaken(DeviceError):
    """Another running vcam (or another program) owns the microphone's name."""


@dataclass(frozen=True)
class OutputTarget:
    """A PortAudio output to play the delayed voice into."""

    device: Any  # PortAudio device index or name
    label: str  # what the call app lists
    env: dict[str, str] = field(default_factory=dict)  # set while the stream opens (PULSE_SINK)
    pulse_sink: str | None = None  # Linux: the sink our playback stream must land on


# --------------------------------------------------------------------------- Linux



def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_vcam(pid: int) -> bool:
    """Whether process ``pid`` runs vcam (Linux /proc; elsewhere: assumed when it is alive)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"vcam" in f.read()
    except OSError:
        return _pid_alive(pid)


_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class PulseMicDevice:
    """The microphone ``name`` on PulseAudio / PipeWire, made of a null sink and a remap source."""

    kind = "pulse"

    def __init__(self, name: str = "vcam_mic", description: str = "vcam microphone", *, rate: int = 48000) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"microphone name: expected letters, digits, '_', '-' or '.', got {name!r}")
        if "'" in description or '"' in description:
            raise ValueError(f"microphone description: quotes are not allowed, got {description!r}")
        self.name = name
        self.feed = f"{name}_feed"
        self.description = description
        self.rate = int(rate)
        self.modules: list[int] = []  # ours, in load order

    @property
    def sources(self) -> frozenset[str]:
        """The sound server's sources that carry this microphone's audio (the source itself and
        the feed's monitor): an audio input that is one of them would hear the microphone."""
        return frozenset({self.name, f"{self.feed}.monitor"})

    # -- lifecycle --

    def create(self) -> OutputTarget:
        """Load the modules (replacing a crashed run's). Raises :class:`MicNameTaken` or
        :class:`MicUnavailable` with one line saying what to do."""
        if self.modules and self.check() is None:
            return self._target()
        self.modules = []
        if pulse_info() is None:
            raise MicUnavailable("virtual microphone: no PulseAudio/PipeWire server answers (or libpulse is missing); "
                                 "the call app can use your own microphone meanwhile")
        self._clear_leftovers()
        pid = os.getpid()
        sink_props = f"\"device.description='{self.description} feed (used by vcam)' vcam.pid={pid}\""
        src_props = (f"\"device.description='{self.description}' vcam.pid={pid} "
                     "device.icon_name=audio-input-microphone\"")
        first = self._load("module-null-sink", f"sink_name={self.feed}", f"sink_properties={sink_props}",
                           f"rate={self.rate}", "channels=1")
        try:
            self._load("module-remap-source", f"master={self.feed}.monitor", f"source_name={self.name}",
                       f"source_properties={src_props}", "channels=1")
        except BaseException:
            unload_module(first)
            self.modules = []
            raise
        return self._target()

    def check(self) -> str | None:
        """Why the microphone is lost (``None``: both modules are loaded)."""
        modules = pulse_modules()
        if modules is None:
            return "no sound server answers"
        loaded = {m[0] for m in modules}
        if not self.modules or any(m not in loaded for m in self.modules):
            return "its modules are gone (the sound server restarted, or someone unloaded them)"
        return None

    def remove(self) -> None:
        """Unload our modules (source first). Idempotent; errors ignored (the server may be gone)."""
        for m in reversed(self.modules):
            unload_module(m)
        self.modules = []

    def forget(self) -> None:
        """Drop the module numbers without unloading (after a server restart they mean nothing)."""
        self.modules = []

    # -- helpers --

    def _target(self) -> OutputTarget:
        return OutputTarget(device=PULSE_PCM, label=self.description, env={"PULSE_SINK": self.feed},
                            pulse_sink=self.feed)

    def _load(self, module: str, *args: str) -> int:
        try:
            index = load_module(module, " ".join(args))
        except PulseUnavailable as e:
            raise MicUnavailable(f"virtual microphone: {e}; with PipeWire install pipewire-pulse, "
                                 "or run with --no-mic") from None
        self.modules.append(index)
        return index

    def owners(self) -> list[tuple[int, int]]:
        """``[(module index, vcam.pid)]`` of loaded modules that make our sink or source."""
        found = []
        for index, _name, args in pulse_modules() or []:
            if f"sink_name={self.feed} " in args + " " or f"source_name={self.name} " in args + " ":
                m = re.search(r"vcam\.pid=(\d+)", args)
                found.append((index, int(m.group(1)) if m else -1))
        return found

    def _clear_leftovers(self) -> None:
        for index, pid in self.owners():
            if pid == os.getpid():
                continue
            if pid > 0 and _pid_alive(pid) and _is_vcam(pid):
                raise MicNameTaken(f"virtual microphone {self.name!r} belongs to another running vcam (pid {pid}); "
                                   "stop that one (`vcam ctl quit`), or give this one another name "
                                   "([mic] name in the config) or run it with --no-mic")
            if pid < 0:
                raise MicNameTaken(f"virtual microphone {self.name!r}: the sound server already has a device by that "
                                   f"name that vcam did not make (module {index}); set [mic] name to another name")
            unload_module(index)  # a crashed run's: replace it
        names = [s["name"] for s in pulse_sources() or []]
        if self.name in names:
            raise MicNameTaken(f"virtual microphone {self.name!r}: the sound server already has a source by that name "
                               "that vcam did not make; set [mic] name to another name")


def ensure_on_sink(sink_name: str) -> bool:
    """Move this process's playback streams onto ``sink_name`` when they are elsewhere (an
    ALSA plugin that ignores ``PULSE_SINK``); returns whether one had to move. Never puts the
    voice on the speakers silently: a stream that cannot be moved is reported by the caller."""
    sinks = pulse_sinks()
    if sinks is None:
        return False
    index = next((s["index"] for s in sinks if s["name"] == sink_name), None)
    moved = False
    for si, sink in pulse_streams_of_pid(os.getpid(), "sink-inputs"):
        if index is not None and sink != index:
            move_stream("sink-inputs", si, sink_name)
            moved = True
    return moved


# --------------------------------------------------------------------------- Windows, macOS

CABLE_HELP = ("install VB-Audio Virtual Cable (https://vb-audio.com/Cable/), restart vcam, and pick "
              "\"CABLE Output (VB-Audio Virtual Cable)\" as the microphone in the call app; or name another "
              "output in [mic] device")
BLACKHOLE_HELP = ("install BlackHole 2ch (https://existential.audio/blackhole/, or `brew install blackhole-2ch`), "
                  "restart vcam, and pick \"BlackHole 2ch\" as the microphone in the call app; or name another "
                  "output in [mic] device")
_HOSTAPI_RANK = ("Windows WASAPI", "Core Audio", "Windows DirectSound", "MME", "Windows WDM-KS")


class NamedOutputDevice:
    """An installed virtual cable, found by (part of) its output's name.

    ``pattern``: e.g. ``"CABLE Input"``; ``help_text``: what to do when it is missing;
    ``sd``: the ``sounddevice`` module (tests pass a fake one); ``avoid``: a device name the
    microphone must not play into (the audio source itself: that would feed back).
    """

    kind = "cable"

    def __init__(self, pattern: str, help_text: str, *, sd: Any = None, avoid: str | None = None) -> None:
        self.pattern = pattern
        self.help_text = help_text
        self._sd = sd
        self.avoid = avoid
        self.found: str | None = None

    def _sounddevice(self):
        if self._sd is None:
            from vcam.runtime.audio_in import import_sounddevice

            self._sd = import_sounddevice()
        return self._sd

    def outputs(self) -> list[dict[str, Any]]:
        """Output devices matching the pattern: ``[{"index", "name", "hostapi"}]``, best host API first."""
        sd = self._sounddevice()
        try:
            devices, apis = sd.query_devices(), sd.query_hostapis()
        except Exception:  # noqa: BLE001 - PortAudio not initialised: nothing found
            return []
        want = self.pattern.lower()
        hits = [{"index": int(d["index"]), "name": str(d["name"]), "hostapi": str(apis[d["hostapi"]]["name"])}
                for d in devices if d["max_output_channels"] > 0 and want in str(d["name"]).lower()]

        def rank(h):
            return _HOSTAPI_RANK.index(h["hostapi"]) if h["hostapi"] in _HOSTAPI_RANK else len(_HOSTAPI_RANK)
        return sorted(hits, key=rank)

    def create(self) -> OutputTarget:
        hits = self.outputs()
        if not hits:
            raise MicUnavailable(f"virtual microphone: no output device named like {self.pattern!r}: {self.help_text}")
        if self.avoid:
            avoid = self.avoid.lower()
            usable = [h for h in hits if avoid not in h["name"].lower() and h["name"].lower() not in avoid]
            if not usable:
                raise MicUnavailable(f"virtual microphone: {hits[0]['name']!r} is also the audio source; playing the "
                                     "voice into it would feed back. Install a second virtual device for the "
                                     "microphone (e.g. BlackHole 16ch) and name it in [mic] device")
            hits = usable
        best = hits[0]
        self.found = best["name"]
        return OutputTarget(device=best["index"], label=best["name"])

    def check(self) -> str | None:
        if self.found is None:
            return "not created"
        names = [h["name"] for h in self.outputs()]
        return None if self.found in names else f"{self.found!r} is gone"

    def remove(self) -> None:
        self.found = None

    def forget(self) -> None:
        self.found = None


def make_device(name: str, description: str, device: str = "", *, platform: str | None = None,
                sd: Any = None, avoid: str | None = None):
    """The microphone device for this platform: ``device`` (an output's name) overrides the
    platform's default (Linux: vcam's own PulseAudio source; Windows: VB-Audio CABLE; macOS: BlackHole)."""
    platform = platform or sys.platform
    if device:
        return NamedOutputDevice(device, f"no output named like {device!r}; check [mic] device (run `vcam devices`)",
                                 sd=sd, avoid=avoid)
    if platform.startswith("linux"):
        return PulseMicDevice(name, description)
    if platform == "win32":
        return NamedOutputDevice("CABLE Input", CABLE_HELP, sd=sd, avoid=avoid)
    if platform == "darwin":
        return NamedOutputDevice("BlackHole", BLACKHOLE_HELP, sd=sd, avoid=avoid)
    raise MicUnavailable(f"virtual microphone: not supported on {platform}; name an output device in [mic] device")
