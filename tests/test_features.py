"""Causal log-mel features: streaming equals offline, silence is the floor, gain is tracked."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from vcam.runtime import features as F

ASSETS = __import__("vcam.assets", fromlist=["ASSETS_DIR"]).ASSETS_DIR
SPEECH = ASSETS / "en_ljspeech_LJ001-0001.wav"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    a, sr = sf.read(SPEECH, dtype="float32")
    assert sr == F.SAMPLE_RATE
    return a[:, 0] if a.ndim == 2 else a


def test_offline_shape_and_range(speech):
    m = F.log_mel(speech)
    assert m.shape == (len(speech) // F.HOP, F.N_MELS) and m.dtype == np.float32
    assert m.min() >= F.FLOOR and m.max() < 1.5
    assert np.isfinite(m).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_streaming_equals_offline(speech, seed):
    ref = F.log_mel(speech)
    rng = np.random.default_rng(seed)
    s = F.LogMelStream(capacity=len(ref) + 8)
    pos = 0
    while pos < len(speech):
        n = int(rng.integers(1, 1500))
        s.push(speech[pos: pos + n])
        pos += n
    assert s.frames == len(ref)
    w = np.empty((F.N_MELS, len(ref)), np.float32)
    s.window(len(ref) - 1, w)
    assert np.array_equal(w.T, ref)


def test_window_pads_with_floor_and_ring_wraps(speech):
    ref = F.log_mel(speech)
    s = F.LogMelStream(capacity=64)
    out = np.empty((F.N_MELS, 32), np.float32)
    s.push(speech[: 10 * F.HOP])
    s.window(9, out)
    assert (out[:, :22] == F.FLOOR).all() and np.array_equal(out[:, 22:], ref[:10].T)
    s.window(12, out)  # 3 frames not computed yet
    assert (out[:, -3:] == F.FLOOR).all()
    s.push(speech[10 * F.HOP: 300 * F.HOP])  # wraps the 64-frame ring several times
    s.window(299, out)
    assert np.array_equal(out, ref[268:300].T)
    with pytest.raises(ValueError):
        s.window(200, out)


def test_causal(speech):
    a = F.log_mel(speech[:20000])
    b = speech[:20000].copy()
    b[12000:] = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.3
    c = F.log_mel(b)
    k = 12000 // F.HOP  # frames 0..k-1 end at or before sample 12000
    assert np.array_equal(a[:k], c[:k])
    assert not np.array_equal(a[k], c[k])


def test_digital_silence_is_floor():
    m = F.log_mel(np.zeros(16000, np.float32))
    assert (m == F.FLOOR).all()


def test_loudness_robust(speech):
    """+10 / -20 dB of gain moves the features of speech frames little once the level is tracked.

    The clip's speech is at -20 dBFS RMS; -40 .. -10 dBFS covers whispering into a quiet mic to
    shouting into a hot one (+20 dB would clip this clip's peaks).
    """
    base = F.log_mel(speech)
    sl = slice(200, None)  # after 2 s
    voiced = base[sl].mean(1) > -2.0
    assert voiced.sum() > 100
    for gain in (3.0, 0.3, 0.1):
        other = F.log_mel(np.clip(speech * gain, -1, 1))
        d = np.abs(other[sl][voiced] - base[sl][voiced]).mean()
        assert d < 0.1, (gain, d)  # in units of 20 dB
    # without the tracker a 20 dB change would move every voiced value by 1.0


def test_quiet_speech_tracked_from_the_first_second(speech):
    """Speech 10 or 20 dB quieter (-30 / -40 dBFS RMS) reads like the original from 1 s on: the
    level starts low enough that it need not sink for seconds first (from -18 dB, 20 dB quieter
    was still 0.1 off at 1 s)."""
    base = F.log_mel(speech)
    sl = slice(100, None)
    voiced = base[sl].mean(1) > -2.0
    for gain in (0.3, 0.1):
        d = np.abs(F.log_mel(speech * gain)[sl][voiced] - base[sl][voiced]).mean()
        assert d < 0.04, (gain, d)


def test_push_allocates_nothing(speech):
    s = F.LogMelStream(capacity=256)
    out = np.empty((F.N_MELS, 32), np.float32)
    block = speech[:640].copy()
    for _ in range(20):
        s.push(block)
        s.window(s.frames - 1, out)
    tracemalloc.start()
    try:
        snap0 = tracemalloc.take_snapshot()
        for _ in range(300):
            s.push(block)
            s.window(s.frames - 1, out)
        snap1 = tracemalloc.take_snapshot()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = sum(st.size_diff for st in snap1.compare_to(snap0, "filename") if st.size_diff > 0)
    assert grown < 4096, grown
    assert peak < 64 * 1024, peak
