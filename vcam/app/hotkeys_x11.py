"""Global hotkeys on X11 with python-xlib alone: one passive key grab per combination.

Why not pynput here: on Linux pynput requires ``evdev``, which has no binary wheel, so a
machine without a compiler and kernel headers could not install vcam. python-xlib is pure
Python. A passive grab (``XGrabKey`` on the root window) is how desktop environments bind
global shortcuts: the X server sends the combination to us wherever the focus is, and to
no one else, and nothing else of the keyboard reaches this process.

Combinations use pynput's notation, which ``[hotkeys]`` documents: modifiers in angle
brackets (``<ctrl>``, ``<alt>``, ``<shift>``, ``<cmd>``) and one key, a character (on its
key's base level: ``3``, not ``#``) or a name in angle brackets (``<f5>``, ``<space>``),
joined by ``+``. Caps Lock and Num Lock do not matter.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Named keys: pynput's name -> X keysym name.
NAMED_KEYS = {
    **{f"f{i}": f"F{i}" for i in range(1, 21)},
    "space": "space", "tab": "Tab", "enter": "Return", "esc": "Escape", "backspace": "BackSpace",
    "delete": "Delete", "insert": "Insert", "home": "Home", "end": "End", "page_up": "Prior",
    "page_down": "Next", "up": "Up", "down": "Down", "left": "Left", "right": "Right",
    "pause": "Pause", "print_screen": "Print", "scroll_lock": "Scroll_Lock", "menu": "Menu",
}
#: Modifier names -> X modifier mask bit (Control, Shift, Mod1 = Alt, Mod4 = Super).
MODIFIERS = {"ctrl": 1 << 2, "shift": 1 << 0, "alt": 1 << 3, "cmd": 1 << 6, "super": 1 << 6}
#: Lock and Num Lock: grabbed in every state, ignored when matching.
_LOCKS = (0, 1 << 1, 1 << 4, (1 << 1) | (1 << 4))
_MATCH_MASK = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 6)


def parse(combo: str) -> tuple[int, str]:
    """``(modifier mask, X keysym name or character)`` of a combination; ``ValueError`` saying
    what is wrong for anything else (no key, two keys, an unknown name, a repeated part)."""
    mask, key = 0, None
    parts = combo.split("+")
    if len(set(parts)) != len(parts):
        raise ValueError(f"{combo!r}: a part is repeated")
    for part in parts:
        name = part.lower()
        if name.startswith("<") and name.endswith(">") and len(name) > 2:
            inner = name[1:-1]
            if inner in MODIFIERS:
                mask |= MODIFIERS[inner]
                continue
            if inner not in NAMED_KEYS:
                raise ValueError(f"{combo!r}: unknown key <{inner}>")
            this = NAMED_KEYS[inner]
        elif len(part) == 1:
            this = name
        else:
            raise ValueError(f"{combo!r}: {part!r} is neither a modifier in <> nor one character")
        if key is not None:
            raise ValueError(f"{combo!r}: two keys ({key!r} and {this!r}); expected one")
        key = this
    if key is None:
        raise ValueError(f"{combo!r}: no key besides the modifiers")
    return mask, key


def _keysym(key: str) -> int:
    """The X keysym of a parsed key: a keysym name, or one character (Latin-1 or Unicode keysym)."""
    from Xlib import XK

    if len(key) == 1:
        code = ord(key)
        return code if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF else 0x01000000 + code
    return XK.string_to_keysym(key)


class X11HotKeys(threading.Thread):
    """Calls ``hotkeys[combo]()`` on this thread each time ``combo`` is pressed, anywhere on
    X display ``display_name``. ``ValueError`` at construction for a combination it cannot read.

    The thread API of pynput's listeners: :meth:`start`, :meth:`wait` (until grabbing is
    done), :meth:`stop`, ``join``, ``is_alive``. :attr:`failed` lists the combinations the
    X server would not let us grab (another program holds them), once :meth:`wait` returns.
    """

    def __init__(self, display_name: str, hotkeys: dict[str, Callable[[], None]]) -> None:
        super().__init__(name="vcam-hotkeys-x11", daemon=True)
        self._display_name = display_name
        self._parsed = {combo: parse(combo) for combo in hotkeys}
        self._hotkeys = hotkeys
        self._ready = threading.Event()
        self._stop_requested = threading.Event()
        self.failed: list[str] = []
        self.error: str | None = None

    def wait(self) -> None:
        """Block until the grabs are in place (or the thread failed)."""
        self._ready.wait()

    def stop(self) -> None:
        """Ask the thread to ungrab and end (within 0.1 s); idempotent."""
        self._stop_requested.set()

    def run(self) -> None:
        try:
            import Xlib.display
            from Xlib import X

            display = Xlib.display.Display(self._display_name)
        except Exception as e:  # noqa: BLE001 - reported through .error
            self.error = f"cannot open X display {self._display_name!r}: {e}"
            self._ready.set()
            return
        try:
            self._serve(display, X)
        except Exception as e:  # noqa: BLE001 - the connection died: the listener is just off
            self.error = f"X connection lost: {e}"
            log.debug("hotkeys: %s", self.error)
        finally:
            self._ready.set()
            try:
                display.close()
            except Exception:  # noqa: BLE001
                pass

    def _serve(self, display: Any, X: Any) -> None:
        root = display.screen().root
        errors: list[Any] = []
        display.set_error_handler(lambda err, *_: errors.append(err))
        table: dict[tuple[int, int], str] = {}  # (keycode, modifier mask) -> combination
        grabbed: list[tuple[int, int]] = []
        for combo, (mask, key) in self._parsed.items():
            keycode = display.keysym_to_keycode(_keysym(key))
            if not keycode:
                self.failed.append(combo)
                continue
            before = len(errors)
            for lock in _LOCKS:
                root.grab_key(keycode, mask | lock, False, X.GrabModeAsync, X.GrabModeAsync)
                grabbed.append((keycode, mask | lock))
            display.sync()
            if len(errors) > before:
                self.failed.append(combo)
                continue
            table[(keycode, mask)] = combo
        self._ready.set()
        try:
            fd = display.fileno()
            while not self._stop_requested.is_set():
                if not display.pending_events():
                    select.select([fd], [], [], 0.1)
                    if not display.pending_events():
                        continue
                event = display.next_event()
                if event.type != X.KeyPress:
                    continue
                combo = table.get((event.detail, event.state & _MATCH_MASK))
                if combo is not None:
                    try:
                        self._hotkeys[combo]()
                    except Exception:  # noqa: BLE001 - a callback's bug must not end the listener
                        log.exception("hotkeys: the action of %s failed", combo)
        finally:
            for keycode, mask in grabbed:
                root.ungrab_key(keycode, mask)
            display.sync()
