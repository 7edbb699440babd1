"""``vcam bench --av-sync``: finding burst onsets on the microphone, the lips' half-open
frame, and a short real run against a daemon."""

from __future__ import annotations

import numpy as np
from fixtures_pulse import ensure_pulse_server

from vcam.bench import avsync as bench_avsync
from vcam.assets import SAMPLE_AUDIO, SAMPLE_PHOTO

RATE = bench_avsync.RATE


def test_mic_onsets_are_found_by_correlation_and_timed_by_the_recorder_clock():
    rng = np.random.default_rng(0)
    bursts = [rng.standard_normal(4800).astype(np.float32) * 0.3 for _ in range(3)]
    x = np.zeros(RATE * 6, np.float32)
    at = [RATE * 1, RATE * 2 + 123, RATE * 4 + 7]
    for a, b in zip(at, bursts, strict=True):
        x[a:a + b.shape[0]] = b
    t0 = 5_000_000_000
    starts = np.arange(0, x.shape[0], 240)
    adc = t0 + starts * 1e9 / RATE + rng.normal(0, 1e6, starts.shape)  # jittery callbacks
    info = np.stack([starts, adc.astype(np.int64), np.zeros_like(starts)], 1)
    expect = [t0 + int(a * 1e9 / RATE) + 300_000_000 for a in at]  # a guess 300 ms off
    found = bench_avsync.mic_onsets(x, info, bursts, expect)
    for (onset, r), a in zip(found, at, strict=True):
        assert r > 0.999
        assert abs(onset - (t0 + a * 1e9 / RATE)) < 1.5e6  # within 1.5 ms


def test_offset_is_the_half_open_frame_minus_the_mic_onset():
    t = np.arange(0, 2_000_000_000, 33_333_333, dtype=np.int64)
    gaps = np.full(t.shape, 0.02)
    onset = 1_000_000_000
    gaps[t >= onset + 40_000_000] = 0.30  # the mouth is open from 40 ms after the onset
    gaps[(t >= onset) & (t < onset + 40_000_000)] = 0.10  # below halfway (0.16)
    (off,) = bench_avsync.offsets([(onset, 1.0)], t, gaps)
    first_open = t[t >= onset + 40_000_000][0]
    assert off == (first_open - onset) / 1e6
    still = np.full(t.shape, 0.02)
    assert bench_avsync.offsets([(onset, 1.0)], t, still) == [None]  # never opened: not counted


def test_summary_and_table():
    s = bench_avsync.summarise([10.0, -5.0, None, 30.0], [1.0, 0.99, 0.98, 1.0], [110.0, 112.0])
    assert s["measured"] == 3 and s["median_offset_ms"] == 10.0 and s["correlation_min"] == 0.98
    text = bench_avsync.table({"fps": 30, "minutes": 30, "start": {**s, "daemon": {"delay_ms": 120,
                                                                                    "underruns": 0}}},
                              "test machine")
    assert "| start | 10 |" in text and "test machine" in text


def test_bench_av_sync_measures_a_running_daemon(request, sample_portraits):  # noqa: ARG001 - its private cache
    """For real, briefly: the daemon's microphone is recorded from outside, every burst is found
    on it intact, and the lips open within the bar of the voice."""
    ensure_pulse_server(request.config)
    r = bench_avsync.run(SAMPLE_PHOTO, trials=5, minutes=0, fps=30)
    s = r["start"]
    print(s)
    assert s["measured"] >= 4 and s["correlation_min"] > 0.95
    assert abs(s["median_offset_ms"]) <= 45.0  # the README's table holds the 20-burst figures
    assert s["daemon"]["state"] == "running" and s["daemon"]["underruns"] == 0


def test_onset_bursts_begin_where_speech_begins():
    from vcam.runtime.audio_file import load_audio

    bursts = bench_avsync.onset_bursts(6)
    assert len(bursts) == 6
    for b in bursts:
        assert b.shape == (int(bench_avsync.BURST_S * RATE),)
        assert np.abs(b).max() == np.float32(0.5)

    def rms(x):
        return float(np.sqrt(np.mean(x ** 2)))

    pcm = load_audio(SAMPLE_AUDIO, rate=RATE)
    starts = bench_avsync.onset_starts(pcm)
    assert len(starts) >= 3
    ms = RATE // 1000
    for s in starts:  # a pause before, the sound rising in the first 10 ms, speech by 60 ms
        pause, first, speech = rms(pcm[s - 100 * ms:s]), rms(pcm[s:s + 10 * ms]), rms(pcm[s + 10 * ms:s + 60 * ms])
        assert pause < 0.25 * speech and first > 2 * rms(pcm[s - 20 * ms:s - 10 * ms]), (s, pause, first, speech)


def test_onset_bursts_from_another_recording_and_one_without_pauses(tmp_path):
    import pytest

    from vcam.runtime.errors import InputError
    from vcam.runtime.audio_file import load_audio

    speech = load_audio(SAMPLE_AUDIO, rate=RATE)
    path = tmp_path / "again.wav"
    import wave
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(speech, -1, 1) * 32767).astype("<i2").tobytes())
    assert len(bench_avsync.onset_bursts(3, path)) == 3
    hum = tmp_path / "hum.wav"
    with wave.open(str(hum), "wb") as w:  # loud all the way through: no onset after a pause
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.sin(np.arange(RATE * 3) * 0.05) * 20000).astype("<i2").tobytes())
    with pytest.raises(InputError, match="no speech onset after a pause"):
        bench_avsync.onset_bursts(3, hum)
