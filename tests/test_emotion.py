"""Emotion presets (config/emotions.toml) and the cross-fading mixer."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from runtime.channels import EMOTIONS, INDEX, N_BLENDSHAPES
from runtime.emotion import DEFAULT_PRESETS, EmotionMixer, load_emotion_presets
from runtime.errors import ConfigError


def test_shipped_presets():
    p = load_emotion_presets(DEFAULT_PRESETS)
    assert set(p) == set(EMOTIONS)
    for v in p.values():
        assert v.shape == (N_BLENDSHAPES,) and v.dtype == np.float32
    assert not p["neutral"].any()
    assert p["happy"][INDEX["mouthSmileLeft"]] > 0.3 and p["happy"][INDEX["cheekSquintRight"]] > 0
    assert p["sad"][INDEX["browInnerUp"]] > 0.3 and p["sad"][INDEX["mouthFrownLeft"]] > 0
    assert p["angry"][INDEX["browDownLeft"]] > 0.3 and p["angry"][INDEX["mouthPressRight"]] > 0
    s = p["surprised"]
    assert s[INDEX["eyeWideLeft"]] > 0.3 and s[INDEX["browOuterUpRight"]] > 0.3
    assert 0.1 <= s[INDEX["jawOpen"]] <= 0.2


def test_every_shipped_key_is_commented():
    for line in DEFAULT_PRESETS.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            assert "#" in line.split("=", 1)[1], line


@pytest.mark.parametrize("text, needle", [
    ("[neutral]\n[happy]\nmouthSmileLeft = 0.5\n[sad]\n[angry]\n[surprised]\n[bored]\n", "bored"),
    ("[neutral]\n[happy]\nmouthGrin = 0.5\n[sad]\n[angry]\n[surprised]\n", "mouthGrin"),
    ("[neutral]\n[happy]\nmouthSmileLeft = 3.0\n[sad]\n[angry]\n[surprised]\n", "mouthSmileLeft"),
    ("[neutral]\n[happy]\nmouthSmileLeft = \"lots\"\n[sad]\n[angry]\n[surprised]\n", "mouthSmileLeft"),
    ("[neutral]\n[happy]\n[sad]\n[angry]\n", "surprised"),
    ("[neutral\n", "TOML"),
])
def test_bad_presets_name_key_and_file(tmp_path, text, needle):
    f = tmp_path / "emo.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_emotion_presets(f)
    assert needle in str(e.value) and str(f) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="missing"):
        load_emotion_presets(tmp_path / "nope.toml")


def test_unknown_emotion_lists_valid():
    m = EmotionMixer()
    with pytest.raises(ConfigError) as e:
        m.set("bored")
    for name in EMOTIONS:
        assert name in str(e.value)
    with pytest.raises(ConfigError):
        m.set("happy", 5.0)


def test_cross_fade():
    p = load_emotion_presets()
    m = EmotionMixer(p, fade_s=0.3)
    cur = m.current
    assert not cur.any()
    m.set("happy", 1.0)
    k = INDEX["mouthSmileLeft"]
    seen = []
    for _ in range(10):  # 25 fps
        out = m.advance(0.04)
        assert out is cur
        seen.append(float(cur[k]))
    assert np.all(np.diff(seen) >= 0)
    assert 0.0 < seen[2] < p["happy"][k]
    assert seen[-1] == pytest.approx(p["happy"][k])
    assert not m.fading
    m.set("sad", 0.5)
    m.advance(0.15)
    assert 0.0 < cur[k] < p["happy"][k]  # half-way between happy and half-sad
    for _ in range(10):
        m.advance(0.04)
    np.testing.assert_allclose(cur, p["sad"] * 0.5, atol=1e-6)


def test_advance_allocates_nothing():
    m = EmotionMixer()
    m.set("surprised")
    for _ in range(5):
        m.advance(0.01)
    tracemalloc.start()
    try:
        snap0 = tracemalloc.take_snapshot()
        for i in range(300):
            if i % 50 == 0:
                m.set(EMOTIONS[(i // 50) % len(EMOTIONS)])
            m.advance(0.01)
        snap1 = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(st.size_diff for st in snap1.compare_to(snap0, "filename") if st.size_diff > 0)
    assert grown < 2048, grown
