"""vcam.app.settings: default.toml + a user file -> frozen, validated sections; errors name file and key."""

from __future__ import annotations

import dataclasses
import re
import sys
import tomllib

import pytest

from vcam.runtime.errors import ConfigError
from vcam.app.settings import (
    RenderConfig,
    Settings,
    default_config_path,
    load_settings,
    user_config_path,
)


@pytest.fixture(autouse=True)
def no_user_config(tmp_path, monkeypatch):
    """Keep the developer's own ~/.config/vcam/config.toml out of the tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VCAM_CONFIG_DIR", raising=False)


def write(tmp_path, text: str, name: str = "config.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults():
    s = load_settings()
    assert isinstance(s, Settings)
    assert s.render == RenderConfig(fps=25, seed=0, crf=18, preset="veryfast")
    assert s.enroll.face_width_frac == 0.40
    assert (s.engine.provider, s.engine.threads) == ("auto", 0)
    assert (s.emotion.default, s.emotion.intensity, s.emotion.crossfade_ms) == ("neutral", 0.8, 300)
    assert s.motion.scale == 1.0
    assert (s.live.fps, s.live.audio, s.live.outputs) == (30, "mic", ("camera",))
    assert s.files == (default_config_path(),)


def test_sections_are_frozen():
    s = load_settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.render.fps = 60  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.render = s.render  # type: ignore[misc]


def test_every_default_key_is_commented():
    lines = default_config_path().read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z_]+\s*=", line):
            assert lines[i - 1].lstrip().startswith("#"), f"default.toml line {i + 1} has no comment: {line}"


def test_default_file_has_exactly_the_dataclass_keys():
    from vcam.app import settings as mod

    data = tomllib.loads(default_config_path().read_text())
    assert set(data) == set(mod._SECTIONS)
    for name, cls in mod._SECTIONS.items():
        assert set(data[name]) == {f.name for f in dataclasses.fields(cls)}, name


def test_user_file_overrides_key_by_key(tmp_path):
    path = write(tmp_path, '[render]\nfps = 30\n\n[live]\noutputs = ["camera", "y4m:/tmp/live.y4m"]\n')
    s = load_settings(path)
    assert s.render.fps == 30
    assert s.render.crf == 18  # untouched keys keep their defaults
    assert s.live.outputs == ("camera", "y4m:/tmp/live.y4m")
    assert s.files == (default_config_path(), path)


def test_integer_accepted_for_number(tmp_path):
    s = load_settings(write(tmp_path, "[emotion]\nintensity = 1\n"))
    assert s.emotion.intensity == 1.0 and isinstance(s.emotion.intensity, float)


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG config dir is for Linux")
def test_platform_user_file_is_read(tmp_path):
    user = user_config_path()
    assert user == tmp_path / "xdg" / "vcam" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[engine]\nprovider = "cpu"\n')
    s = load_settings()
    assert s.engine.provider == "cpu"
    assert s.files[-1] == user


def test_explicit_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match=f"^config {tmp_path / 'nope.toml'} not found$"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[render]\nfps = "fast"\n', "[render] fps must be an integer 1..120, got 'fast'"),
        ("[render]\nfps = 0\n", "[render] fps must be an integer 1..120, got 0"),
        ("[render]\nfps = true\n", "[render] fps must be an integer 1..120, got true"),
        ("[render]\nfps = 25.0\n", "[render] fps must be an integer 1..120, got 25.0"),
        ('[render]\npreset = "turbo"\n', '[render] preset must be one of "ultrafast", '),
        ("[enroll]\nface_width_frac = 1.5\n", "[enroll] face_width_frac must be a number 0.2..0.8, got 1.5"),
        ('[engine]\nprovider = "tpu"\n', '[engine] provider must be one of "auto", "cpu", "cuda", got \'tpu\''),
        ('[emotion]\ndefault = "bored"\n', "[emotion] default must be one of"),
        ('[live]\noutputs = "camera"\n', "[live] outputs must be a list of non-empty strings, got 'camera'"),
        ('[live]\naudio = ""\n', "[live] audio must be a non-empty string, got ''"),
        ("[render]\nfpss = 30\n", "unknown key [render] fpss (known: fps, seed, crf, preset)"),
        ("[rendering]\nfps = 30\n", "unknown section [rendering]"),
        ("fps = 30\n", "key fps is outside any section"),
        ("[render]\nfps = \n", "not valid TOML"),
    ],
)
def test_bad_user_file_names_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"config {path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_key_in_defaults_is_reported(tmp_path):
    defaults = write(tmp_path, default_config_path().read_text().replace("crf = 18\n", ""), "default.toml")
    with pytest.raises(ConfigError, match=r"\[render\] crf is missing"):
        load_settings(defaults=defaults)


def test_missing_defaults_file(tmp_path):
    with pytest.raises(ConfigError, match="default config not found"):
        load_settings(defaults=tmp_path / "none.toml")
