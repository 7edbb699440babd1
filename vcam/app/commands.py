"""Commands that tray, hotkeys and ``vcam ctl`` post to the running daemon.

Producers (any thread) call :meth:`CommandInbox.post`; the daemon drains the inbox between
frames and applies each command in order. Commands are small frozen dataclasses, and each
has a JSON form (:func:`to_json` / :func:`from_json`) for the control channel.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

from vcam.runtime.channels import EMOTIONS
from vcam.runtime.errors import InputError


@dataclass(frozen=True)
class SetEmotion:
    """Cross-fade to ``name`` (one of ``vcam.runtime.channels.EMOTIONS``); ``intensity`` 0..1 or
    ``None`` to keep the current one."""

    name: str
    intensity: float | None = None


@dataclass(frozen=True)
class SetIntensity:
    """Strength of the current emotion, 0..1."""

    intensity: float


@dataclass(frozen=True)
class SetMotionScale:
    """How much the head moves: 0 (still) .. 2 (lively), 1 a speaker's range."""

    scale: float


@dataclass(frozen=True)
class SetPaused:
    """Pause (``True``) or resume (``False``) lip motion; ``None`` toggles."""

    paused: bool | None = None


@dataclass(frozen=True)
class SetPhoto:
    """Enroll the photo at ``path`` and swap it in without stopping the camera."""

    path: str


@dataclass(frozen=True)
class SetAudio:
    """Switch the speech source: ``mic``, ``system`` or a device name."""

    source: str


@dataclass(frozen=True)
class SetPreview:
    """Show (``True``) or hide (``False``) the preview window; ``None`` toggles."""

    shown: bool | None = None


@dataclass(frozen=True)
class SetMic:
    """Publish (``True``) or remove (``False``) the virtual microphone; ``None`` toggles."""

    on: bool | None = None


@dataclass(frozen=True)
class SetAvOffset:
    """Trim the microphone's delay: ``ms`` -500..500, positive plays the voice later."""

    ms: float


@dataclass(frozen=True)
class Quit:
    """Stop the daemon: release the camera and audio device, then exit."""


Command = SetEmotion | SetIntensity | SetMotionScale | SetPaused | SetPhoto | SetAudio | SetPreview | SetMic | SetAvOffset | Quit

_KINDS: dict[str, type] = {
    "emotion": SetEmotion,
    "intensity": SetIntensity,
    "motion_scale": SetMotionScale,
    "pause": SetPaused,
    "photo": SetPhoto,
    "audio": SetAudio,
    "preview": SetPreview,
    "mic": SetMic,
    "av_offset": SetAvOffset,
    "quit": Quit,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}


def to_json(command: Command) -> dict[str, Any]:
    """``{"command": kind, **fields}``, e.g. ``{"command": "emotion", "name": "happy", "intensity": null}``."""
    return {"command": _NAMES[type(command)], **dataclasses.asdict(command)}


def from_json(data: Any) -> Command:
    """The command a :func:`to_json` dict describes; ``InputError`` saying what is wrong otherwise."""
    if not isinstance(data, dict) or not isinstance(data.get("command"), str):
        raise InputError(f"a command must be an object with a \"command\" name, got {data!r}")
    kind = data["command"]
    cls = _KINDS.get(kind)
    if cls is None:
        raise InputError(f"unknown command {kind!r} (known: {', '.join(_KINDS)})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    args = {k: v for k, v in data.items() if k != "command"}
    unknown = [k for k in args if k not in fields]
    if unknown:
        raise InputError(f"command {kind!r} takes no {', '.join(unknown)} (it takes: {', '.join(fields) or 'nothing'})")
    try:
        command = cls(**args)
    except TypeError as e:
        raise InputError(f"command {kind!r}: {e}") from None
    validate(command)
    return command


def validate(command: Command) -> None:
    """Raise ``InputError`` when a field is out of range (unknown emotion, intensity > 1, ...)."""
    if isinstance(command, SetEmotion):
        if command.name not in EMOTIONS:
            raise InputError(f"unknown emotion {command.name!r} (known: {', '.join(EMOTIONS)})")
        _check_unit(command.intensity, allow_none=True)
    elif isinstance(command, SetIntensity):
        _check_unit(command.intensity, allow_none=False)
    elif isinstance(command, SetMotionScale):
        v = command.scale
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 2.0:
            raise InputError(f"the motion scale must be a number 0..2, got {v!r}")
    elif isinstance(command, SetAvOffset):
        v = command.ms
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -500.0 <= v <= 500.0:
            raise InputError(f"the microphone offset must be a number of ms -500..500, got {v!r}")
    elif isinstance(command, (SetPaused, SetPreview, SetMic)):
        value = {SetPaused: "paused", SetPreview: "shown", SetMic: "on"}[type(command)]
        value = getattr(command, value)
        if value is not None and not isinstance(value, bool):
            raise InputError(f"expected true, false or null, got {value!r}")
    elif isinstance(command, (SetPhoto, SetAudio)):
        value = command.path if isinstance(command, SetPhoto) else command.source
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"expected a non-empty string, got {value!r}")


def _check_unit(value: Any, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InputError(f"intensity must be a number 0..1, got {value!r}")


class CommandInbox:
    """A thread-safe, bounded mailbox of commands, drained by the daemon between frames.

    Holds at most ``capacity`` commands; when full the oldest is dropped and counted in
    :attr:`dropped` (a person cannot press keys faster than frames are drawn, so this only
    guards against a runaway client). :meth:`wait` lets an idle consumer sleep until one comes.
    """

    def __init__(self, capacity: int = 32) -> None:
        self._items: collections.deque[Command] = collections.deque(maxlen=capacity)
        self._cond = threading.Condition()
        self.dropped = 0

    def post(self, command: Command) -> None:
        """Queue ``command`` (any thread)."""
        with self._cond:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1
            self._items.append(command)
            self._cond.notify_all()

    def drain(self) -> list[Command]:
        """All queued commands, oldest first; the inbox is empty afterwards."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items

    def wait(self, timeout_s: float) -> bool:
        """Block until a command is queued or ``timeout_s`` passes; ``True`` if one is queued."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout_s)
            return bool(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
