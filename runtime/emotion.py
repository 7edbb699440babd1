"""Emotion presets and the cross-fading mixer that feeds the motion graph's ``emotion`` input.

Presets live in ``config/emotions.toml``: one table per emotion of
:data:`vcam.runtime.channels.EMOTIONS`, keys are blendshape names, values the offsets at intensity 1.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from vcam.runtime.channels import BLENDSHAPES, EMOTIONS, N_BLENDSHAPES
from vcam.runtime.errors import ConfigError

_BS_INDEX = {n: i for i, n in enumerate(BLENDSHAPES)}
MAX_INTENSITY = 2.0


def load_emotion_presets(path: Path | str | None = None) -> dict[str, np.ndarray]:
    """Read the presets: ``{emotion: (37,) float32 offsets}`` for every emotion of ``EMOTIONS``.

    Raises :class:`ConfigError` naming the file and the bad key: unknown emotion or blendshape,
    a value that is not a number in ``-1..1``, a missing emotion, or a file that is not TOML.
    ``path=None`` reads the packaged ``config/emotions.toml``.
    """
    if path is None:
        from vcam.resources import config_file

        path = config_file("emotions.toml")
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"emotion presets file {path} is missing") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"emotion presets file {path} is not valid TOML: {e}") from None
    presets: dict[str, np.ndarray] = {}
    for name, table in raw.items():
        if name not in EMOTIONS:
            raise ConfigError(f"{path}: unknown emotion [{name}] (valid: {', '.join(EMOTIONS)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {name} must be a table [{name}] of blendshape = offset")
        vec = np.zeros(N_BLENDSHAPES, np.float32)
        for key, value in table.items():
            if key not in _BS_INDEX:
                raise ConfigError(f"{path}: [{name}] {key}: not an ARKit blendshape of vcam.runtime.channels.BLENDSHAPES")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= float(value) <= 1.0:
                raise ConfigError(f"{path}: [{name}] {key} = {value!r}: expected a number in -1..1")
            vec[_BS_INDEX[key]] = float(value)
        presets[name] = vec
    missing = [e for e in EMOTIONS if e not in presets]
    if missing:
        raise ConfigError(f"{path}: emotion(s) {', '.join(missing)} missing (each of {', '.join(EMOTIONS)} needs a table)")
    return presets


class EmotionMixer:
    """The current emotion offsets, cross-faded when the emotion changes.

    :meth:`set` picks an emotion; :meth:`advance` (once per video frame) moves the fade on and
    updates :attr:`current`, a preallocated ``(37,) float32`` vector (the same array always).

    Parameters
    ----------
    presets:
        ``{emotion: (37,) float32}``; default: :func:`load_emotion_presets` of ``config/emotions.toml``.
    fade_s:
        Cross-fade duration in seconds.
    """

    def __init__(self, presets: dict[str, np.ndarray] | None = None, *, fade_s: float = 0.3) -> None:
        self._presets = load_emotion_presets() if presets is None else dict(presets)
        for name, vec in self._presets.items():
            if np.shape(vec) != (N_BLENDSHAPES,):
                raise ConfigError(f"emotion preset {name!r} must have {N_BLENDSHAPES} offsets, got shape {np.shape(vec)}")
        self.fade_s = float(fade_s)
        self.current = np.zeros(N_BLENDSHAPES, np.float32)
        self._from = np.zeros(N_BLENDSHAPES, np.float32)
        self._to = np.zeros(N_BLENDSHAPES, np.float32)
        self._t = self.fade_s
        self.name = "neutral"
        self.intensity = 1.0
        if "neutral" in self._presets:
            self._to[:] = self._presets["neutral"]
            self.current[:] = self._to

    @property
    def emotions(self) -> tuple[str, ...]:
        """The emotion names this mixer knows."""
        return tuple(self._presets)

    def set(self, name: str, intensity: float = 1.0) -> None:
        """Start fading to ``name`` at ``intensity`` (0..2). Unknown names raise :class:`ConfigError`."""
        if name not in self._presets:
            raise ConfigError(f"unknown emotion {name!r} (valid: {', '.join(self._presets)})")
        if not 0.0 <= float(intensity) <= MAX_INTENSITY:
            raise ConfigError(f"emotion intensity must be in 0..{MAX_INTENSITY:g}, got {intensity!r}")
        self._from[:] = self.current
        np.multiply(self._presets[name], np.float32(intensity), out=self._to)
        self._t = 0.0 if self.fade_s > 0 else self.fade_s
        self.name = name
        self.intensity = float(intensity)

    def advance(self, dt_s: float) -> np.ndarray:
        """Move the fade on by ``dt_s`` seconds; returns :attr:`current` ``(37,) float32``."""
        self._t = min(self._t + dt_s, self.fade_s)
        x = 1.0 if self.fade_s <= 0 else self._t / self.fade_s
        w = np.float32(x * x * (3.0 - 2.0 * x))
        np.subtract(self._to, self._from, out=self.current)
        np.multiply(self.current, w, out=self.current)
        np.add(self.current, self._from, out=self.current)
        return self.current

    @property
    def fading(self) -> bool:
        """True while a cross-fade is under way."""
        return self._t < self.fade_s
