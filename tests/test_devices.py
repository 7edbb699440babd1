"""vcam devices: listing never crashes, with or without PulseAudio, PortAudio devices or cameras."""
# ruff: noqa: F811  (test arguments are named like the imported fixture)

from __future__ import annotations

import json
import sys

import pytest
from fixtures_pulse import pulse_null_sink  # noqa: F401  (a fixture)

from vcam.runtime import audio_in
from vcam.app import devices
from vcam.app.devices import format_devices, list_devices, v4l2_loopback_cameras

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PulseAudio and v4l2loopback are Linux")


def _check_shape(d):
    assert set(d) >= {"inputs", "system", "cameras", "notes"}
    json.dumps(d)
    text = format_devices(d)
    for heading in ("Microphones", "System audio", "Virtual cameras"):
        assert heading in text
    return text


@linux
def test_without_a_sound_server_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/nothing-here")  # libpulse finds no server
    d = list_devices()
    text = _check_shape(d)
    assert d["system"] == []
    assert any("no PulseAudio/PipeWire server answers" in n for n in d["notes"]["system"]), d["notes"]
    assert "no PulseAudio/PipeWire server answers" in text


@linux
def test_with_pulse_lists_monitors_and_marks_the_default(pulse_null_sink):
    pulse_null_sink.set_default()
    d = list_devices()
    text = _check_shape(d)
    mine = [s for s in d["system"] if s["name"] == pulse_null_sink.monitor]
    assert len(mine) == 1 and mine[0]["default"], d["system"]
    assert sum(s["default"] for s in d["system"]) == 1
    assert f"* {pulse_null_sink.monitor}" in text
    assert d["inputs"], "PortAudio should list the ALSA 'pulse'/'default' devices while PulseAudio runs"
    assert any(x["name"] == audio_in.PULSE_PCM for x in d["inputs"])
    for x in d["inputs"]:
        assert set(x) >= {"index", "name", "default", "channels", "default_rate"}


def test_no_portaudio_inputs_is_said(monkeypatch):
    monkeypatch.setattr(devices.audio_in, "input_devices", lambda sd=None: [])
    d = list_devices()
    text = _check_shape(d)
    assert d["inputs"] == [] and d["notes"]["inputs"], d["notes"]
    assert "finds no audio input" in text


def test_v4l2loopback_cameras_from_sysfs(tmp_path):
    sysfs = tmp_path / "video4linux"
    for name, label, attrs in [("video0", "Integrated Camera: Integrated C", ()),
                               ("video10", "vcam", ("max_openers", "format")),
                               ("video2", "Dummy video device (0x0000)", ("buffers",)),
                               ("video3", "OBS v4l2 loopback", ())]:
        (sysfs / name).mkdir(parents=True)
        (sysfs / name / "name").write_text(label + "\n")
        for a in attrs:
            (sysfs / name / a).write_text("1\n")
    cams = v4l2_loopback_cameras(sysfs, tmp_path / "dev")
    assert [c["device"] for c in cams] == [str(tmp_path / "dev" / n) for n in ("video2", "video3", "video10")]
    assert cams[-1]["label"] == "vcam"
    assert v4l2_loopback_cameras(tmp_path / "missing") == []
    text = format_devices({"inputs": [], "system": [], "cameras": cams, "notes": {}})
    assert "video10  vcam" in text
