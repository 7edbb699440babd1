"""What ``vcam devices`` shows: microphones, system-audio sources and virtual cameras.

:func:`list_devices` returns a JSON-safe dict; :func:`format_devices` makes it readable. Neither
raises when PortAudio, PulseAudio or a camera driver is missing: the ``notes`` say so instead.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from vcam.runtime import audio_in
from vcam.runtime.errors import DeviceError

log = logging.getLogger(__name__)

V4L2_SYSFS = "/sys/class/video4linux"
_LOOPBACK_DRIVER = "v4l2 loopback"  # v4l2_capability.driver of v4l2loopback devices
_LOOPBACK_ATTRS = ("max_openers", "buffers", "format")  # sysfs attributes only v4l2loopback adds
_MAC_LOOPBACK_NAMES = ("blackhole", "loopback", "soundflower", "vb-cable", "ishowu")
_WIN_LOOPBACK_NAMES = ("stereo mix", "what u hear", "wave out", "cable output")


def list_devices() -> dict[str, Any]:
    """Devices vcam can use, JSON-safe.

    Returns
    -------
    dict
        ``"inputs"``: audio inputs ``[{"index", "name", "hostapi", "channels", "default_rate",
        "default"}]`` (a name, a unique part of it, or the index is an ``--audio``-style spec);
        ``"system"``: system-audio sources ``[{"name", "description", "default", ...}]``
        (``"default"``: what the spec ``"system"`` captures); ``"cameras"``: virtual cameras
        ``[{"device", "label", "driver"}]``; ``"notes"``: ``{"inputs"|"system"|"cameras": [str]}``,
        what is missing or how to get it; ``"mics"``: the virtual microphone ``[{"name",
        "description", "state", "pid"}]`` (Linux: the source `vcam run` publishes, ``state``
        ``"published"`` with the owning ``pid``, or ``"not published"``; Windows/macOS: the
        virtual cable outputs found, ``state`` ``"installed"``).
    """
    notes: dict[str, list[str]] = {"inputs": [], "system": [], "cameras": [], "mics": []}
    inputs = _inputs(notes["inputs"])
    system = _system_sources(inputs, notes["system"])
    cameras = _cameras(notes["cameras"])
    mics = _virtual_mics(notes["mics"])
    return {"inputs": inputs, "system": system, "cameras": cameras, "mics": mics, "notes": notes}


def format_devices(d: dict[str, Any]) -> str:
    """``list_devices()`` as text for a terminal."""
    lines = ["Microphones and other inputs (audio source: 'mic' = the one marked *, or a name or index):"]
    inputs = d.get("inputs") or []
    if inputs:
        w = max(len(x["name"]) for x in inputs)
        for x in inputs:
            mark = "*" if x.get("default") else " "
            lines.append(f"  {mark} {x['index']:>3}  {x['name']:<{w}}  {x['channels']} ch, "
                         f"{x['default_rate']} Hz, {x['hostapi']}")
    else:
        lines.append("    (none)")
    lines += [f"    note: {n}" for n in d.get("notes", {}).get("inputs", [])]
    lines.append("System audio (what the computer plays; audio source 'system' = the one marked *, or a name):")
    system = d.get("system") or []
    if system:
        w = max(len(x["name"]) for x in system)
        for x in system:
            mark = "*" if x.get("default") else " "
            desc = f"  {x['description']}" if x.get("description") else ""
            lines.append(f"  {mark} {x['name']:<{w}}{desc}")
    else:
        lines.append("    (none)")
    lines += [f"    note: {n}" for n in d.get("notes", {}).get("system", [])]
    lines.append("Virtual cameras:")
    cameras = d.get("cameras") or []
    for c in cameras:
        driver = f"  ({c['driver']})" if c.get("driver") else ""
        lines.append(f"    {c['device']}  {c.get('label') or ''}".rstrip() + driver)
    if not cameras:
        lines.append("    (none)")
    lines += [f"    note: {n}" for n in d.get("notes", {}).get("cameras", [])]
    lines.append("Virtual microphone (the voice in step with the face; pick it in the call app):")
    for m in d.get("mics") or []:
        who = f" by vcam pid {m['pid']}" if m.get("pid") else ""
        lines.append(f"    {m['name']}  \"{m.get('description') or m['name']}\"  {m['state']}{who}")
    if not d.get("mics"):
        lines.append("    (none)")
    lines += [f"    note: {n}" for n in d.get("notes", {}).get("mics", [])]
    return "\n".join(lines)


# --------------------------------------------------------------------------- virtual microphone


def _virtual_mics(notes: list[str]) -> list[dict[str, Any]]:
    from vcam.sinks.mic_devices import MicUnavailable, NamedOutputDevice, PulseMicDevice, make_device

    try:
        from vcam.app.settings import load_settings

        cfg = load_settings(None).mic
        name, description, device = cfg.name, cfg.description, cfg.device
    except Exception:  # noqa: BLE001 - a broken config is reported by the commands that use it
        name, description, device = "vcam_mic", "vcam microphone", ""
    try:
        dev = make_device(name, description, device)
    except MicUnavailable as e:
        notes.append(str(e))
        return []
    if isinstance(dev, PulseMicDevice):
        from vcam.runtime.audio_in import pulse_sources

        sources = pulse_sources()
        if sources is None:
            notes.append("no PulseAudio/PipeWire server answers: `vcam run` publishes the microphone when one does")
            return []
        pid = next((p for _, p in dev.owners()), None)
        published = any(s["name"] == name for s in sources)
        if not published:
            notes.append(f"`vcam run` publishes {description!r} ({name}) while it runs; --no-mic turns it off")
        return [{"name": name, "description": description, "state": "published" if published else "not published",
                 "pid": pid if pid and pid > 0 else None}]
    assert isinstance(dev, NamedOutputDevice)
    hits = dev.outputs()
    if not hits:
        notes.append(dev.help_text)
    return [{"name": h["name"], "description": f"{h['hostapi']} output", "state": "installed", "pid": None}
            for h in hits]


# --------------------------------------------------------------------------- audio inputs


def _inputs(notes: list[str]) -> list[dict[str, Any]]:
    try:
        sd = audio_in.import_sounddevice()
    except DeviceError as e:
        notes.append(str(e))
        return []
    try:
        audio_in.refresh_portaudio(sd)  # a no-op while an AudioSource stream is open
    except Exception as e:
        notes.append(f"PortAudio could not start: {e}")
    devices = audio_in.input_devices(sd)
    if not devices:
        notes.append("PortAudio finds no audio input (no sound card, or no permission: join the 'audio' group)"
                     if sys.platform.startswith("linux") else "PortAudio finds no audio input")
    return devices


# --------------------------------------------------------------------------- system audio


def _system_sources(inputs: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    if sys.platform.startswith("linux"):
        return _pulse_monitors(inputs, notes)
    if sys.platform == "win32":
        return _wasapi_loopbacks(inputs, notes)
    if sys.platform == "darwin":
        found = [{"name": x["name"], "description": "loopback input", "default": False}
                 for x in inputs if any(k in x["name"].lower() for k in _MAC_LOOPBACK_NAMES)]
        notes.append("macOS has no built-in system-audio capture: install a loopback device such as BlackHole "
                     "(https://existential.audio/blackhole/), send the output to it (a Multi-Output Device keeps "
                     "your speakers) and pass its name as the audio source")
        return found
    notes.append(f"system audio capture is not supported on {sys.platform}")
    return []


def _pulse_monitors(inputs: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    info = audio_in.pulse_info()
    sources = audio_in.pulse_sources() if info is not None else None
    if info is None or sources is None:
        notes.append("no PulseAudio/PipeWire server answers (or libpulse is missing): system audio needs one; "
                     "start your desktop's sound server (or `pulseaudio --start`)")
        return []
    default_monitor = f"{info.get('default_sink', '')}.monitor"
    monitors = [{"name": s["name"], "index": s["index"], "description": s["description"],
                 "default": s["name"] == default_monitor, "spec": s["spec"], "state": s["state"]}
                for s in sources if s["monitor"]]
    if not monitors:
        notes.append("PulseAudio has no sink monitor (no output device)")
    elif not any(m["default"] for m in monitors):
        notes.append(f"the default sink {info.get('default_sink')!r} has no monitor")
    if inputs and not any(x["name"] == audio_in.PULSE_PCM for x in inputs):
        notes.append(f"PortAudio has no ALSA '{audio_in.PULSE_PCM}' device, which system audio is captured through: "
                     "install the ALSA PulseAudio plugin (Debian/Ubuntu: libasound2-plugins; Fedora: "
                     "alsa-plugins-pulseaudio)")
    return monitors


def _wasapi_loopbacks(inputs: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    found = [{"name": x["name"], "description": "loopback input", "default": False}
             for x in inputs if any(k in x["name"].lower() for k in _WIN_LOOPBACK_NAMES)]
    try:
        import pyaudiowpatch as pyaudio
    except ImportError:
        notes.append("audio source 'system' needs the optional package pyaudiowpatch (pip install pyaudiowpatch) "
                     "for WASAPI loopback of the default output")
        return found
    pa = pyaudio.PyAudio()
    try:
        wasapi = pa.get_host_api_info_by_type(pyaudio.paWASAPI)
        out_name = pa.get_device_info_by_index(wasapi["defaultOutputDevice"])["name"]
        for lb in pa.get_loopback_device_info_generator():
            found.append({"name": lb["name"], "description": "WASAPI loopback", "default": out_name in lb["name"]})
    except Exception as e:
        notes.append(f"WASAPI loopback devices could not be listed: {e}")
    finally:
        pa.terminate()
    return found


# --------------------------------------------------------------------------- virtual cameras


def _cameras(notes: list[str]) -> list[dict[str, Any]]:
    from vcam.sinks.camera import how_to_get_a_camera

    if sys.platform.startswith("linux"):
        cams = v4l2_loopback_cameras()
        if not cams:
            notes.append(how_to_get_a_camera("linux"))
        return cams
    if sys.platform in ("win32", "darwin"):
        notes.append("the OBS Virtual Camera is used (through pyvirtualcam); if it is missing: "
                     + how_to_get_a_camera(sys.platform))
        return []
    notes.append(how_to_get_a_camera(sys.platform))
    return []


def v4l2_loopback_cameras(sysfs: str | os.PathLike = V4L2_SYSFS,
                          dev: str | os.PathLike = "/dev") -> list[dict[str, Any]]:
    """v4l2loopback devices: ``[{"device": "/dev/video10", "label": "vcam", "driver": "v4l2 loopback"}]``.

    A ``videoN`` counts when ``VIDIOC_QUERYCAP`` on ``/dev/videoN`` names the v4l2loopback
    driver or, when that cannot be asked (no permission), when its sysfs entry has the
    attributes only v4l2loopback adds or a name saying so.
    """
    root = Path(sysfs)
    try:
        entries = sorted(root.glob("video*"), key=lambda p: (len(p.name), p.name))
    except OSError:
        return []
    cams = []
    for e in entries:
        try:
            label = (e / "name").read_text(errors="replace").strip()
        except OSError:
            label = ""
        node = Path(dev) / e.name
        driver = _querycap_driver(node)
        if driver is not None:
            is_loop = driver == _LOOPBACK_DRIVER
        else:
            is_loop = any((e / a).exists() for a in _LOOPBACK_ATTRS) or "loopback" in label.lower()
        if is_loop:
            cams.append({"device": str(node), "label": label, "driver": driver or "v4l2loopback (sysfs)"})
    return cams


def _querycap_driver(node: Path) -> str | None:
    """``v4l2_capability.driver`` of a video device node, or ``None`` when it cannot be opened."""
    try:
        import fcntl
    except ImportError:
        return None
    vidioc_querycap = 0x80685600  # _IOR('V', 0, struct v4l2_capability), sizeof = 104
    buf = bytearray(104)
    try:
        fd = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.ioctl(fd, vidioc_querycap, buf, True)
    except OSError:
        return None
    finally:
        os.close(fd)
    return bytes(buf[:16]).split(b"\0", 1)[0].decode("ascii", "replace")
