"""The live engine and its parts: frame clock, newest-wins output slots, the frame loop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from vcam.runtime.audio_ring import AudioRing
from vcam.runtime.channels import MOTION
from vcam.runtime.clock import FrameClock
from vcam.runtime.frame_slot import LatestFrameSlot

IDX = {n: i for i, n in enumerate(MOTION)}


# -- AudioRing --

def test_ring_reads_in_order_across_the_wrap():
    ring = AudioRing(100, 16000)
    out = np.zeros(64, np.float32)
    seen = []
    for k in range(10):
        ring.write(np.arange(k * 37, (k + 1) * 37, dtype=np.float32))
        while n := ring.read_new(out):
            seen.extend(out[:n].tolist())
    assert seen == list(range(370))
    assert ring.overruns == 0


def test_ring_counts_what_the_reader_lost():
    ring = AudioRing(100, 16000)
    ring.write(np.arange(250, dtype=np.float32))
    out = np.zeros(200, np.float32)
    n = ring.read_new(out)
    assert n == 100 and out[0] == 150 and ring.overruns == 150


def test_ring_takes_the_first_channel_and_counts_status():
    ring = AudioRing(10, 48000)
    ring.write(np.stack([np.ones(4, np.float32), np.zeros(4, np.float32)], 1), status_flag=True)
    out = np.zeros(10, np.float32)
    assert ring.read_new(out) == 4 and out[:4].tolist() == [1, 1, 1, 1]
    assert ring.status_flags == 1 and ring.last_write_ns > 0


# -- FrameClock --

def test_clock_ticks_at_its_period_and_skips_when_late():
    clock = FrameClock(100)
    first = clock.wait()
    second = clock.wait()
    assert second - first == clock.period_ns
    time.sleep(0.055)  # miss about five ticks
    third = clock.wait()
    assert clock.missed >= 4
    assert (third - first) % clock.period_ns == 0
    assert third <= time.monotonic_ns()


# -- LatestFrameSlot --

def _frame(v: int) -> np.ndarray:
    return np.full((512, 512, 3), v, np.uint8)


def test_slot_newest_wins_and_drops_are_counted():
    gate = threading.Event()
    got = []

    def slow(frame, t_ns):
        gate.wait(5)
        got.append((int(frame[0, 0, 0]), t_ns))

    with LatestFrameSlot(slow, name="slow") as slot:
        slot.offer(_frame(1), 1)
        time.sleep(0.05)  # the worker holds frame 1
        for v in (2, 3, 4):
            slot.offer(_frame(v), v)  # 2 and 3 are replaced while waiting
        gate.set()
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert got == [(1, 1), (4, 4)]
    assert slot.dropped == 2 and slot.offered == 4 and slot.written == 2


def test_slot_survives_a_failing_output(caplog):
    calls = []

    def broken(frame, t_ns):
        calls.append(t_ns)
        raise OSError("device gone")

    slot = LatestFrameSlot(broken, name="broken")
    for i in range(3):
        slot.offer(_frame(i), i)
        time.sleep(0.03)
    slot.close()
    slot.close()
    assert slot.errors == len(calls) >= 2
    assert slot.last_error == "OSError: device gone"
    assert sum("device gone" in r.message for r in caplog.records) == 1  # logged once


# -- LiveEngine --

@pytest.fixture(scope="module")
def engine(sample_avatars):
    from vcam.runtime.emotion import load_emotion_presets
    from vcam.runtime.engine import LiveEngine

    with LiveEngine(sample_avatars["painting"], fps=30, presets=load_emotion_presets(), seed=3,
                    provider="cpu") as eng:
        yield eng


@pytest.fixture(scope="module")
def speech():
    from vcam.assets import SAMPLE_AUDIO
    from vcam.runtime.audio_file import load_audio

    return load_audio(SAMPLE_AUDIO)


def _drive(engine, ring, pcm, *, fps=30, frames=None):
    """Tick the engine as the clock would, writing 1/fps of audio before each tick; jawOpen per frame."""
    hop = 16000 // fps
    jaw = []
    n = frames or len(pcm) // hop
    t = time.monotonic_ns()
    for i in range(n):
        if ring is not None and pcm is not None:
            ring.write(pcm[i * hop:(i + 1) * hop])
        engine.tick(t + i * 33_333_333, 1 / fps)
        jaw.append(float(engine._motion.motion[IDX["jawOpen"]]))
    return np.array(jaw)


def test_engine_opens_the_mouth_for_speech_and_rests_in_silence(engine, speech):
    ring = AudioRing(32000, 16000)
    engine.set_audio(ring)
    jaw_speech = _drive(engine, ring, speech[16000:16000 * 4])
    jaw_silence = _drive(engine, ring, np.zeros(16000 * 2, np.float32))
    assert jaw_speech.max() > 0.25
    assert jaw_silence[-20:].max() < 0.05


def test_engine_paused_keeps_the_mouth_still(engine, speech):
    ring = AudioRing(32000, 16000)
    engine.set_audio(ring)
    engine.set_paused(True)
    jaw = _drive(engine, ring, speech[16000:16000 * 3])
    engine.set_paused(None)  # toggles back
    _drive(engine, ring, np.zeros(1600, np.float32), frames=1)
    assert not engine.paused
    assert jaw[10:].max() < 0.05


def test_engine_without_audio_feeds_silence_and_idles(engine):
    engine.set_audio(None)
    before = engine.silence_fed_ms
    for _ in range(3):
        engine.tick(time.monotonic_ns(), 1 / 30)
        time.sleep(0.15)
    assert engine.silence_fed_ms - before > 200


def test_engine_emotion_crossfades(engine):
    engine.set_emotion("happy", 1.0)
    smile = []
    for _ in range(20):  # 20 frames at 30 fps: past the 300 ms cross-fade
        engine.tick(time.monotonic_ns(), 1 / 30)
        smile.append(float(engine._motion.motion[IDX["mouthSmileLeft"]]))
    engine.set_emotion("neutral")
    assert smile[0] < smile[-1] and smile[-1] > 0.3
    assert engine.status()["emotion"] in ("happy", "neutral")


def test_engine_motion_scale_applies_between_frames(engine):
    pose = slice(IDX["headYaw"], IDX["headZ"] + 1)
    engine.set_motion_scale(0.0)
    for _ in range(3):
        engine.tick(time.monotonic_ns(), 1 / 30)
    assert not engine._motion.motion[pose].any()
    engine._refresh_status()
    assert engine.status()["motion_scale"] == 0.0
    engine.set_motion_scale(1.0)
    for _ in range(3):
        engine.tick(time.monotonic_ns(), 1 / 30)
    assert engine._motion.motion[pose].any()
    engine._refresh_status()
    assert engine.status()["motion_scale"] == 1.0


def test_engine_swaps_the_portrait_between_frames(engine, sample_avatars):
    engine.set_avatar(sample_avatars["beard_bw"])
    frame = engine.tick(time.monotonic_ns(), 1 / 30).copy()
    engine.set_avatar(sample_avatars["painting"])
    frame2 = engine.tick(time.monotonic_ns(), 1 / 30)

    def dist(a, b):
        return np.abs(a.astype(int) - b.astype(int)).mean()

    beard, painting = sample_avatars["beard_bw"].still, sample_avatars["painting"].still
    assert 3 * dist(frame, beard) < dist(frame, painting)
    assert 3 * dist(frame2, painting) < dist(frame2, beard)


def test_engine_offers_every_frame_with_its_tick_time(engine):
    got = []
    slot = LatestFrameSlot(lambda f, t: got.append(t), name="probe")
    engine.add_output(slot)
    for k in range(3):
        engine.tick(1000 + k, 1 / 30)
        time.sleep(0.02)
    engine.remove_output(slot)
    engine.tick(2000, 1 / 30)
    slot.close()
    assert got == [1000, 1001, 1002]


def test_engine_measures_the_mouths_rise_after_voice_onsets(engine):
    """Bursts of speech after pauses (the --av-sync bench's track): the engine finds each onset
    and reports how long after it the drawn mouth was half open, as the offline rule from the
    bursts' known starts does (within a frame)."""
    from scipy.signal import resample_poly

    from vcam.runtime.mouth_rise import PRIOR_MS
    from vcam.bench.avsync import onset_bursts
    from vcam.bench.live import RATE, burst_track
    from vcam.bench.mouth_rise import known_rise_ms, stepped

    track, _ = burst_track(onset_bursts(8))
    pcm = resample_poly(track, 1, RATE // 16000).astype(np.float32)
    ring = AudioRing(32000, 16000)
    engine.set_audio(ring)
    before = engine.status()["onsets"]
    _drive(engine, ring, pcm)
    engine._refresh_status()
    st = engine.status()
    assert st["onsets"]["found"] - before["found"] >= 7
    assert st["onsets"]["measured"] - before["measured"] >= 6
    assert st["mouth_rise_ms"] == round(engine.mouth_rise_ms, 1) != PRIOR_MS
    _, t, o = stepped(pcm, 30)
    _, at = burst_track(onset_bursts(8))
    known = float(np.median(known_rise_ms(t, o, [a * 16000 // RATE for a in at])))
    assert abs(engine.mouth_rise_ms - known) <= 1000 / 30 + 1, (engine.mouth_rise_ms, known)


def test_engine_tick_allocates_nothing(engine, speech):
    import tracemalloc

    ring = AudioRing(32000, 16000)
    engine.set_audio(ring)
    slot = LatestFrameSlot(lambda f, t: None, name="null")
    engine.add_output(slot)
    _drive(engine, ring, speech, frames=10)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    _drive(engine, ring, speech[16000:], frames=60)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    engine.remove_output(slot)
    slot.close()
    grown = sum(d.size_diff for d in after.compare_to(before, "filename")
                if d.size_diff > 0 and "tracemalloc" not in str(d.traceback) and "test_engine" not in str(d.traceback))
    assert grown < 32 * 1024, f"{grown} bytes allocated over 60 frames"


def test_engine_thread_runs_at_its_rate_and_reports(engine):
    engine.start()
    time.sleep(1.2)
    s = engine.status()
    assert s["frames"] >= 20
    assert s["stages_ms"]["render"]["p50"] is not None
    assert s["provider"] == "cpu"
