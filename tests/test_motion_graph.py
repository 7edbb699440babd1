"""The motion graph: ONNX equals torch, and the motion it makes is right.

Mouth closed and still in silence, open on speech, full closure on P/B/M, natural blink
rate, bounded smooth head motion that never freezes, determinism, no per-step allocation.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from vcam.runtime import features as F
from vcam.runtime.channels import INDEX, N_MOTION
from vcam.runtime.errors import GraphError
from vcam.runtime.motion import MotionStage, frame_window_end

ASSETS = __import__("vcam.assets", fromlist=["ASSETS_DIR"]).ASSETS_DIR
SPEECH = ASSETS / "en_ljspeech_LJ001-0001.wav"
FPS = 25.0
JAW = INDEX["jawOpen"]
MOUTH = [INDEX[n] for n in ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthStretchLeft",
                            "mouthUpperUpLeft", "mouthLowerDownLeft", "mouthPressLeft")]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    a, sr = sf.read(SPEECH, dtype="float32")
    return a[:, 0] if a.ndim == 2 else a


def drive(stage: MotionStage, pcm: np.ndarray, fps: float = FPS, emotion=None, block: int = 0) -> np.ndarray:
    """Step ``stage`` over ``pcm`` as a renderer would; returns ``(frames, 43)`` motion."""
    n = int(len(pcm) / F.SAMPLE_RATE * fps)
    stream = F.LogMelStream(capacity=256)
    emo = np.zeros(37, np.float32) if emotion is None else emotion
    out = np.zeros((n, N_MOTION), np.float32)
    win = stage.mel_buffer
    pushed = 0
    for i in range(n):
        end = stage.frame_window_end(i / fps)
        need = min(len(pcm), (end + 1) * F.HOP)
        if need > pushed:
            stream.push(pcm[pushed:need])
            pushed = need
        stream.window(end, win)
        out[i] = stage.step(win, emo, 1.0 / fps)
    return out


@pytest.fixture(scope="module")
def stage():
    s = MotionStage(fps=FPS, seed=3, provider="cpu", threads=1)
    yield s
    s.close()


def test_manifest_contract(stage):
    g = stage._graph
    shapes = {s.name: s.shape for s in g.inputs + g.outputs}
    w = stage.window_frames
    assert shapes["mel"] == (1, F.N_MELS, w)
    assert shapes["emotion"] == (1, 37)
    assert shapes["dt"] == (1, 1)
    assert shapes["motion"] == (1, N_MOTION)
    assert shapes["state"] == shapes["state_out"] == (1, g.meta["state_size"])
    assert shapes["noise"] == (1, g.meta["noise_size"])
    assert g.meta["sample_rate"] == F.SAMPLE_RATE and g.meta["hop"] == F.HOP and g.meta["n_mels"] == F.N_MELS
    assert 0 < stage.lookahead_ms <= 80


def test_frame_window_end():
    assert frame_window_end(0.0, 80) == 7
    assert frame_window_end(0.04, 80) == 11
    assert frame_window_end(1.0, 0) == 99
    assert frame_window_end(1 / 3, 80) == 40


def test_onnx_equals_torch(speech):
    torch = pytest.importorskip("torch")
    from vcam.graphs.export_motion import build_graph

    graph = build_graph()
    rng = np.random.default_rng(0)
    mel_all = F.log_mel(speech)
    with MotionStage(fps=FPS, seed=5, provider="cpu", threads=1) as st:
        emo = np.zeros(37, np.float32)
        emo[INDEX["mouthSmileLeft"]] = 0.4
        tstate = torch.zeros(1, st._state.shape[1])
        for i in range(60):
            if i < 30:
                win = rng.uniform(F.FLOOR, 0.5, (F.N_MELS, st.window_frames)).astype(np.float32)
            else:
                e = 100 + 4 * i
                win = np.ascontiguousarray(mel_all[e - st.window_frames + 1: e + 1].T)
            m = st.step(win, emo, 0.04).copy()
            with torch.no_grad():
                tm, tstate = graph(torch.from_numpy(win)[None], torch.from_numpy(emo)[None], tstate,
                                   torch.from_numpy(st._noise.copy()), torch.full((1, 1), 0.04))
            np.testing.assert_allclose(m, tm[0].numpy(), atol=2e-4, rtol=1e-4)
            np.testing.assert_allclose(st._state[0], tstate[0].numpy(), atol=2e-4, rtol=1e-4)


def test_silence_mouth_closed_and_still(stage):
    stage.reset(1)
    quiet = np.random.default_rng(0).standard_normal(16000 * 6).astype(np.float32) * 3e-4  # -70 dBFS hiss
    m = drive(stage, quiet)
    mouth = m[25:, MOUTH]
    assert mouth.max() < 0.03, mouth.max(0)
    assert np.abs(np.diff(mouth, axis=0)).max() < 0.01


def test_speech_opens_jaw(stage, speech):
    stage.reset(1)
    m = drive(stage, speech)
    jaw = m[:, JAW]
    assert jaw.max() > 0.5
    speaking = jaw[10:-10]
    assert (speaking > 0.3).mean() > 0.2
    assert (speaking < 0.1).mean() > 0.05  # it also closes between syllables
    assert (m[:, :37] >= 0).all() and (m[:, :37] <= 1).all()


def test_loud_and_quiet_speech_similar(stage, speech):
    stage.reset(1)
    base = drive(stage, speech)[:, JAW]
    stage.reset(1)
    quiet = drive(stage, speech * 0.1)[:, JAW]
    stage.reset(1)
    loud = drive(stage, np.clip(speech * 3.0, -1, 1))[:, JAW]
    sl = slice(75, None)
    for other in (quiet, loud):
        assert np.corrcoef(base[sl], other[sl])[0, 1] > 0.8


def test_loudness_gain_spans_35_db_below_the_speech_level():
    """Lips open ``LOUD_GAIN[0]`` times the viseme's opening 35 dB below the speech level, up to
    ``LOUD_GAIN[1]`` times at it."""
    torch = pytest.importorskip("torch")
    from vcam.graphs import motion_model as mm

    def gain(rel_db: float) -> float:  # every band equal, the frame's power rel_db from the level
        per_band = (rel_db - 10 * np.log10(F.N_MELS)) / 20
        return float(mm.MotionGraph.loudness_gain(torch.full((1, F.N_MELS, mm.GRAPH_WINDOW), per_band)))

    lo, hi = mm.LOUD_GAIN
    assert gain(0.0) == pytest.approx(hi) and gain(6.0) == pytest.approx(hi)
    assert gain(-mm.LOUD_RANGE_DB / 2) == pytest.approx((lo + hi) / 2, abs=1e-5)
    assert gain(-mm.LOUD_RANGE_DB) == pytest.approx(lo, abs=1e-5)
    floor = float(mm.MotionGraph.loudness_gain(torch.full((1, F.N_MELS, mm.GRAPH_WINDOW), F.FLOOR)))
    assert floor == pytest.approx(lo)


def test_quieter_syllables_open_less(stage, speech):
    """One second of the speech 20 dB quieter than the rest (the level tracker falls slowly, so
    it stays quiet relative to it): the jaw opens less there, and the same before it."""
    sr = F.SAMPLE_RATE
    softer = speech.copy()
    softer[4 * sr: 5 * sr] *= 0.1
    stage.reset(1)
    base = drive(stage, speech)[:, JAW]
    stage.reset(1)
    soft = drive(stage, softer)[:, JAW]
    inside = slice(int(4.1 * FPS), int(5.0 * FPS))
    assert soft[inside].mean() < 0.93 * base[inside].mean()
    early = slice(0, int(3.9 * FPS))  # before the 80 ms look-ahead reaches the quiet second
    assert np.abs(soft[early] - base[early]).max() < 1e-6


def test_bilabials_close_fully():
    """espeak-ng "mama papa baba": the jaw shuts on every bilabial."""
    lipdata = pytest.importorskip("vcam.graphs.lipdata")
    try:
        es = lipdata.Espeak()
    except RuntimeError as e:
        pytest.skip(str(e))
    pcm, events = es.synth("mama, papa, baba, a map, a bob.", "en-us", rate=150)
    x = lipdata._resample_to_16k(pcm, es.sample_rate)
    x = np.concatenate([np.zeros(8000, np.float32), x * 0.3, np.zeros(8000, np.float32)])
    with MotionStage(fps=30, seed=0, provider="cpu", threads=1) as st:
        m = drive(st, x, fps=30)
    times = np.arange(len(m)) / 30
    bil = [(0.5 + s / es.sample_rate, 0.5 + (events[i + 1][1] if i + 1 < len(events) else len(pcm)) / es.sample_rate)
           for i, (name, s) in enumerate(events) if name in ("m", "p", "b")]
    assert len(bil) >= 8
    closed = 0
    for s, e in bil:
        idx = np.where((times >= s - 0.04) & (times <= e + 0.04))[0]
        jaw = m[idx, JAW]
        shut = m[idx, INDEX["mouthClose"]] + m[idx, INDEX["mouthPressLeft"]]
        closed += int(jaw.min() < 0.1 and shut.max() > 0.5)
    assert closed >= len(bil) - 1, (closed, len(bil))
    assert m[:, JAW].max() > 0.5  # and the "a"s open


def _steps(pbm: list[float], vowel: float = 0.1, other: float = 0.3):
    """Viseme probabilities ``(1, 9, CLOSURE_SPAN + 1)``: P/B/M as given per step (oldest first),
    the open vowel A at ``vowel``, the other consonants (C) at ``other``."""
    torch = pytest.importorskip("torch")
    from vcam.graphs import motion_model as mm

    p = torch.zeros(1, len(mm.VISEMES), len(pbm))
    p[0, mm.VISEMES.index("PBM")] = torch.tensor(pbm)
    p[0, mm.VISEMES.index("A")] = vowel
    p[0, mm.VISEMES.index("C")] = other
    return p


def test_closure_commits_where_a_bilabial_is_first_heard():
    """A P/B/M probability rising through CLOSURE_COMMIT (at or above the vowels, by CLOSURE_RISE
    or more) in the steps
    since the previous frame commits a closure, weakly heard ones with the lips nearly together,
    from CLOSURE_FULL up shut; a level that stays up, a vowel that dominates, or a rise the
    previous frame already showed commits nothing."""
    torch = pytest.importorskip("torch")
    from vcam.graphs import motion_model as mm

    dt = torch.full((1, 1), 0.04)

    def commit(pbm, vowel=0.1, dt=dt):
        c, cap = mm.MotionGraph.closure_commit(_steps(pbm, vowel), dt)
        return float(c), float(cap)

    assert mm.CLOSURE_SPAN == 4
    assert commit([0.05, 0.1, 0.3, 0.25, 0.1]) == pytest.approx((1.0, mm.CLOSURE_NEAR_JAW * (0.2 / 0.3)))
    assert commit([0.05, 0.1, 0.1, 0.1, 0.6]) == (1.0, 0.0)  # heard strongly: shut
    assert commit([0.05, 0.05, 0.05, 0.05, 0.2]) == pytest.approx((1.0, mm.CLOSURE_NEAR_JAW))
    assert commit([0.15, 0.19, 0.17, 0.19, 0.21])[0] == 0.0  # hovering about the threshold: murmur
    assert commit([0.3, 0.3, 0.35, 0.4, 0.3])[0] == 0.0  # no rise: the smoothed channel's job
    assert commit([0.05, 0.1, 0.3, 0.25, 0.1], vowel=0.5)[0] == 0.0  # an open vowel heard louder
    assert commit([0.05, 0.1, 0.1, 0.1, 0.15])[0] == 0.0  # below the threshold
    # at 40 fps (25 ms between frames) a rise 30 ms ago was the previous frame's
    assert commit([0.05, 0.3, 0.1, 0.1, 0.1], dt=torch.full((1, 1), 0.025))[0] == 0.0
    assert commit([0.05, 0.1, 0.3, 0.1, 0.1], dt=torch.full((1, 1), 0.025))[0] == 1.0


def test_a_weak_bilabial_inside_speech_brings_the_lips_together():
    """An open vowel, then a P/B/M heard at 0.3 beside another consonant at 0.4 (the smoothed
    closure channel alone would leave the jaw a third open): the frame that hears it opens the
    jaw at most CLOSURE_NEAR_JAW, the next one opens again; heard at 0.6, the lips shut."""
    torch = pytest.importorskip("torch")
    from vcam.graphs import motion_model as mm

    class FixedLips(torch.nn.Module):  # stands in for LipNet: the logits it is told to give
        logits = torch.zeros(1, 9, 5)

        def forward(self, mel):
            return self.logits

    lips = FixedLips()
    graph = mm.MotionGraph(lips)
    graph.eval()
    mel = torch.full((1, F.N_MELS, mm.GRAPH_WINDOW), 0.0)
    state = torch.zeros(1, mm.STATE_SIZE)
    noise = torch.full((1, mm.NOISE_SIZE), 0.5)
    dt = torch.full((1, 1), 1 / 30)
    emotion = torch.zeros(1, 37)

    def step(probs):
        nonlocal state
        lips.logits = torch.log(torch.clamp(probs, min=1e-6))
        with torch.no_grad():
            motion, state = graph(mel, emotion, state, noise, dt)
        return float(motion[0, JAW])

    vowel = torch.zeros(1, 9, 5)
    vowel[0, mm.VISEMES.index("A")] = 1.0
    for _ in range(10):
        open_jaw = step(vowel)
    assert open_jaw > 0.5
    weak = _steps([0.05, 0.05, 0.3, 0.3, 0.3], vowel=0.3, other=0.4)
    near = step(weak)
    assert near <= mm.CLOSURE_NEAR_JAW * (0.2 / 0.3) + 1e-5
    held = _steps([0.3] * 5, vowel=0.3, other=0.4)  # 33 ms on: the rise is behind, the level stays
    assert step(held) > 0.2  # the mouth follows its smoothed course again
    for _ in range(5):
        step(vowel)
    assert step(_steps([0.05, 0.05, 0.05, 0.6, 0.6], vowel=0.2, other=0.2)) == 0.0


def test_blink_rate_and_shape():
    with MotionStage(fps=FPS, seed=11, provider="cpu", threads=1) as st:
        m = drive(st, np.zeros(16000 * 60, np.float32))
    bl, br = m[:, INDEX["eyeBlinkLeft"]], m[:, INDEX["eyeBlinkRight"]]
    np.testing.assert_array_equal(bl, br)
    closed = bl > 0.5
    blinks = int(np.sum(closed[1:] & ~closed[:-1]))
    assert 10 <= blinks <= 25, blinks
    assert bl.max() > 0.9
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], (bl > 0.05).astype(int), [0]]))))[::2]
    assert runs.max() * 1000 / FPS <= 320  # each blink over in ~250 ms


def _blinks(m: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Onset frames of the blinks in a motion track, and each blink's deepest closure. A blink
    that begins in the track's last 0.2 s is cut off by its end and not counted."""
    bl = m[:, INDEX["eyeBlinkLeft"]]
    closed = bl > 0.5
    span = int(0.2 * fps) + 1
    onsets = np.flatnonzero(closed[1:] & ~closed[:-1]) + 1
    onsets = onsets[onsets + span <= len(bl)]
    return onsets, np.array([bl[o: o + span].max() for o in onsets])


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_blinks_in_silence_and_speech(speech, fps):
    """Natural, irregular blink rates in silence and while talking (more while talking, with
    a double blink now and then), and every blink shuts the eyes fully on at least one video
    frame, so a blink is never a half-closed flicker in the video."""
    talk = np.concatenate([np.concatenate([speech, np.zeros(8000, np.float32)])] * 6)  # ~60 s, pauses
    silence = np.zeros(16000 * 60, np.float32)
    rates = {"silence": [], "speech": []}
    doubles = 0
    for seed in (1, 2, 3):
        for name, pcm in (("silence", silence), ("speech", talk)):
            with MotionStage(fps=fps, seed=seed, provider="cpu", threads=1) as st:
                m = drive(st, pcm, fps=fps)
            onsets, depth = _blinks(m, fps)
            minutes = len(m) / fps / 60
            rates[name].append(len(onsets) / minutes)
            assert depth.min() > 0.99, (name, seed, depth.min())
            gaps = np.diff(onsets) / fps
            assert gaps.std() / gaps.mean() > 0.3, (name, seed)  # irregular, not a metronome
            doubles += int((gaps < 0.6).sum())
    assert all(10 <= r <= 25 for r in rates["silence"]), rates
    assert all(12 <= r <= 30 for r in rates["speech"]), rates
    assert np.mean(rates["speech"]) > np.mean(rates["silence"]), rates
    assert doubles >= 2


def test_head_idle_and_speech_bounds(stage, speech):
    stage.reset(2)
    idle = drive(stage, np.zeros(16000 * 20, np.float32))
    yaw, pitch, roll = (idle[:, INDEX[n]] for n in ("headYaw", "headPitch", "headRoll"))
    assert 0.2 < yaw.std() < 3.0 and pitch.std() > 0.1 and roll.std() > 0.05  # never frozen
    assert np.abs(np.diff(yaw, 2)).max() < 0.2  # no shake
    hy = idle[:, INDEX["headY"]]
    assert 0.5 < hy.max() - hy.min() < 6
    stage.reset(2)
    talk = drive(stage, np.tile(speech, 2))
    pose = talk[:, 37:]
    assert np.abs(pose[:, 0]).max() <= 8 and np.abs(pose[:, 1]).max() <= 6 and np.abs(pose[:, 2]).max() <= 5
    gaze = talk[:, INDEX["eyeLookUpLeft"]: INDEX["eyeLookOutRight"] + 1]
    assert gaze.max() <= 0.15


def test_speech_tilts_the_head_like_a_speaker(speech):
    """Head roll in speech spreads over 1.5-4 degrees (people talking to a camera: 1.4-3.4),
    more than in silence, and smoothly; the median over seeds, as clips differ."""
    talk_roll, idle_roll, jerk = [], [], []
    for seed in range(6):
        with MotionStage(fps=FPS, seed=seed, provider="cpu", threads=1) as st:
            talk = drive(st, np.tile(speech, 2))
            st.reset(seed)
            idle = drive(st, np.zeros(len(speech) * 2, np.float32))
        talk_roll.append(talk[:, INDEX["headRoll"]].std())
        idle_roll.append(idle[:, INDEX["headRoll"]].std())
        jerk.append(np.abs(np.diff(talk[:, INDEX["headRoll"]], 2)).max())
    assert 1.5 <= np.median(talk_roll) <= 4.0, talk_roll
    assert np.median(talk_roll) > 1.3 * np.median(idle_roll), (talk_roll, idle_roll)
    assert max(jerk) < 0.3, jerk  # degrees per frame^2: no shake


def test_head_motion_scale(speech):
    """``head_motion`` scales the pose the graph outputs (0: still), not the face."""
    runs = {}
    for scale in (0.0, 1.0, 2.0):
        with MotionStage(fps=FPS, seed=4, provider="cpu", threads=1, head_motion=scale) as st:
            runs[scale] = drive(st, speech)
    pose = slice(INDEX["headYaw"], INDEX["headZ"] + 1)
    assert not runs[0.0][:, pose].any()
    np.testing.assert_allclose(runs[2.0][:, pose], 2.0 * runs[1.0][:, pose], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(runs[0.0][:, :pose.start], runs[1.0][:, :pose.start])
    with MotionStage(fps=FPS, seed=4, provider="cpu", threads=1) as st:
        st.head_motion = 0.5
        assert st.head_motion == 0.5
        with pytest.raises(GraphError, match="head motion must be 0..2"):
            st.head_motion = 2.5


def test_emotion_added(stage, speech):
    from vcam.runtime.emotion import load_emotion_presets

    p = load_emotion_presets()
    stage.reset(4)
    m = drive(stage, speech[: 16000 * 4], emotion=p["happy"])
    assert (m[:, INDEX["mouthSmileLeft"]] > 0.5).all()
    assert m[:, JAW].max() > 0.4  # speech still moves the mouth
    stage.reset(4)
    m = drive(stage, np.zeros(16000 * 2, np.float32), emotion=p["surprised"])
    assert m[-1, INDEX["eyeWideLeft"]] > 0.4 and abs(m[-1, JAW] - 0.15) < 0.03


def test_deterministic(speech):
    runs = []
    for seed in (7, 7, 8):
        with MotionStage(fps=FPS, seed=seed, provider="cpu", threads=1) as st:
            runs.append(drive(st, speech[: 16000 * 5]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_device_buffers_hear_every_frame(speech):
    """The path a GPU takes (inputs copied into the session's own buffers before each step)
    gives the same motion as the CPU's, frame by frame: the mouth follows the speech."""
    runs = []
    for copy_inputs in (False, True):
        with MotionStage(fps=FPS, seed=7, provider="cpu", threads=1, copy_inputs=copy_inputs) as st:
            runs.append(drive(st, speech[: 16000 * 3]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[1][:, INDEX["jawOpen"]].max() > 0.3


def test_step_allocates_nothing(stage, speech):
    stage.reset(0)
    win = stage.mel_buffer
    win[:] = F.log_mel(speech[:16000])[-stage.window_frames:].T
    emo = np.zeros(37, np.float32)
    for _ in range(20):
        stage.step(win, emo, 0.04)
    # A per-frame allocation grows every attempt (300 steps x its size); a one-off allocation
    # elsewhere in the process (a library's lazy cache) shows in one attempt only.
    attempts = []
    for _ in range(3):
        tracemalloc.start()
        try:
            snap0 = tracemalloc.take_snapshot()
            for _ in range(300):
                out = stage.step(win, emo, 0.04)
            snap1 = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        attempts.append(sum(st.size_diff for st in snap1.compare_to(snap0, "filename") if st.size_diff > 0))
        if attempts[-1] < 4096:
            break
    assert min(attempts) < 4096, attempts
    assert out is stage.motion


def test_close_idempotent():
    st = MotionStage(fps=30, seed=None, provider="cpu")
    st.close()
    st.close()
    from vcam.runtime.errors import GraphError

    with pytest.raises(GraphError):
        st.step(np.zeros((F.N_MELS, st.window_frames), np.float32), np.zeros(37, np.float32))
