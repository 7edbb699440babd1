"""The offline render end to end, with the real graphs: frame count, motion CSV, seeds, bad input."""

from __future__ import annotations

import csv
import math
import wave

import av
import numpy as np
import pytest

from vcam.runtime.channels import MOTION
from vcam import assets
from vcam.runtime.audio_file import load_audio
from vcam.app.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VCAM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory):
    """The first 3.3 s of the sample speech, as a 16-bit wav."""
    pcm = load_audio(assets.SAMPLE_AUDIO)[: int(3.3 * 16000)]
    path = tmp_path_factory.mktemp("speech") / "short.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def _render(tmp_path, audio, *extra, name="out"):
    out = tmp_path / f"{name}.mp4"
    csv_path = tmp_path / f"{name}.csv"
    status = main(["render", "--photo", str(assets.SAMPLE_PHOTO), "--audio", str(audio), "--out", str(out),
                   "--motion-out", str(csv_path), *extra])
    return status, out, csv_path


def _rows(csv_path):
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, np.array([[float(v) for v in row] for row in reader])


def test_frame_count_and_motion_csv(tmp_path, short_speech):
    status, out, csv_path = _render(tmp_path, short_speech, "--fps", "30")
    assert status == 0
    seconds = load_audio(short_speech).size / 16000
    expected = math.ceil(seconds * 30)
    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == expected
    header, rows = _rows(csv_path)
    assert header == ["time_s", *MOTION]
    assert rows.shape == (expected, 1 + len(MOTION))
    blend = rows[:, 1:38]
    assert blend.min() >= 0.0 and blend.max() <= 1.0
    assert np.all(np.diff(rows[:, 0]) > 0)
    assert rows[:, 1].max() > 0.3, "speech should open the jaw"


def test_motion_track_is_the_renders_motion(tmp_path, short_speech):
    """``motion_track`` (the lip-sync bench's offline mode) steps the motion graph exactly as a
    render does: the same rows as the render's motion CSV (neutral emotion, same seed)."""
    from vcam.app.render_job import motion_track

    status, _, csv_path = _render(tmp_path, short_speech, "--seed", "4", "--emotion", "neutral")
    assert status == 0
    _, rows = _rows(csv_path)
    track = motion_track(load_audio(short_speech), fps=25, seed=4)
    assert track.shape == (rows.shape[0], len(MOTION))
    np.testing.assert_allclose(track, rows[:, 1:], rtol=1e-4, atol=1e-4)


def test_same_seed_same_motion_other_seed_other_motion(tmp_path, short_speech):
    _, _, a = _render(tmp_path, short_speech, "--seed", "3", name="a")
    _, _, b = _render(tmp_path, short_speech, "--seed", "3", name="b")
    _, _, c = _render(tmp_path, short_speech, "--seed", "4", name="c")
    ra, rb, rc = _rows(a)[1], _rows(b)[1], _rows(c)[1]
    assert np.array_equal(ra, rb)
    assert not np.array_equal(ra, rc)


def test_emotion_changes_the_face(tmp_path, short_speech):
    _, _, neutral = _render(tmp_path, short_speech, "--emotion", "neutral", name="n")
    _, _, happy = _render(tmp_path, short_speech, "--emotion", "happy", "--intensity", "1", name="h")
    smile = [MOTION.index("mouthSmileLeft") + 1, MOTION.index("mouthSmileRight") + 1]
    assert _rows(happy)[1][:, smile].mean() > _rows(neutral)[1][:, smile].mean() + 0.3


def test_no_face_fails_cleanly_with_the_real_job(tmp_path, short_speech, capsys):
    coffee = tmp_path / "coffee.png"
    from PIL import Image

    Image.fromarray(np.full((300, 400, 3), (120, 80, 40), np.uint8)).save(coffee)
    out = tmp_path / "x.mp4"
    status = main(["render", "--photo", str(coffee), "--audio", str(short_speech), "--out", str(out),
                   "--motion-out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "no face found in" in err and str(coffee) in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == [coffee]
