"""What the tray shows, as pure functions of the daemon's status dict: the status line, the
tooltip (Windows-safe length), the microphone's state and the recent photos' labels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

NAME = "vcam"
TOOLTIP_MAX = 127  # Windows' szTip holds 128 UTF-16 units, terminator included
_OUTPUT_CLOSED = ("closed", "closed by user", "off", "stopped")

# -- what the tray shows: pure functions of a status dict --


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _audio(status: dict) -> tuple[str | None, str | None]:
    """(source, state) from ``status["audio"]`` (a dict, a bare source name, or missing)."""
    audio = status.get("audio")
    if isinstance(audio, dict):
        source, state = audio.get("source"), audio.get("state")
        return (str(source) if source else None), (str(state) if state else None)
    if isinstance(audio, str) and audio:
        return audio, None
    return None, None


def _outputs(status: dict) -> dict[str, str | None]:
    """``{name: state}`` from ``status["outputs"]`` ({name: state} or {name: {"state": ...}})."""
    outputs = status.get("outputs")
    if not isinstance(outputs, dict):
        return {}
    return {str(k): (v.get("state") if isinstance(v, dict) else v if isinstance(v, str) else None)
            for k, v in outputs.items()}


def _dropped(status: dict) -> int | None:
    """``status["dropped"]``, else the sum of the outputs' ``dropped`` counts."""
    value = _num(status.get("dropped"))
    if value is not None:
        return int(value)
    outputs = status.get("outputs")
    if isinstance(outputs, dict):
        counts = [_num(v.get("dropped")) for v in outputs.values() if isinstance(v, dict)]
        counts = [c for c in counts if c is not None]
        if counts:
            return int(sum(counts))
    return None


def preview_shown(status: dict) -> bool:
    """``status["preview"]`` when it is a bool, else whether a ``preview`` output is open."""
    value = status.get("preview")
    if isinstance(value, bool):
        return value
    state = _outputs(status).get("preview", "closed")
    return state is None or str(state).lower() not in _OUTPUT_CLOSED


def _expression(status: dict, paused_word: str) -> list[str] | None:
    """``["happy 75%", paused_word?]`` from a status, or ``None`` before the daemon reports one."""
    emotion = status.get("emotion")
    if not isinstance(emotion, str) or not emotion:
        return None
    parts = [emotion]
    intensity = _num(status.get("intensity"))
    if intensity is not None:
        parts[0] += f" {round(intensity * 100)}%"
    if status.get("paused") is True:
        parts.append(paused_word)
    return parts


def status_line(status: dict) -> str:
    """The menu's first (disabled) line, coarse so it changes rarely: ``vcam: happy 75% · 30 fps``."""
    parts = _expression(status, "lip sync paused")
    if parts is None:
        return f"{NAME}: starting…"
    fps = _num(status.get("fps"))
    if fps is not None:
        parts.append(f"{fps:.0f} fps")
    return f"{NAME}: " + " · ".join(parts)


def mic_tooltip(status: dict) -> str | None:
    """``mic 112 ms`` (running), ``mic 112 ms, 3 underruns``, ``mic off``, ``mic unavailable``."""
    mic = status.get("mic")
    if not isinstance(mic, dict):
        return None
    state = mic.get("state")
    if state != "running":
        return f"mic {state}" if state else None
    delay = _num(mic.get("delay_ms"))
    text = "mic" + (f" {delay:.0f} ms" if delay is not None else "")
    under = mic.get("underruns")
    if isinstance(under, int) and under:
        text += f", {under} underruns"
    return text


def mic_on(status: dict) -> bool:
    mic = status.get("mic")
    return isinstance(mic, dict) and mic.get("state") not in (None, "off", "closed")


MIC_OFFSETS_MS = (-40, -20, 0, 20, 40, 80)


def tooltip(status: dict) -> str:
    """The icon's title/tooltip: emotion, fps, latency p50, drops, audio; at most 127 characters."""
    parts = _expression(status, "paused")
    if parts is None:
        return f"{NAME}: starting…"
    fps = _num(status.get("fps"))
    parts.append(f"{fps:.1f} fps" if fps is not None else "– fps")
    latency = status.get("latency_ms")
    p50 = _num(latency.get("p50")) if isinstance(latency, dict) else _num(latency)
    if p50 is not None:
        parts.append(f"p50 {p50:.0f} ms")
    dropped = _dropped(status)
    if dropped is not None:
        parts.append(f"{dropped} dropped")
    source, state = _audio(status)
    if source:
        parts.append(f"{source} {state}" if state else source)
    mic = mic_tooltip(status)
    if mic:
        parts.append(mic)
    failing = [f"{k} {v}" for k, v in _outputs(status).items()
               if v and str(v).lower() not in ("ok", "open", "running", "live", "on", *_OUTPUT_CLOSED)]
    parts.extend(failing)
    text = f"{NAME}: " + " · ".join(parts)
    return text if len(text) <= TOOLTIP_MAX else text[: TOOLTIP_MAX - 1] + "…"


def _same_path(a: Any, b: Any) -> bool:
    if not a or not b:
        return False
    try:
        return os.path.normcase(os.path.abspath(str(a))) == os.path.normcase(os.path.abspath(str(b)))
    except (TypeError, ValueError):
        return False


def photo_labels(paths: Sequence[str]) -> list[str]:
    """Menu labels for photo paths: the file name, with its folder where two names clash."""
    names = [Path(p).name or str(p) for p in paths]
    return [f"{n} ({Path(p).parent.name or Path(p).parent})" if names.count(n) > 1 else n
            for n, p in zip(names, paths, strict=True)]
