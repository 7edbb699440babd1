"""``vcam bench --lipsync`` and ``--expressions``: the plumbing to the external measuring tools.

The real tools (../shared/eval) need their own environment with MediaPipe and OpenCV; here a
stand-in eval folder answers the same way (a ``setup.sh`` that prints its Python, scripts
that print JSON, a ``facemeasure`` module with the real one's interface), and rendering is
replaced by writing an empty file, so the test checks what is called with what and what the
tables say.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vcam.runtime.errors import InputError
from vcam.bench import expressions as bench_expressions, lipsync as bench_lipsync


@pytest.fixture
def eval_dir(tmp_path) -> Path:
    d = tmp_path / "eval"
    d.mkdir()
    (d / "setup.sh").write_text(f"echo installing >&2\necho {sys.executable}\n")
    (d / "lipsync.py").write_text(textwrap.dedent("""
        import json, sys
        import numpy as np
        def load_audio16k(path):
            return np.zeros(16000, np.float32)
        def align(audio, text):  # frames at 25 fps: M over frames 4-8, AA's middle 10-12
            return [("SIL", 0.0, 0.2), ("M", 0.2, 0.3), ("AA", 0.3, 0.6), ("B", 0.6, 0.66), ("AH", 0.66, 0.9)]
        if __name__ == "__main__" and len(sys.argv) > 3:  # a transcript: phones
            print(json.dumps({"reference": "phones", "r_open": 0.5 if "jfk" in sys.argv[1] else 0.7, "lag_ms": 0,
                              "closure": 1.0, "vowel_open": 0.9, "still_sil": 0.01}))
        elif __name__ == "__main__":
            print(json.dumps({"reference": "energy", "r_open": 0.65, "lag_ms": 0, "closure": None,
                              "vowel_open": None, "still_sil": None}))
    """))
    (d / "liveness.py").write_text(textwrap.dedent("""
        import json, sys
        print(json.dumps({"face_rate": 1.0, "blinks_per_min": 20.0 if "speech" in sys.argv[1] else 12.0,
                          "roll_std_deg": 0.5, "sway": 0.03, "jerk": 0.005}))
    """))
    # The real facemeasure's interface: read_video(path) -> (frames, fps); track(frames) -> dicts.
    (d / "facemeasure.py").write_text(textwrap.dedent("""
        import math
        SHIFT = {"happy": ("corner_lift", 0.05), "sad": ("corner_lift", -0.04),
                 "angry": ("brow_gap", -0.02), "surprised": ("brow", 0.03)}
        def read_video(path):
            name = str(path).rsplit("-", 1)[-1].split(".")[0]
            return [name] * 100, 25.0
        def track(frames):
            out = []
            for i, name in enumerate(frames):
                # lips shut on the M (frames 4-8) and inside the AH (frames 18-20), half shut on the B
                gap = 0.0 if 5 <= i <= 7 or i == 19 else 0.2 if 15 <= i <= 17 else 0.5
                f = {"corner_lift": 0.0, "brow_l": 0.3, "brow_r": 0.3, "brow_gap": 0.25, "mouth_open": gap}
                for k in ("corner_lift", "brow_gap", "brow_l"):
                    f[k] += 0.002 * math.sin(i)
                if name in SHIFT:
                    k, v = SHIFT[name]
                    if k == "brow":
                        f["brow_l"] += v; f["brow_r"] += v
                    else:
                        f[k] += v
                out.append(None if i == 50 else f)
            return out
    """))
    return d


@pytest.fixture
def media(tmp_path) -> Path:
    import wave

    d = tmp_path / "media"
    d.mkdir()
    for name in ("en_a", "en_jfk"):
        with wave.open(str(d / f"{name}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((np.sin(np.arange(16000) * 0.05) * 8000).astype("<i2").tobytes())
        (d / f"{name}.txt").write_text("hello world\n")
    return d


@pytest.fixture
def fake_render(monkeypatch):
    calls = []

    def run(cmd, **kw):
        import subprocess

        if cmd[1:3] == ["-m", "vcam"]:
            calls.append(cmd)
            Path(cmd[cmd.index("--out") + 1]).write_bytes(b"")
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return real(cmd, **kw)

    import subprocess

    real = subprocess.run
    monkeypatch.setattr(subprocess, "run", run)
    return calls


def test_lipsync_scores_every_clip_on_every_portrait(eval_dir, media, fake_render):
    photos = [Path("a.png"), Path("b.png")]
    rows = bench_lipsync.run(photos, media, eval_dir, languages={}, noisy=False, song=False, bilabial=False)
    assert [(r["clip"], r["photo"]) for r in rows] == [("en_a", "a"), ("en_a", "b"), ("en_jfk", "a"), ("en_jfk", "b")]
    assert len(fake_render) == 4
    table = bench_lipsync.table(rows)
    assert _line(table, "| **median, transcripts**") == "| **median, transcripts** | | 0.6 | 0 | 1 | 0.9 | 0.01 | 0.5 |"


def test_lipsync_other_languages_are_spoken_and_scored_on_loudness(eval_dir, media, fake_render):
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    rows = bench_lipsync.run([Path("a.png")], media, eval_dir, languages={"es": "Hola, buenos días.", "sv": "Hej."},
                             noisy=False, bilabial=False)
    assert [r["clip"] for r in rows] == ["en_a", "en_jfk", "espeak_es", "espeak_sv", "espeak_song"]
    spoken = [Path(c[c.index("--audio") + 1]) for c in fake_render[2:]]
    assert [p.name for p in spoken] == ["espeak_es.wav", "espeak_sv.wav", "espeak_song.wav"]
    table = bench_lipsync.table(rows)
    assert _line(table, "| **median, transcripts**") == "| **median, transcripts** | | 0.6 | 0 | 1 | 0.9 | 0.01 | 0.5 |"
    assert (_line(table, "| **median, other")
            == "| **median, other languages and singing** | | 0.65 | 0 | - | - | - | - |")


def test_lipsync_noisy_clips_are_rendered_with_noise_and_scored_against_the_clean_speech(
        eval_dir, media, fake_render, monkeypatch):
    scored = []
    real_run_json = bench_lipsync.run_json

    def run_json(cmd):
        scored.append(cmd[2:])  # video, audio, transcript
        return real_run_json(cmd)

    monkeypatch.setattr(bench_lipsync, "run_json", run_json)
    rows = bench_lipsync.run([Path("a.png")], media, eval_dir, languages={}, song=False, bilabial=False)
    from vcam.bench.lip_events import EVENTS_SCRIPT

    scored = [c for c in scored if c[0] != EVENTS_SCRIPT]  # the per-event script reads the same video
    assert [(r["clip"], r["group"]) for r in rows] == [("en_a", "clean"), ("en_jfk", "clean"),
                                                      ("en_a + noise", "noisy"), ("en_jfk + noise", "noisy")]
    rendered = [Path(c[c.index("--audio") + 1]).name for c in fake_render]
    assert rendered == ["en_a.wav", "en_jfk.wav", "en_a+noise.wav", "en_jfk+noise.wav"]
    assert [Path(c[1]).name for c in scored] == ["en_a.wav", "en_jfk.wav", "en_a.wav", "en_jfk.wav"]
    assert [Path(c[2]).name for c in scored] == ["en_a.txt", "en_jfk.txt"] * 2
    table = bench_lipsync.table(rows)
    assert _line(table, "| **median, transcripts**") == "| **median, transcripts** | | 0.6 | 0 | 1 | 0.9 | 0.01 | 0.5 |"
    assert (_line(table, "| **median, transcripts + noise")
            == "| **median, transcripts + noise 10 dB** | | 0.6 | 0 | 1 | 0.9 | 0.01 | 0.5 |")


def test_noise_sits_its_level_below_the_speech():
    rng = np.random.default_rng(3)
    t = np.arange(48000) / 16000
    speech = (0.2 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    other = (0.05 * rng.standard_normal(20000)).astype(np.float32)
    for others in ([other], []):
        mixed = bench_lipsync.mix_noise(speech, others, np.random.default_rng(0))
        assert mixed.shape == speech.shape and mixed.dtype == np.float32 and np.abs(mixed).max() <= 0.99
        snr = 20 * np.log10(bench_lipsync.active_rms(speech) / bench_lipsync.active_rms(mixed - speech))
        assert snr == pytest.approx(bench_lipsync.NOISE_SNR_DB, abs=0.05)
        again = bench_lipsync.mix_noise(speech, others, np.random.default_rng(0))
        assert np.array_equal(mixed, again)
    assert not np.array_equal(mixed, bench_lipsync.mix_noise(speech, [], np.random.default_rng(1)))


def test_the_song_is_sung_on_its_notes(tmp_path):
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    from vcam.runtime.audio_file import load_audio

    wav = tmp_path / "song.wav"
    assert bench_lipsync.sing(wav) is None
    assert len(load_audio(wav)) / 16000 > 12  # 22 held notes
    # Each word's pitch (autocorrelation over its middle 128 ms) is its note's.
    for word, note in bench_lipsync.SONG[:4]:
        x = bench_lipsync.sing_note(word, note)
        voiced = np.flatnonzero(np.abs(x) > 0.05)
        mid = x[(voiced[0] + voiced[-1]) // 2 - 1024: (voiced[0] + voiced[-1]) // 2 + 1024]
        ac = np.correlate(mid - mid.mean(), mid - mid.mean(), "full")[len(mid) - 1:]
        lo, hi = 16000 // 300, 16000 // 60
        sung = 12 * np.log2(16000 / (lo + np.argmax(ac[lo:hi])) / 440.0) + 69
        assert sung == pytest.approx(note, abs=0.7), (word, note, sung)


def test_expressions_measure_each_emotion_against_neutral(eval_dir, media, fake_render):
    result = bench_expressions.run([Path("face.png")], media, eval_dir)
    emotions = [c[c.index("--emotion") + 1] for c in fake_render]
    assert emotions == ["neutral", "happy", "sad", "angry", "surprised", "neutral", "neutral"]
    row = result["emotions"][0]
    assert row["photo"] == "face"
    for emotion in bench_expressions.EMOTIONS:
        assert row[emotion]["x_noise"] > 5, (emotion, row[emotion])  # the expected direction, well above noise
    assert row["happy"]["measure"] == "corner_lift" and row["angry"]["delta"] == pytest.approx(-0.02, abs=1e-3)
    clips = [r["clip"] for r in result["liveness"]]
    assert clips == ["speech 3 s", "silence 12 s"]  # two 1 s clips, each followed by 0.5 s
    table = bench_expressions.table(result)
    assert "| face | speech 3 s | 1 | 20 | 0.5 | 0.03 | 0.005 |" in table
    assert table.splitlines()[0].startswith("| portrait | happy (corner_lift ↑) |")


def test_missing_eval_tools_are_one_clear_error(tmp_path, media):
    with pytest.raises(InputError, match="no measuring tools at .*--eval-dir"):
        bench_expressions.run([Path("face.png")], media, tmp_path / "nowhere")


def test_no_speech_is_one_clear_error(eval_dir, tmp_path, fake_render):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no speech"):
        bench_expressions.run([Path("face.png")], tmp_path / "empty", eval_dir)


def test_lipsync_offline_scores_the_motion_graphs_jaw_with_the_tools_own_functions(tmp_path, media):
    """``--offline``: no rendering; the motion graph's jawOpen track (one value per frame) goes
    to the measuring tools' own reference and best-lag functions. The stand-in ``lipsync``
    module reports what it was given: the track's peak as r_open and its length as lag_ms."""
    d = tmp_path / "eval"
    d.mkdir()
    (d / "setup.sh").write_text(f"echo {sys.executable}\n")
    (d / "lipsync.py").write_text(textwrap.dedent("""
        import numpy as np
        def load_audio16k(path):
            return np.zeros(16000, np.float32)
        def align(audio, text):
            return [("SIL", 0.0, 0.2), ("M", 0.2, 0.3), ("AA", 0.3, 0.6), ("SIL", 0.6, 1.0)]
        def reference_from_phones(phones, times):
            return np.ones_like(times)
        def reference_from_energy(audio, times):
            return np.ones_like(times)
        def best_lag(x, y, fps, max_ms=200):
            assert len(x) == len(y)
            return float(np.max(x)), float(len(x))
    """))
    rows = bench_lipsync.run_offline(media, d, fps=25, languages={}, noisy=False, song=False, bilabial=False)
    assert [(r["clip"], r["photo"]) for r in rows] == [("en_a", "(jawOpen)"), ("en_jfk", "(jawOpen)")]
    for r in rows:
        assert r["reference"] == "phones" and r["lag_ms"] == 25.0  # 1 s at 25 fps: 25 frames scored
        assert 0.0 <= r["r_open"] <= 1.0 and r["closure"] in (0.0, 1.0)
    assert _line(bench_lipsync.table(rows), "| **median, transcripts** |")
    for r in rows:  # the per-event figures of the track itself
        assert [e[0] for e in r["events"]] == ["M"] and r["open_vowels"] == 1


def _line(table: str, start: str) -> str:
    """The one line of ``table`` that starts with ``start``."""
    found = [ln for ln in table.splitlines() if ln.startswith(start)]
    assert len(found) == 1, (start, table)
    return found[0]


def test_lipsync_reports_every_bilabial_and_the_false_closures(eval_dir, media, fake_render):
    """Per event, from the face tracker's lip gap (the stand-in's: shut on the M, 0.4 of its p95
    on the B, shut once inside the AH): each P/B/M's closest gap as a fraction of the p95 gap,
    the open vowels whose middle reads shut, and a summary per group naming what stayed open."""
    from vcam.bench import lip_events as bench_lip_events

    rows = bench_lipsync.run([Path("a.png")], media, eval_dir, languages={}, noisy=False, song=False, bilabial=False)
    for r in rows:
        assert r["events"] == [["M", 0.2, 0.3, 0.0], ["B", 0.6, 0.66, 0.4]]
        assert r["open_vowels"] == 2 and r["false_closures"] == [["AH", 0.66, 0.9]] and r["false_closure"] == 0.5
    text = bench_lip_events.summary(rows)
    assert "| development clips | 2/4 (0.50) | 0.200 | 0.400 | 2/4 (0.500) |" in text
    assert "| en_a | a | B | 0.60 | 0.400 |" in text and "| en_jfk | a | B | 0.60 | 0.400 |" in text


def test_bilabial_sentences_need_a_voice_and_say_how_to_get_one(tmp_path, monkeypatch):
    from vcam.bench import lip_events as bench_lip_events

    monkeypatch.setattr(bench_lip_events, "held_out_voices",
                        lambda: {"festival_ked": "Festival's ked voice is not installed (apt install ...)",
                                 "piper_joe": "Piper's joe voice is not installed (pip install ...)"})
    rows: list[dict] = []
    assert bench_lip_events.bilabial_jobs(tmp_path, rows) == []
    assert [(r["clip"], r["group"]) for r in rows] == [("festival_ked", "bilabial"), ("piper_joe", "bilabial")]
    assert all("not installed" in r["error"] for r in rows)
    sentences = bench_lip_events.BILABIAL_SENTENCES
    assert len(sentences) == 40 and len(set(sentences)) == 40
    words = " ".join(sentences).lower()
    assert sum(words.count(c) for c in "pbm") > 200  # dense in bilabials


def test_bilabial_sentences_are_spoken_by_festival_when_it_is_installed(tmp_path):
    from vcam.bench import lip_events as bench_lip_events

    if bench_lip_events.held_out_voices()["festival_ked"]:
        pytest.skip("Festival's ked voice is not installed")
    wav = tmp_path / "ked.wav"
    bench_lip_events.speak_clip("festival_ked", ["My mother made muffins.", "Bob paid."], wav)
    import soundfile as sf

    x, sr = sf.read(wav)
    assert sr == 16000 and 2.0 < len(x) / sr < 6.0 and 0.85 < np.abs(x).max() < 0.95
    assert wav.with_suffix(".txt").read_text() == "My mother made muffins. Bob paid.\n"
