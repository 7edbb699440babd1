"""AudioSource against a real PulseAudio server: a null sink, its monitor, paplay, PortAudio."""
# ruff: noqa: F811  (test arguments are named like the imported fixture)

from __future__ import annotations

import json
import os
import time
import wave

import numpy as np
import pytest
from fixtures_pulse import pulse_null_sink  # noqa: F401  (a fixture)

from vcam.runtime import audio_in
from vcam.runtime.audio_in import AudioSource
from vcam.runtime.errors import DeviceError
from vcam.assets import ASSETS_DIR

SPEECH = ASSETS_DIR / "en_ljspeech_LJ001-0001.wav"


def _speech16k() -> np.ndarray:
    with wave.open(str(SPEECH)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _take(src: AudioSource, seconds: float, timeout: float) -> np.ndarray:
    """Read ``seconds`` of audio from the ring as it arrives."""
    ring = src.ring
    want = int(seconds * ring.rate)
    got = np.zeros(want, np.float32)
    n = 0
    deadline = time.monotonic() + timeout
    while n < want:
        if time.monotonic() > deadline:
            raise AssertionError(f"got {n} of {want} samples in {timeout} s; status {src.status()}")
        n += ring.read_new(got[n:])
        time.sleep(0.01)
    return got


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _best_correlation(ref: np.ndarray, x: np.ndarray) -> tuple[float, int]:
    """Max over lags of the normalised correlation of ``x`` with the overlapping part of ``ref``."""
    x = x - x.mean()
    n = len(ref) + len(x)
    xc = np.fft.irfft(np.fft.rfft(ref, n) * np.conj(np.fft.rfft(x, n)), n)
    lag = int(np.argmax(xc))
    if lag > n // 2:
        lag -= n  # x[i] lines up with ref[i + lag], lag < 0: x starts before ref
    a, b = (ref[lag:], x) if lag >= 0 else (ref, x[-lag:])
    m = min(len(a), len(b))
    a, b = a[:m], b[:m]
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)), lag


def _flowing(src: AudioSource, timeout: float = 6.0) -> None:
    w = src.ring.written
    _wait(lambda: src.ring.written > w + 800, timeout, f"samples from {src.status()['device']}")


def test_system_captures_what_the_sink_plays(pulse_null_sink):
    pulse_null_sink.set_default()
    with AudioSource("system") as src:
        st = src.status()
        assert st["state"] == "running" and st["device"] == pulse_null_sink.monitor, st
        assert src.ring.rate == 16000
        _flowing(src)
        src.ring.skip_to_newest(0)
        silence = _take(src, 0.3, timeout=3.0)
        pulse_null_sink.play(SPEECH)
        captured = _take(src, 2.5, timeout=6.0)
        st = src.status()
        json.dumps(st)
    ref = _speech16k()[:16000 * 5]
    assert _rms(captured) > 0.02, f"speech RMS {_rms(captured):.4f}"
    assert _rms(captured) > 30 * (_rms(silence) + 1e-4), (_rms(captured), _rms(silence))
    # it is *this* speech: normalised cross-correlation with the file at the best lag
    corr, lag = _best_correlation(ref, captured)
    assert corr > 0.8, f"captured audio correlates {corr:.2f} with the speech file (lag {lag})"
    assert st["status_flags"] >= 0 and st["last_audio_ms_ago"] is not None


def test_named_source_by_part_of_its_name(pulse_null_sink):
    # the sink name is a unique part of its monitor's name "<sink>.monitor"
    src = AudioSource(pulse_null_sink.sink)
    try:
        src.start()
        assert src.status()["device"] == pulse_null_sink.monitor
        pulse_null_sink.play(np.full(8000, 0.25, np.float32) * np.sin(np.arange(8000) * 0.3), rate=16000)
        _flowing(src)
    finally:
        src.close()


def test_portaudio_device_by_name_and_index(pulse_null_sink):
    pulse_null_sink.set_default()  # the ALSA 'pulse' device records from the default source
    devices = {d["name"]: d["index"] for d in audio_in.input_devices()}
    if audio_in.PULSE_PCM not in devices:
        audio_in.refresh_portaudio()
        devices = {d["name"]: d["index"] for d in audio_in.input_devices()}
    assert audio_in.PULSE_PCM in devices, devices
    for spec in (audio_in.PULSE_PCM, str(devices[audio_in.PULSE_PCM])):
        with AudioSource(spec) as src:
            st = src.status()
            assert st["state"] == "running" and st["device"] == audio_in.PULSE_PCM, st


def test_unknown_name_is_a_one_line_device_error():
    with pytest.raises(DeviceError) as e:
        AudioSource("no_such_microphone_xyz").start()
    msg = str(e.value)
    assert "no_such_microphone_xyz" in msg and "vcam devices" in msg and "\n" not in msg, msg
    assert "inputs:" in msg


def test_device_vanishes_and_comes_back(pulse_null_sink):
    src = AudioSource(pulse_null_sink.monitor, reopen_s=0.3)
    try:
        src.start()
        assert src.status()["state"] == "running"
        _flowing(src)
        pulse_null_sink.unload()
        _wait(lambda: src.status()["state"] == "waiting", 3.0, "state 'waiting' after the sink was unloaded")
        st = src.status()
        assert pulse_null_sink.monitor in st["error"], st
        _wait(lambda: not audio_in.pulse_streams_of_pid(os.getpid(), "source-outputs"), 2.0, "the lost stream to be closed")
        time.sleep(0.7)
        assert src.status()["state"] == "waiting" and src.reopen_attempts >= 1
        pulse_null_sink.reload()
        _wait(lambda: src.status()["state"] == "running", 3.0, "state 'running' after the sink came back")
        st = src.status()
        assert st["reopens"] == 1 and st["error"] is None and st["device"] == pulse_null_sink.monitor, st
        _flowing(src)
    finally:
        src.close()


def test_close_is_idempotent_and_releases_the_device(pulse_null_sink):
    src = AudioSource(pulse_null_sink.monitor)
    with pytest.raises(RuntimeError):
        src.ring  # noqa: B018  (not started)
    assert src.status()["state"] == "closed"
    src.start()
    src.start()  # starting twice is harmless
    assert audio_in.pulse_streams_of_pid(os.getpid(), "source-outputs"), "no record stream while running"
    thread = src._thread
    src.close()
    src.close()
    assert src.status()["state"] == "closed"
    assert not thread.is_alive()
    assert audio_in._open_streams == 0
    _wait(lambda: not audio_in.pulse_streams_of_pid(os.getpid(), "source-outputs"), 2.0, "close() to release the device")
    with pytest.raises(RuntimeError):
        src.start()
    # the device can be opened again at once
    with AudioSource(pulse_null_sink.monitor) as again:
        assert again.status()["state"] == "running"


def test_system_follows_the_default_sink(pulse_null_sink):
    from fixtures_pulse import NullSink

    pulse_null_sink.set_default()
    other = NullSink(pulse_null_sink.sink + "_b")
    other.load()
    try:
        with AudioSource("system", reopen_s=0.3) as src:
            assert src.status()["device"] == pulse_null_sink.monitor
            other.set_default()  # e.g. headphones plugged in
            _wait(lambda: src.status()["device"] == other.monitor and src.status()["state"] == "running", 3.0,
                  "the source to move to the new default sink's monitor")
            assert src.status()["reopens"] == 1
    finally:
        other.teardown()
