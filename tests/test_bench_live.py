"""``vcam bench --live``: the outside-in latency measure, on synthetic frames and for real."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures_pulse import ensure_pulse_server
from vcam.bench import live as bench_live


def test_analyse_finds_the_first_frame_that_moves():
    fps = 30
    t = (np.arange(300) * 1e9 / fps).astype(np.int64)
    rng = np.random.default_rng(0)
    crops = [rng.normal(100, 0.3, (20, 30)).astype(np.float32) for _ in t]
    onsets = [int(2e9), int(6e9)]
    for on in onsets:  # the mouth opens 4 frames (~133 ms) after each onset
        first = int(np.searchsorted(t, on)) + 4
        for i in range(first, first + 10):
            crops[i] = crops[i] - 30.0
    r = bench_live.analyse(t, crops, onsets, fps=fps)
    assert r["detected"] == 2
    assert 100 < r["latency_ms"]["p50"] < 170
    assert abs(r["fps"] - fps) < 0.01


def test_speech_bursts_are_loud_at_the_start():
    bursts = bench_live.speech_bursts(4)
    assert len(bursts) == 4
    for b in bursts:
        assert b.shape == (int(bench_live.BURST_S * bench_live.RATE),)
        first = np.abs(b[: bench_live.RATE // 50]).max()
        assert first > 0.05  # a vowel right away: the onset is where we say it is


@pytest.mark.slow
def test_bench_live_measures_a_running_daemon(request, sample_portraits):  # noqa: ARG001 - its private cache
    from vcam.assets import SAMPLE_PHOTO

    ensure_pulse_server(request.config)
    r = bench_live.run(SAMPLE_PHOTO, trials=4, fps=30)
    assert r["detected"] >= 3
    assert 0 < r["latency_ms"]["p50"] < 400
    assert r["fps"] > 15
    assert r["daemon"] is not None and r["daemon"]["frames"] > 0

