"""Settings: ``config/default.toml`` plus the user's file, validated once into frozen dataclasses.

``load_settings()`` reads the defaults, lays the user's file over them key by key, checks
every value and returns a ``Settings`` holding one frozen ``*Config`` per ``[section]``.
Each component is handed only its section. Any problem is a ``ConfigError`` whose message
names the file, the ``[section] key``, what was expected and what came.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcam.runtime.channels import EMOTIONS
from vcam.runtime.errors import ConfigError

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
PROVIDERS = ("auto", "cpu", "cuda")
BADGE_CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")  # as vcam.runtime.badge.CORNERS


# -- value checks: each turns a TOML value into the field's type or says what it expected --


@dataclass(frozen=True)
class _Int:
    lo: int
    hi: int

    def __str__(self) -> str:
        return f"an integer {self.lo}..{self.hi}"

    def __call__(self, v: Any) -> int | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and self.lo <= v <= self.hi
        return v if ok else None


@dataclass(frozen=True)
class _Float:
    lo: float
    hi: float

    def __str__(self) -> str:
        return f"a number {self.lo:g}..{self.hi:g}"

    def __call__(self, v: Any) -> float | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and self.lo <= v <= self.hi
        return float(v) if ok else None


@dataclass(frozen=True)
class _Choice:
    options: tuple[str, ...]

    def __str__(self) -> str:
        return "one of " + ", ".join(f'"{o}"' for o in self.options)

    def __call__(self, v: Any) -> str | None:
        return v if isinstance(v, str) and v in self.options else None


@dataclass(frozen=True)
class _Bool:
    def __str__(self) -> str:
        return "true or false"

    def __call__(self, v: Any) -> bool | None:
        return v if isinstance(v, bool) else None


@dataclass(frozen=True)
class _Hotkey:
    """A pynput hotkey such as ``<ctrl>+<alt>+1``, or ``""`` for none."""

    def __str__(self) -> str:
        return 'a key combination like "<ctrl>+<alt>+1" (or "" for none)'

    def __call__(self, v: Any) -> str | None:
        if not isinstance(v, str):
            return None
        if v == "":
            return v
        parts = v.split("+")
        if any(not p for p in parts):
            return None
        for p in parts:
            if p.startswith("<") != p.endswith(">") or (not p.startswith("<") and len(p) != 1):
                return None
        return v


@dataclass(frozen=True)
class _Text:
    empty_ok: bool = False

    def __str__(self) -> str:
        return "a string" if self.empty_ok else "a non-empty string"

    def __call__(self, v: Any) -> str | None:
        return v if isinstance(v, str) and (self.empty_ok or v.strip()) else None


@dataclass(frozen=True)
class _Pattern:
    regex: str
    what: str

    def __str__(self) -> str:
        return self.what

    def __call__(self, v: Any) -> str | None:
        return v if isinstance(v, str) and re.fullmatch(self.regex, v) else None


class _TextList:
    def __str__(self) -> str:
        return "a list of non-empty strings"

    def __call__(self, v: Any) -> tuple[str, ...] | None:
        ok = isinstance(v, list) and all(isinstance(s, str) and s.strip() for s in v)
        return tuple(v) if ok else None


def _key(check: Any) -> Any:
    """A required dataclass field whose TOML value passes ``check``."""
    return field(metadata={"check": check})


# -- sections --


@dataclass(frozen=True)
class RenderConfig:
    """``[render]``: offline rendering to a video file."""

    fps: int = _key(_Int(1, 120))
    seed: int = _key(_Int(0, 2**32 - 1))
    crf: int = _key(_Int(0, 51))
    preset: str = _key(_Choice(X264_PRESETS))


@dataclass(frozen=True)
class EnrollConfig:
    """``[enroll]``: turning a photo into a portrait."""

    face_width_frac: float = _key(_Float(0.2, 0.8))


@dataclass(frozen=True)
class EngineConfig:
    """``[engine]``: where and how the networks run."""

    provider: str = _key(_Choice(PROVIDERS))
    threads: int = _key(_Int(0, 256))


@dataclass(frozen=True)
class EmotionConfig:
    """``[emotion]``: facial expression."""

    default: str = _key(_Choice(EMOTIONS))
    intensity: float = _key(_Float(0.0, 1.0))
    crossfade_ms: int = _key(_Int(0, 10000))


@dataclass(frozen=True)
class MotionConfig:
    """``[motion]``: how the head moves."""

    scale: float = _key(_Float(0.0, 2.0))


@dataclass(frozen=True)
class LiveConfig:
    """``[live]``: the live virtual webcam (``vcam run``)."""

    fps: int = _key(_Int(1, 120))
    audio: str = _key(_Text())
    outputs: tuple[str, ...] = _key(_TextList())
    photo: str = _key(_Text(empty_ok=True))
    camera_device: str = _key(_Text(empty_ok=True))
    camera_retry_s: float = _key(_Float(0.5, 3600.0))
    tray: bool = _key(_Bool())
    hotkeys: bool = _key(_Bool())


@dataclass(frozen=True)
class MicConfig:
    """``[mic]``: the virtual microphone that carries the voice in step with the face."""

    enabled: bool = _key(_Bool())
    name: str = _key(_Pattern(r"[A-Za-z0-9_.-]{1,64}", "letters, digits, '_', '-' or '.' (1..64)"))
    description: str = _key(_Pattern(r"[^'\"]{1,100}", "text without quotes (1..100 characters)"))
    device: str = _key(_Text(empty_ok=True))
    av_offset_ms: float = _key(_Float(-500.0, 500.0))


@dataclass(frozen=True)
class HotkeysConfig:
    """``[hotkeys]``: global key combinations of the live webcam; ``""`` turns one off."""

    neutral: str = _key(_Hotkey())
    happy: str = _key(_Hotkey())
    sad: str = _key(_Hotkey())
    angry: str = _key(_Hotkey())
    surprised: str = _key(_Hotkey())
    pause: str = _key(_Hotkey())


@dataclass(frozen=True)
class ProvenanceConfig:
    """``[provenance]``: the visible "AI" badge (the invisible watermark has no setting)."""

    badge: bool = _key(_Bool())
    badge_corner: str = _key(_Choice(BADGE_CORNERS))


@dataclass(frozen=True)
class Settings:
    """All sections, plus the files they came from (defaults first)."""

    render: RenderConfig
    enroll: EnrollConfig
    engine: EngineConfig
    emotion: EmotionConfig
    motion: MotionConfig
    live: LiveConfig
    mic: MicConfig
    hotkeys: HotkeysConfig
    provenance: ProvenanceConfig
    files: tuple[Path, ...]


_SECTIONS: dict[str, type] = {
    "render": RenderConfig,
    "enroll": EnrollConfig,
    "engine": EngineConfig,
    "emotion": EmotionConfig,
    "motion": MotionConfig,
    "live": LiveConfig,
    "mic": MicConfig,
    "hotkeys": HotkeysConfig,
    "provenance": ProvenanceConfig,
}


def default_config_path() -> Path:
    """``config/default.toml`` of this checkout or installation (:mod:`vcam.resources`)."""
    from vcam.resources import config_file

    return config_file("default.toml")


def user_config_path() -> Path:
    """Where the user's ``config.toml`` lives on this platform (it may not exist):
    ``$VCAM_CONFIG_DIR/config.toml`` when that variable is set, else the platform's folder."""
    from vcam.userdirs import config_dir

    return config_dir() / "config.toml"


def load_settings(path: str | Path | None = None, *, defaults: str | Path | None = None) -> Settings:
    """Read ``defaults`` (``default_config_path()``), then ``path`` over it, and validate.

    ``path=None`` uses ``user_config_path()`` if that file exists; a ``path`` given
    explicitly must exist. Raises ``ConfigError`` naming the file and key on any problem.
    """
    default_file = Path(defaults) if defaults is not None else default_config_path()
    if not default_file.is_file():
        raise ConfigError(f"default config not found at {default_file}: the vcam installation is incomplete")
    files = [default_file]
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config {path} not found")
        files.append(path)
    elif user_config_path().is_file():
        files.append(user_config_path())

    # section -> key -> (value, file it came from)
    merged: dict[str, dict[str, tuple[Any, Path]]] = {name: {} for name in _SECTIONS}
    for file in files:
        for section, table in _read(file).items():
            for key, value in table.items():
                merged[section][key] = (value, file)

    sections = {name: _build(cls, name, merged[name], default_file) for name, cls in _SECTIONS.items()}
    return Settings(**sections, files=tuple(files))


def _read(file: Path) -> dict[str, dict[str, Any]]:
    """Parse ``file``; check its sections and keys exist (values are checked later)."""
    try:
        with open(file, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {file}: not valid TOML: {e}") from e
    except OSError as e:
        raise ConfigError(f"config {file}: cannot read: {e.strerror}") from e
    known = ", ".join(f"[{s}]" for s in _SECTIONS)
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"config {file}: key {section} is outside any section; put it under one of {known}")
        if section not in _SECTIONS:
            raise ConfigError(f"config {file}: unknown section [{section}] (known: {known})")
        names = [f.name for f in dataclasses.fields(_SECTIONS[section])]
        for key in table:
            if key not in names:
                raise ConfigError(f"config {file}: unknown key [{section}] {key} (known: {', '.join(names)})")
    return data


def _build(cls: type, section: str, values: dict[str, tuple[Any, Path]], default_file: Path) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            raise ConfigError(f"config {default_file}: [{section}] {f.name} is missing")
        value, file = values[f.name]
        check = f.metadata["check"]
        converted = check(value)
        if converted is None:
            raise ConfigError(f"config {file}: [{section}] {f.name} must be {check}, got {_show(value)}")
        kwargs[f.name] = converted
    return cls(**kwargs)


def _show(value: Any) -> str:
    """``value`` as written in TOML, roughly: strings quoted, booleans lowercase."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value)
    return str(value)
