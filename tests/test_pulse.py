"""The sound server through libpulse (vcam.runtime.pulse): answers match pactl's, and the
watcher follows change events (a device appearing, vanishing, the default sink changing)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from fixtures_pulse import pulse_null_sink  # noqa: F401 (fixture)

from vcam.runtime import pulse

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PulseAudio is Linux's")


def _wait(pred, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _pactl_short(kind: str) -> dict[str, int]:
    out = subprocess.run(["pactl", "list", "short", kind], capture_output=True, text=True, check=True).stdout
    return {line.split("\t")[1]: int(line.split("\t")[0]) for line in out.splitlines() if "\t" in line}


def test_answers_match_pactl(pulse_null_sink):  # noqa: F811
    sources = pulse.pulse_sources()
    assert {s["name"]: s["index"] for s in sources} == _pactl_short("sources")
    ours = next(s for s in sources if s["name"] == pulse_null_sink.monitor)
    assert ours["monitor"] and ours["spec"].endswith("Hz") and ours["state"] in ("RUNNING", "IDLE", "SUSPENDED")
    assert {s["name"] for s in pulse.pulse_sinks()} == set(_pactl_short("sinks"))
    info = pulse.pulse_info()
    assert info["server"] and info["default_sink"]
    mods = pulse.pulse_modules()
    assert any(f"sink_name={pulse_null_sink.sink}" in arg for _, _, arg in mods)


def test_load_and_unload_a_module(pulse_null_sink):  # noqa: F811
    index = pulse.load_module("module-null-sink", f"sink_name={pulse_null_sink.sink}_x")
    try:
        assert f"{pulse_null_sink.sink}_x" in _pactl_short("sinks")
    finally:
        pulse.unload_module(index)
    assert f"{pulse_null_sink.sink}_x" not in _pactl_short("sinks")
    pulse.unload_module(index)  # gone already: ignored
    with pytest.raises(pulse.PulseUnavailable, match="cannot load module-no-such-thing"):
        pulse.load_module("module-no-such-thing", "")


def test_watcher_follows_devices_and_the_default_sink(pulse_null_sink):  # noqa: F811
    with pulse.PulseWatcher() as watch:
        assert watch.state is not None and pulse_null_sink.monitor in watch.state.sources
        first = watch.state.generation
        pulse_null_sink.unload()
        _wait(lambda: pulse_null_sink.monitor not in watch.state.sources, 2.0, "the removal to be seen")
        pulse_null_sink.reload()
        _wait(lambda: pulse_null_sink.monitor in watch.state.sources, 2.0, "the new sink to be seen")
        pulse_null_sink.set_default()
        _wait(lambda: watch.state.default_sink == pulse_null_sink.sink, 2.0, "the default sink to be seen")
        assert watch.state.generation > first and watch.events >= 3
    assert watch.state is None or watch.state.generation >= first  # closed: the thread has ended


def test_no_server_means_none_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/none")
    assert pulse.pulse_info() is None and pulse.pulse_sources() is None and pulse.pulse_modules() is None
    assert pulse.pulse_streams_of_pid(os.getpid()) == [] and pulse.pulse_sinks() is None
    with pytest.raises(pulse.PulseUnavailable, match="no PulseAudio/PipeWire server answers"):
        pulse.load_module("module-null-sink", "")
    with pulse.PulseWatcher() as watch:
        assert watch.state is None
