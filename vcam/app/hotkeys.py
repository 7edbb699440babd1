"""Global hotkeys of the live daemon: key combinations from ``[hotkeys]`` post commands.

:class:`HotkeyListener` listens on X11 (Linux, the BSDs) with passive key grabs through
python-xlib (:mod:`vcam.app.hotkeys_x11`: pynput needs evdev there, which has no binary
wheel), and on Windows and macOS with ``pynput.keyboard.GlobalHotKeys``; either way on its
own thread, and its callbacks do nothing but :meth:`CommandInbox.post`. Where global hotkeys
cannot work (a Wayland session without X11, no display, an X server that refuses us, pynput
without a backend, macOS without the Accessibility permission) the listener stays off,
logs one warning saying why and what to use instead, and reports it in :attr:`active`
and :attr:`reason`; it never raises for that. Only a bad ``[hotkeys]`` table raises
(``ConfigError``).

pynput and python-xlib are imported in :meth:`HotkeyListener.start`, never at import time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from typing import Any

from vcam.runtime.channels import EMOTIONS
from vcam.runtime.errors import ConfigError
from vcam.app.commands import Command, CommandInbox, SetEmotion, SetPaused

log = logging.getLogger(__name__)

#: ``[hotkeys]`` key -> the command its combination posts.
ACTIONS: dict[str, Command] = {**{name: SetEmotion(name) for name in EMOTIONS}, "pause": SetPaused(None)}

#: A second activation of the same combination this soon after the last one is ignored:
#: a held key auto-repeats, and a repeated pause toggle would flicker.
REPEAT_GUARD_S = 0.3

_READY_TIMEOUT_S = 5.0
_INSTEAD = "use `vcam ctl emotion happy`, `vcam ctl pause` or the tray menu instead"


def bindings(config: Any) -> dict[str, Command]:
    """``{combination: command}`` of a ``HotkeysConfig``, skipping keys set to ``""``.

    Raises ``ConfigError`` when two keys are bound to the same combination (modifier order
    and letter case do not matter), naming both, or when a key has no known action.
    """
    return {combo: ACTIONS[key] for key, combo in _combos(config, {}).items()}


def _combos(config: Any, charmap: dict[str, str]) -> dict[str, str]:
    """``{[hotkeys] key: combination}``, with single-character keys put through ``charmap``;
    ``ConfigError`` on an unknown key or two keys sharing a combination."""
    result: dict[str, str] = {}
    owners: dict[frozenset[str], str] = {}
    for f in dataclasses.fields(config):
        combo = getattr(config, f.name)
        if combo == "":
            continue
        if f.name not in ACTIONS:
            raise ConfigError(f"[hotkeys] {f.name}: expected one of {', '.join(ACTIONS)}, got an unknown action")
        combo = _canonical_combo(combo, charmap)
        parts = frozenset(combo.split("+"))
        if parts in owners:
            raise ConfigError(
                f"[hotkeys] {owners[parts]} and [hotkeys] {f.name} are both bound to "
                f"{getattr(config, f.name)!r}: expected a different combination for each "
                f'(or "" to turn one off)'
            )
        owners[parts] = f.name
        result[f.name] = combo
    return result


def _canonical_combo(combo: str, charmap: dict[str, str]) -> str:
    """Lower-case every part and map a single character to the one on its key's base level."""
    parts = [p.lower() for p in combo.split("+")]
    return "+".join(charmap.get(p, p) if len(p) == 1 else p for p in parts)


class HotkeyListener:
    """Posts the commands of ``config``'s combinations to ``inbox`` while started.

    Use as a context manager, or call :meth:`start` and :meth:`close` (idempotent).
    :attr:`active` tells whether it is listening; :attr:`reason` why not (``None`` while
    listening or before :meth:`start`).
    """

    def __init__(self, config: Any, inbox: CommandInbox) -> None:
        self._config = config
        self._inbox = inbox
        self._bindings = bindings(config)  # a conflict is a ConfigError right away
        self._listener: Any = None
        self._display: str | None = None  # X display the listener records from
        self._reason: str | None = None
        self._closed = False
        self._last: dict[str, float] = {}  # combination -> monotonic time of last activation

    def __enter__(self) -> HotkeyListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def active(self) -> bool:
        """Whether the listener is running (it stops if its X connection is lost)."""
        return self._listener is not None and self._listener.is_alive()

    @property
    def reason(self) -> str | None:
        """Why hotkeys are off, or ``None`` while they are on (or before :meth:`start`)."""
        if self._reason is None and self._listener is not None and not self.active and not self._closed:
            return "the hotkey listener stopped (its display connection was lost?)"
        return self._reason

    def start(self) -> None:
        """Begin listening. Never raises for a platform that cannot listen (see :attr:`reason`);
        raises ``ConfigError`` for a combination that cannot be parsed."""
        if self._closed:
            raise RuntimeError("HotkeyListener.start() after close(): expected a new HotkeyListener")
        if self._listener is not None or self._reason is not None:
            return
        if not self._bindings:
            self._reason = "no hotkeys are bound in [hotkeys]"
            log.info("hotkeys: %s", self._reason)
            return
        charmap: dict[str, str] = {}
        if _is_x11():
            why = _x11_problem()
            if why is None:
                self._display = os.environ["DISPLAY"]
                why = _x_server_problem(self._display)
            if why is not None:
                return self._off(why)
            charmap = _x_base_chars(self._display)
            return self._start_x11(_combos(self._config, charmap))
        try:
            from pynput import keyboard
        except Exception as e:  # ImportError, or an Xlib error while its backend connects
            return self._off(f"pynput could not load its keyboard backend ({_oneline(e)})")

        combos = _combos(self._config, charmap)  # the keymap may merge two combinations
        for key, combo in combos.items():
            try:
                keyboard.HotKey.parse(combo)
            except ValueError:
                raise ConfigError(
                    f"[hotkeys] {key}: expected modifiers in angle brackets (<ctrl>, <alt>, <shift>, <cmd>) "
                    f"and one key, each once, joined by '+', got {getattr(self._config, key)!r}"
                ) from None
        hotkeys = {combo: self._callback(combo, ACTIONS[key]) for key, combo in combos.items()}
        listener = _hotkeys_class(keyboard)(hotkeys, charmap)
        listener.start()
        if not _wait_ready(listener, _READY_TIMEOUT_S):
            self._listener = listener
            self._stop_listener()
            self._listener = None
            return self._off(f"pynput's keyboard listener did not start within {_READY_TIMEOUT_S:g} s")
        if sys.platform == "darwin" and not getattr(listener, "IS_TRUSTED", True):
            self._listener = listener
            self._stop_listener()
            self._listener = None
            return self._off("macOS does not let this process watch the keyboard")
        self._listener = listener  # Windows, macOS (X11, and so XWayland, is _start_x11's)
        log.debug("hotkeys on: %s", ", ".join(f"{c} -> {cmd}" for c, cmd in self._bindings.items()))

    def _start_x11(self, combos: dict[str, str]) -> None:
        from vcam.app.hotkeys_x11 import X11HotKeys, parse

        for key, combo in combos.items():
            try:
                parse(combo)
            except ValueError as e:
                raise ConfigError(
                    f"[hotkeys] {key}: expected modifiers in angle brackets (<ctrl>, <alt>, <shift>, <cmd>) "
                    f"and one key, each once, joined by '+', got {getattr(self._config, key)!r} ({e})"
                ) from None
        listener = X11HotKeys(self._display, {combo: self._callback(combo, ACTIONS[key])
                                              for key, combo in combos.items()})
        listener.start()
        if not _wait_ready(listener, _READY_TIMEOUT_S) or listener.error:
            listener.stop()
            listener.join(1.0)
            return self._off(listener.error or f"the X11 hotkey listener did not start within {_READY_TIMEOUT_S:g} s")
        if listener.failed:
            log.warning("hotkeys: another program holds %s; those combinations are off (%s)",
                        ", ".join(listener.failed), _INSTEAD)
        self._listener = listener
        if os.environ.get("WAYLAND_DISPLAY") or os.environ.get("XDG_SESSION_TYPE") == "wayland":
            log.warning(
                "hotkeys listen through XWayland: they only fire while an X11 window has the focus; "
                "for global hotkeys under Wayland %s (or bind them in your desktop's settings)",
                _INSTEAD,
            )
        log.debug("hotkeys on (X11 key grabs): %s", ", ".join(f"{c} -> {cmd}" for c, cmd in self._bindings.items()))

    def close(self) -> None:
        """Stop listening and wait (briefly) for the listener's thread to end. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._stop_listener()

    # -- internals --

    def _callback(self, combo: str, command: Command):
        """The activation callback for ``combo``: runs on the listener's thread, only posts."""

        def activate() -> None:
            now = time.monotonic()
            last = self._last.get(combo)
            self._last[combo] = now
            if last is not None and now - last < REPEAT_GUARD_S:
                return  # auto-repeat of a held combination
            self._inbox.post(command)

        return activate

    def _off(self, why: str) -> None:
        self._reason = why
        hint = _INSTEAD
        if sys.platform == "darwin":
            hint = (
                "allow the app that runs vcam (your terminal, or Python) in System Settings > Privacy & "
                "Security > Accessibility and Input Monitoring, then restart vcam; meanwhile " + _INSTEAD
            )
        elif sys.platform.startswith("linux") and not _is_x11_session_possible():
            hint = "hotkeys need an X11 session; under Wayland " + _INSTEAD
        log.warning("global hotkeys are off: %s; %s", why, hint)

    def _stop_listener(self) -> None:
        """``listener.stop()``, then join with a timeout."""
        listener = self._listener
        try:
            listener.stop()
        except Exception as e:  # the X connection may already be gone
            log.debug("hotkeys: listener.stop(): %s", e)
        listener.join(2.0)
        if listener.is_alive():
            log.debug("hotkeys: pynput's listener thread did not end; it is a daemon thread and will not block exit")


def _hotkeys_class(keyboard: Any) -> type:
    """A ``GlobalHotKeys`` whose keys are canonical on the keyboard's base level (X11).

    pynput reports the character a key types *with* the held modifiers, so Shift+2 is "@"
    on a US layout and ``<ctrl>+<shift>+2`` never matches; with ``charmap`` (shifted
    character -> base character of the same key) both the combinations and the events
    use the base character.
    """

    class _GlobalHotKeys(keyboard.GlobalHotKeys):
        def __init__(self, hotkeys: dict, charmap: dict[str, str]) -> None:
            self._charmap = charmap
            super().__init__(hotkeys)

        def canonical(self, key: Any) -> Any:
            key = super().canonical(key)
            char = getattr(key, "char", None)
            if char is not None and char in self._charmap:
                return keyboard.KeyCode.from_char(self._charmap[char])
            return key

    return _GlobalHotKeys


def _wait_ready(listener: Any, timeout_s: float) -> bool:
    """Wait until ``listener`` is ready; ``False`` if its thread died first or time ran out.

    ``listener.wait()`` alone would block forever when the backend fails before it is ready.
    """
    ready = threading.Event()
    threading.Thread(target=lambda: (listener.wait(), ready.set()), name="vcam-hotkeys-wait", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not ready.wait(0.02):
        if not listener.is_alive() or time.monotonic() > deadline:
            return ready.is_set()
    return listener.is_alive()


# -- X11 --


def _is_x11() -> bool:
    """Whether hotkeys go through X11 here (Linux and the BSDs)."""
    return sys.platform not in ("darwin", "win32")


def _is_x11_session_possible() -> bool:
    return bool(os.environ.get("DISPLAY"))


def _x11_problem() -> str | None:
    """Why the environment has no X display, or ``None``."""
    if os.environ.get("DISPLAY"):
        return None
    if os.environ.get("WAYLAND_DISPLAY"):
        return "this is a Wayland session without X11 (WAYLAND_DISPLAY is set, DISPLAY is not)"
    return "there is no X display (DISPLAY is not set)"


def _x_server_problem(name: str) -> str | None:
    """Why the X server ``name`` cannot serve global hotkeys, or ``None``."""
    try:
        import Xlib.display
    except ImportError as e:
        return f"python-xlib is missing ({e})"
    try:
        display = Xlib.display.Display(name)
    except Exception as e:  # DisplayNameError, DisplayConnectionError (refused, no auth), OSError
        return f"cannot connect to X display {name!r} ({_oneline(e)}); check DISPLAY and XAUTHORITY"
    display.close()
    return None


def _x_base_chars(name: str) -> dict[str, str]:
    """``{character on a key's shifted level: character on its base level}`` of the X keymap,
    e.g. ``{"@": "2", "!": "1"}`` on a US layout or ``{"1": "&"}`` on a French one.

    Letters are left out (pynput lower-cases them already), and so is any character that
    is also some key's base character, or that two keys shift to different bases.
    """
    import Xlib.display

    try:
        display = Xlib.display.Display(name)
    except Exception:
        return {}
    try:
        first = display.display.info.min_keycode
        mapping = display.get_keyboard_mapping(first, display.display.info.max_keycode - first + 1)
    except Exception:
        return {}
    finally:
        display.close()
    base_chars: set[str] = set()
    pairs: dict[str, set[str]] = {}
    for syms in mapping:
        base = _keysym_char(syms[0]) if syms else None
        if base is None:
            continue
        base_chars.add(base)
        shifted = _keysym_char(syms[1]) if len(syms) > 1 else None
        if shifted is not None and shifted != base and shifted.lower() != base:
            pairs.setdefault(shifted.lower(), set()).add(base)
    return {s: next(iter(b)) for s, b in pairs.items() if len(b) == 1 and s not in base_chars}


def _keysym_char(keysym: int) -> str | None:
    """The printable character of an X keysym (Latin-1 or Unicode keysyms), or ``None``."""
    if 0x20 < keysym < 0x7F or 0xA0 < keysym <= 0xFF:
        return chr(keysym)
    if 0x01000100 <= keysym <= 0x0110FFFF:
        char = chr(keysym - 0x01000000)
        return char if char.isprintable() else None
    return None


def _oneline(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
