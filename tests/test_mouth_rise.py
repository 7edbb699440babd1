"""MouthRiseMeter: voice onsets found where the sound starts, the mouth's rise measured after them,
the median of recent rises, and the engine's report of it."""

from __future__ import annotations

import numpy as np
import pytest

from vcam.runtime.channels import INDEX, N_MOTION
from vcam.runtime.features import SAMPLE_RATE, LogMelStream
from vcam.runtime.mouth_rise import KEEP, MIN_ONSETS, PRIOR_MS, MouthRiseMeter, openness

FPS = 30


def voice(seconds: float, level_db: float, rng, f0: float = 120.0) -> np.ndarray:
    """A voiced sound ``(n,) float32``: harmonics of ``f0`` with a little jitter, 5 ms fade-in,
    RMS at ``level_db`` dBFS."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * rng.standard_normal(n))) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    x *= np.minimum(1.0, t / 0.005)
    x *= 10 ** (level_db / 20) / np.sqrt(np.mean(x ** 2))
    return x.astype(np.float32)


def motion_open(value: float) -> np.ndarray:
    m = np.zeros(N_MOTION, np.float32)
    m[INDEX["jawOpen"]] = value
    return m


def run(track: np.ndarray, mouth_at, *, lookahead_ms: float = 0.0, block: int = 160):
    """Push ``track`` through a feature stream at ``FPS`` frames; each frame's mouth is
    ``mouth_at(stream time in s)``. Returns the meter and its onsets (s)."""
    feats = LogMelStream(capacity=512)
    meter = MouthRiseMeter(feats, lookahead_ms=lookahead_ms)
    per_frame = SAMPLE_RATE // FPS
    onsets = []
    pos = 0
    while pos < track.shape[0]:
        nxt = min(pos + per_frame, track.shape[0])
        for a in range(pos, nxt, block):
            feats.push(track[a:min(a + block, nxt)])
        pos = nxt
        before = meter.onsets
        meter.observe(motion_open(mouth_at((feats.samples - lookahead_ms * SAMPLE_RATE / 1000) / SAMPLE_RATE)))
        if meter.onsets > before:
            onsets.append(meter.last_onset / SAMPLE_RATE)
    return meter, onsets


def phrases(starts_s, level_db, rng, *, floor_db=None, total_s=None) -> np.ndarray:
    total_s = total_s or starts_s[-1] + 1.5
    x = np.zeros(int(total_s * SAMPLE_RATE), np.float32)
    if floor_db is not None:
        x += (rng.standard_normal(x.shape[0]) * 10 ** (floor_db / 20)).astype(np.float32)
    for s in starts_s:
        v = voice(0.5, level_db, rng)
        a = int(s * SAMPLE_RATE)
        x[a:a + v.shape[0]] += v
    return x


def test_openness_follows_the_jaw_and_mouth_close():
    assert openness(motion_open(0.0)) == 0.0
    assert openness(motion_open(1.0)) == pytest.approx(1.0)
    half = openness(motion_open(0.5))
    assert 0.5 < half < 0.8  # the lips part ahead of the jaw
    m = motion_open(0.4)
    m[INDEX["mouthClose"]] = 0.4  # jaw down, lips pressed: a closed mouth
    assert openness(m) == 0.0


@pytest.mark.parametrize("level_db", [-12.0, -30.0, -45.0])
@pytest.mark.parametrize("block", [53, 160, 480])
def test_onsets_are_where_the_sound_starts(level_db, block):
    rng = np.random.default_rng(1)
    starts = [1.0, 2.7, 4.15, 5.9]
    meter, found = run(phrases(starts, level_db, rng), lambda t: 0.0, block=block)
    assert meter.onsets == len(starts)
    assert max(min(abs(f - s) for s in starts) for f in found) < 0.006


def test_onsets_after_pauses_over_a_noise_floor():
    rng = np.random.default_rng(2)
    starts = [1.2, 2.9, 4.4]
    meter, found = run(phrases(starts, -25.0, rng, floor_db=-50.0), lambda t: 0.0)
    # the level starts at the noise floor: the first phrase teaches it what the voice is
    assert meter.onsets == len(starts) - 1
    assert np.abs(np.array(found) - starts[1:]).max() < 0.015


def test_no_onset_without_a_pause():
    rng = np.random.default_rng(3)
    # phrases 80 ms apart: the pause is too short to call the next one an onset
    starts = [1.0 + 0.58 * k for k in range(6)]
    meter, _ = run(phrases(starts, -20.0, rng), lambda t: 0.0)
    assert meter.onsets == 1
    meter, _ = run((rng.standard_normal(5 * SAMPLE_RATE) * 0.01).astype(np.float32), lambda t: 0.0)
    assert meter.onsets == 0  # steady noise never pauses


@pytest.mark.parametrize("rise_s", [-0.02, 0.0, 0.035, 0.08])
def test_rise_is_measured_after_each_onset(rise_s):
    rng = np.random.default_rng(4)
    starts = [1.0 + 1.6 * k for k in range(6)]

    def mouth(t):  # opens at onset + rise_s, stays open 300 ms
        return float(any(s + rise_s <= t < s + rise_s + 0.3 for s in starts))

    meter, _ = run(phrases(starts, -20.0, rng), mouth)
    assert meter.measured == len(starts)
    # frames come every 33 ms: the first one past half open is 0..1 frame after the crossing
    assert rise_s * 1000 - 3 <= meter.rise_ms <= rise_s * 1000 + 1000 / FPS + 3


def test_lookahead_moves_the_frames_stream_time():
    rng = np.random.default_rng(5)
    starts = [1.0 + 1.6 * k for k in range(4)]

    def mouth(t):
        return float(any(s + 0.01 <= t < s + 0.3 for s in starts))

    plain, _ = run(phrases(starts, -20.0, rng), mouth)
    ahead, _ = run(phrases(starts, -20.0, rng), mouth, lookahead_ms=40.0)
    assert plain.measured == ahead.measured == len(starts)
    assert 10.0 <= plain.rise_ms <= 10.0 + 1000 / FPS + 1
    assert 10.0 <= ahead.rise_ms <= 10.0 + 1000 / FPS + 1


def test_prior_until_enough_onsets_then_the_middle_of_recent_ones():
    feats = LogMelStream()
    meter = MouthRiseMeter(feats, lookahead_ms=0.0)
    assert meter.rise_ms == PRIOR_MS
    meter._rises[:MIN_ONSETS - 1] = 40.0
    meter._nr = MIN_ONSETS - 1
    assert meter.rise_ms == PRIOR_MS
    values = np.arange(KEEP + 5, dtype=np.float32)
    for v in values:
        meter._rises[meter._nr % KEEP] = v
        meter._nr += 1
    recent = np.sort(values[-KEEP:])
    assert meter.rise_ms == pytest.approx(float(recent[KEEP // 4:KEEP - KEEP // 4].mean()))
    for k, v in enumerate([10.0, 43.0] * KEEP):  # two kinds of onset, one frame apart: between them
        meter._rises[k % KEEP] = v
    assert 20.0 < meter.rise_ms < 33.0
    meter._rises[:3] = 400.0  # a few odd ones move it little
    assert meter.rise_ms < 44.0


def test_a_mouth_that_does_not_open_is_not_measured():
    rng = np.random.default_rng(6)
    starts = [1.0, 2.6, 4.2]
    meter, _ = run(phrases(starts, -20.0, rng), lambda t: 0.02)
    assert meter.onsets == 3 and meter.measured == 0 and meter.rise_ms == PRIOR_MS


# -- the portrait's view of the mouth (vcam.avatar.mouth_view) --

def test_view_curve_from_a_sweep():
    from vcam.avatar.mouth_view import curve_from

    op = np.linspace(0.0, 1.0, 6, dtype=np.float32)
    c = curve_from(op, np.array([0.001, 0.002, 0.05, 0.04, 0.20, 0.30]))
    assert c.shape == (2, 6) and c.dtype == np.float32
    assert c[1, 0] == 0.0 and c[1, -1] == 1.0 and np.all(np.diff(c[1]) >= 0)  # the dip is flattened
    assert c[1, 1] < 0.01  # a small opening is not seen
    assert curve_from(op, np.array([0.001, np.nan, 0.05, 0.1, 0.2, 0.3]))[1, 1] > 0  # one miss: filled in
    assert curve_from(op, np.array([np.nan, 0.0, 0.05, 0.1, 0.2, 0.3])) is None  # no face when closed
    assert curve_from(op, np.full(6, 0.02)) is None  # nothing grows: not a curve


def test_portraits_view_is_measured_once_and_cached(sample_avatars, monkeypatch, tmp_path):
    """The painting: the face mesh sees little of the first third of the opening. Measured once
    per portrait and render graph, then read from the cache."""
    from vcam.avatar import mouth_view as mv

    monkeypatch.setenv("VCAM_CACHE_DIR", str(tmp_path))
    curve = mv.mouth_view(sample_avatars["painting"], key="painting-test")
    assert curve.shape == (2, mv.KNOTS)
    seen_at = float(np.interp(0.3, curve[0], curve[1]))
    assert seen_at < 0.25 and curve[1, -1] == 1.0
    monkeypatch.setattr(mv, "seen_gaps", lambda *a: pytest.fail("measured again"))
    assert np.array_equal(mv.mouth_view(sample_avatars["painting"], key="painting-test"), curve)


def test_view_moves_the_half_open_moment_later():
    """A mouth opening over 100 ms: seen as opening only past 40 % of it, it is seen half open later."""
    rng = np.random.default_rng(7)
    starts = [1.0 + 1.6 * k for k in range(5)]

    def mouth(t):
        s = max([s for s in starts if s - 0.3 <= t], default=None)
        return 0.0 if s is None or t - s > 0.35 else float(np.clip((t - s) / 0.1, 0.0, 1.0))

    track = phrases(starts, -20.0, rng)
    plain, _ = run(track, mouth)
    feats = LogMelStream(capacity=512)
    seen = MouthRiseMeter(feats, lookahead_ms=0.0)
    seen.set_view(np.array([[0.0, 0.4, 1.0], [0.0, 0.0, 1.0]], np.float32))
    per_frame = SAMPLE_RATE // FPS
    for a in range(0, track.shape[0], per_frame):
        feats.push(track[a:a + per_frame])
        # openness of jawOpen x is x (1 + 0.6 (1 - x)): invert so the drawn openness is mouth(t)
        want = mouth(feats.samples / SAMPLE_RATE)
        jaw = 0.0 if want <= 0 else min(1.0, ((1.6 - np.sqrt(1.6 ** 2 - 4 * 0.6 * want)) / 1.2))
        seen.observe(motion_open(jaw))
    assert plain.measured == seen.measured == len(starts)
    assert seen.rise_ms - plain.rise_ms > 15.0
    with pytest.raises(ValueError):
        seen.set_view(np.array([[0.0, 0.0], [0.0, 1.0]]))


def test_meter_and_bench_agree_where_a_voice_starts():
    """The --av-sync bench cuts its bursts where the sound rises out of a pause; the meter finds
    the same places in the played track (within one 10 ms frame)."""
    from scipy.signal import resample_poly

    from vcam.bench.avsync import onset_bursts
    from vcam.bench.live import RATE, burst_track

    track, at = burst_track(onset_bursts(8))
    meter, found = run(resample_poly(track, 1, RATE // SAMPLE_RATE).astype(np.float32), lambda t: 0.0, block=53)
    known = np.array(at) / RATE
    assert len(found) >= 7
    assert max(np.abs(known - f).min() for f in found) <= 0.0105


def test_a_view_that_cannot_be_measured_is_none_and_not_cached(sample_avatars, monkeypatch, tmp_path, caplog):
    from vcam.avatar import mouth_view as mv

    monkeypatch.setenv("VCAM_CACHE_DIR", str(tmp_path))

    def broken(*a):
        raise RuntimeError("no face mesh here")

    monkeypatch.setattr(mv, "seen_gaps", broken)
    assert mv.mouth_view(sample_avatars["painting"], key="broken") is None
    assert "could not measure" in caplog.text
    assert not list(tmp_path.rglob("broken*"))


def test_bench_mouth_rise_table_and_bad_media(tmp_path, capsys, monkeypatch):
    """`vcam bench --mouth-rise`: a row per clip with the meter's figures; a missing media
    folder is one line and exit 2."""
    import shutil

    from vcam import assets
    from vcam.bench import mouth_rise as bench_mouth_rise
    from vcam.app.cli import main

    monkeypatch.setenv("VCAM_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["bench", "--mouth-rise", "--media", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "--media DIR" in err

    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(assets.SAMPLE_AUDIO, media)
    shutil.copy(assets.SAMPLE_AUDIO.with_suffix(".txt"), media)
    monkeypatch.setattr(bench_mouth_rise, "FLITE_VOICES", ("slt",))
    monkeypatch.setattr("vcam.bench.lipsync.LANGUAGES", {})
    result = bench_mouth_rise.run(media, assets.SAMPLE_PHOTO)
    clips = {r["clip"]: r for r in result["rows"]}
    assert {"en_ljspeech_LJ001-0001", "flite_slt"} <= set(clips)
    row = clips["en_ljspeech_LJ001-0001"]
    assert row["track_onsets"] >= 8 and abs(row["track_ms"] - row["known_ms"]) <= 1000 / 30
    assert "| flite_slt |" in bench_mouth_rise.table(result, "test machine")
