"""The lip model's training data: phones from espeak-ng and Flite become viseme labels in time."""

from __future__ import annotations

import numpy as np
import pytest

lipdata = pytest.importorskip("vcam.graphs.lipdata")
from vcam.graphs.motion_model import VISEMES  # noqa: E402


@pytest.mark.parametrize("phone, viseme", [("p", "PBM"), ("m", "PBM"), ("f", "FV"), ("uw", "U"), ("w", "U"),
                                           ("ow", "O"), ("aa", "A"), ("ay", "A"), ("aw", "A"), ("ax", "E"),
                                           ("iy", "I"),
                                           ("t", "C"), ("s", "C"), ("pau", "sil")])
def test_flite_phones_map_to_visemes(phone, viseme):
    assert VISEMES[lipdata.flite_viseme_of(phone)] == viseme


@pytest.fixture(scope="module")
def flite():
    try:
        return lipdata.Flite()
    except RuntimeError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("voice", lipdata.Flite.VOICES)
def test_flite_gives_speech_and_phone_times_that_match_it(flite, voice):
    pcm, sr, phones = flite.synth("Bob made a map.", voice, stretch=1.1)
    assert sr in (8000, 16000) and pcm.dtype == np.float32 and len(pcm) > 0.8 * sr
    names = [p[0] for p in phones]
    assert names[0] == names[-1] == "pau" and names.count("m") >= 2 and "b" in names and "p" in names
    starts, ends = np.array([p[1] for p in phones]), np.array([p[2] for p in phones])
    assert np.all(ends > starts) and np.allclose(starts[1:], ends[:-1])
    assert abs(ends[-1] - len(pcm) / sr) < 0.15
    # loud where the vowels are, quiet in the pauses
    level = lambda a, b: float(np.sqrt(np.mean(pcm[int(a * sr):int(b * sr)] ** 2)) + 1e-9)
    vowels = [level(a, b) for n, a, b in phones if n in ("aa", "ey", "ae")]
    assert min(vowels) > 10 * level(*phones[0][1:])


def test_flite_utterances_are_labelled_in_time(flite):
    es = lipdata.Espeak()
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(12):
        u = lipdata.make_utterance(es, rng, ("",), None, flite)
        seen.add(u.meta["voice"].split("-")[0])
        assert u.feats.shape == (len(u.labels), 64)
        assert u.labels[0] == u.labels[-1] == VISEMES.index("sil")
        assert len(set(u.labels.tolist())) >= 4
    assert "flite" in seen and len(seen) >= 2  # Flite and espeak-ng both speak


def test_shards_do_not_depend_on_which_worker_made_them(tmp_path, flite):
    """Each shard is made in a fresh process: one worker or two, in any order, the data (and so
    the trained weights) come out the same. (libespeak-ng keeps state across re-initialising,
    and shards made after another in one process used to differ.)"""
    import shutil

    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    one = lipdata.build(tmp_path / "one", n_utts=6, shards=3, jobs=1, kokoro_utts=0)[0]
    two = lipdata.build(tmp_path / "two", n_utts=6, shards=3, jobs=2, kokoro_utts=0)[0]
    for a, b in zip(one, two):
        with np.load(a) as x, np.load(b) as y:
            assert all(np.array_equal(x[k], y[k]) for k in ("feats", "labels", "starts")), a.name


def test_data_goes_to_vcams_cache_folder(monkeypatch, tmp_path):
    """The shards live beside vcam's other cached files: ``$VCAM_CACHE_DIR/lipdata`` where it is set."""
    monkeypatch.setenv("VCAM_CACHE_DIR", str(tmp_path))
    assert lipdata.cache_dir() == tmp_path / "lipdata"


def test_byte_dropout_drops_a_tenth_and_keeps_the_mean():
    torch = pytest.importorskip("torch")
    from vcam.graphs.train_motion import ByteDropout

    drop = ByteDropout(np.random.default_rng(0))
    h = torch.ones(8, 96, 200)
    out = drop(h)
    assert abs(float((out == 0).float().mean()) - 26 / 256) < 0.005
    assert abs(float(out.mean()) - 1.0) < 0.01
    drop.eval()
    assert drop(h) is h  # identity outside training
