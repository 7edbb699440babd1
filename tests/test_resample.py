"""StreamResampler: accuracy, anti-aliasing, blocking invariance, no allocation."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from vcam.runtime.resample import StreamResampler


def _sine(f: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * f * np.arange(int(rate * seconds)) / rate).astype(np.float32)


def _run(r: StreamResampler, x: np.ndarray, sizes=None) -> np.ndarray:
    out = np.zeros(r.max_out(len(x)) + 16, np.float32)
    if sizes is None:
        return out[:r.process(x, out)].copy()
    n, a = 0, 0
    for c in sizes:
        n += r.process(x[a:a + c], out[n:])
        a += c
        if a >= len(x):
            break
    return out[:n].copy()


def _db(x: np.ndarray) -> float:
    s = x[200:-200]  # skip the filter's start-up and end
    return 20 * np.log10(np.sqrt(np.mean(np.square(s, dtype=np.float64))) * np.sqrt(2) + 1e-12)


@pytest.mark.parametrize("rate_in", [48000, 44100, 22050])
def test_1khz_stays_1khz(rate_in):
    r = StreamResampler(rate_in, 16000, max_block=4096)
    y = _run(r, _sine(1000, rate_in))
    assert abs(len(y) - 16000) <= 1
    # sample by sample against the ideal 1 kHz sine, delayed by the filter's constant delay
    j = np.arange(len(y))
    ideal = np.sin(2 * np.pi * 1000 * (j / 16000 - r.delay_in / rate_in))
    err = np.abs(y - ideal)[300:-300]
    assert err.max() < 2e-3, err.max()
    # and its spectrum peaks at 1 kHz
    spec = np.abs(np.fft.rfft(y[:16000] * np.hanning(16000)))
    assert abs(np.argmax(spec) * 16000 / 16000 - 1000) <= 1


def test_7_5khz_is_attenuated_and_nothing_aliases():
    for f, at_most_db in [(6000, 0.05), (7500, -10.0), (9000, -60.0), (12000, -60.0), (20000, -60.0)]:
        y = _run(StreamResampler(48000, 16000), _sine(f, 48000, 0.5))
        level = _db(y)
        if f == 6000:
            assert abs(level) < at_most_db, (f, level)
        else:
            assert level < at_most_db, (f, level)


def test_blocking_does_not_change_the_output():
    x = np.random.default_rng(1).standard_normal(44100).astype(np.float32)
    whole = _run(StreamResampler(44100, 16000, max_block=50000), x)
    sizes = np.random.default_rng(2).integers(1, 900, size=10000)
    chunked = _run(StreamResampler(44100, 16000, max_block=50000), x, sizes)
    small_max = _run(StreamResampler(44100, 16000, max_block=300), x)  # internal pieces
    assert len(whole) == len(chunked) == len(small_max)
    np.testing.assert_allclose(chunked, whole, atol=1e-6, rtol=0)
    np.testing.assert_allclose(small_max, whole, atol=1e-6, rtol=0)


def test_identity_and_upsampling():
    x = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    r = StreamResampler(16000, 16000)
    out = np.zeros(1000, np.float32)
    assert r.process(x, out) == 1000 and np.array_equal(out, x)
    up = StreamResampler(8000, 16000)
    y = _run(up, _sine(1000, 8000))
    assert abs(len(y) - 16000) <= 1 and abs(_db(y)) < 0.05


def test_out_too_small_and_bad_args():
    r = StreamResampler(48000, 16000)
    with pytest.raises(ValueError, match="out holds"):
        r.process(np.zeros(4800, np.float32), np.zeros(100, np.float32))
    with pytest.raises(ValueError):
        StreamResampler(0, 16000)
    with pytest.raises(ValueError):
        StreamResampler(44100.5, 16000)


def test_process_allocates_no_arrays():
    r = StreamResampler(48000, 16000, max_block=24000)
    x = np.random.default_rng(4).standard_normal(24000).astype(np.float32)
    out = np.zeros(r.max_out(24000), np.float32)
    r.process(x[:1920], out)  # warm up
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for n in (1920, 1, 24000, 777, 1920):
            r.process(x[:n], out)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # one (512, 125) float32 work matrix is 256 kB; a few small Python objects are fine
    assert peak < 16_000, f"process() peaked at {peak} bytes of new memory"
