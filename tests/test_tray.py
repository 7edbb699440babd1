"""The tray: menu structure and actions (no display), and a real pystray loop on Xvfb.

The real runs happen in a child process: pystray's GTK backends bind GTK to the display
they first see, and each run gets a clean process and a hard timeout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
import tempfile
from pathlib import Path

import pytest
from fixtures_x import x_display  # noqa: F401 (fixture)

from vcam.runtime.channels import EMOTIONS
from vcam.runtime.errors import DeviceError
from vcam.app import tray as tray_mod
from vcam.app.commands import (
    CommandInbox,
    Quit,
    SetAudio,
    SetEmotion,
    SetIntensity,
    SetMotionScale,
    SetPaused,
    SetPhoto,
    SetPreview,
)
from vcam.app.desktop import Autostart
from vcam.app.tray import TrayIcon, draw_icon, photo_labels, status_line, tooltip

if importlib.util.find_spec("pystray") is None:  # not importorskip: importing pystray picks a backend
    pytest.skip("pystray is not installed", allow_module_level=True)

REPO = Path(__file__).resolve().parent.parent
PHOTOS = ["/photos/me.jpg", "/photos/old/me.jpg", "/photos/painting.png"]
STATUS = {
    "emotion": "happy", "intensity": 0.75, "paused": False, "photo": "/photos/painting.png",
    "audio": {"source": "mic", "state": "listening"}, "fps": 29.97,
    "latency_ms": {"p50": 41.4, "p95": 57.0}, "dropped": 3,
    "outputs": {"camera": {"state": "open", "dropped": 3}, "preview": {"state": "running"}},
}


class _Status:
    def __init__(self, status: dict) -> None:
        self.value = dict(status)

    def __call__(self) -> dict:
        return self.value


def _tray(status: dict | None = None, photos=PHOTOS, autostart=None) -> tuple[TrayIcon, CommandInbox, _Status]:
    inbox = CommandInbox()
    fn = _Status(STATUS if status is None else status)
    if autostart is None:  # never the real user's login items
        autostart = Autostart(platform="linux", folder=Path(tempfile.mkdtemp(prefix="vcam-autostart-")))
    tray = TrayIcon(inbox, fn, photos_fn=lambda: list(photos), autostart=autostart)
    tray.refresh()
    return tray, inbox, fn


def _items(menu) -> list:
    return [i for i in menu if i is not type(menu).SEPARATOR]


def _find(menu, *path: str):
    """The item at ``path`` of texts, e.g. ``("Emotion", "Sad")``."""
    item = None
    for text in path:
        matches = [i for i in _items(menu if item is None else item.submenu) if i.text == text]
        assert matches, f"no {text!r} in {[i.text for i in _items(menu if item is None else item.submenu)]}"
        item = matches[0]
    return item


def _click(item) -> None:
    item(None)  # pystray calls an item with the icon


# -- what the tray shows --


def test_microphone_items_post_mic_commands():
    from vcam.app.commands import SetAvOffset, SetMic

    tray, inbox, _ = _tray()
    tray._status["mic"] = {"state": "running", "offset_ms": 0.0, "delay_ms": 120.0, "underruns": 0}
    menu = tray.menu()
    assert _find(menu, "Microphone").checked
    assert [i.text for i in _items(_find(menu, "Voice offset").submenu)] == [
        "-40 ms", "-20 ms", "0 ms (measured delay)", "+20 ms", "+40 ms", "+80 ms"]
    assert _find(menu, "Voice offset", "0 ms (measured delay)").checked
    _click(_find(menu, "Microphone"))
    _click(_find(menu, "Voice offset", "+20 ms"))
    assert inbox.drain() == [SetMic(False), SetAvOffset(20.0)]
    tray._status["mic"] = {"state": "off", "offset_ms": 20.0}
    assert not _find(tray.menu(), "Microphone").checked
    _click(_find(tray.menu(), "Microphone"))
    assert inbox.drain() == [SetMic(True)]


def test_menu_structure():
    tray, _, _ = _tray()
    menu = tray.menu()
    top = _items(menu)
    assert [i.text for i in top] == ["vcam: happy 75% · 30 fps", "Emotion", "Intensity", "Head motion", "Portrait", "Audio",
                                     "Pause lip sync", "Preview", "Microphone", "Voice offset", "Start at login",
                                     "Quit"]
    assert not top[0].enabled  # the status line
    assert [i.text for i in _items(_find(menu, "Emotion").submenu)] == [e.capitalize() for e in EMOTIONS]
    assert [i.text for i in _items(_find(menu, "Intensity").submenu)] == ["25%", "50%", "75%", "100%"]
    assert [i.text for i in _items(_find(menu, "Head motion").submenu)] == ["Still", "Calm", "Natural", "Lively"]
    assert [i.text for i in _items(_find(menu, "Portrait").submenu)] == ["me.jpg (photos)", "me.jpg (old)",
                                                                         "painting.png", "Open…"]
    assert [i.text for i in _items(_find(menu, "Audio").submenu)] == ["Mic", "System"]
    for sub in ("Emotion", "Intensity", "Head motion", "Audio"):
        assert all(i.radio for i in _items(_find(menu, sub).submenu))
    assert _find(menu, "Pause lip sync").checked is False and not _find(menu, "Pause lip sync").radio
    assert _find(menu, "Quit").checked is None


def test_checks_follow_the_status():
    tray, _, status = _tray()
    menu = tray.menu()

    def checked(sub: str) -> list[str]:
        return [i.text for i in _items(_find(menu, sub).submenu) if i.checked]

    assert checked("Emotion") == ["Happy"]
    assert checked("Intensity") == ["75%"]
    assert checked("Head motion") == []  # not in the status yet
    assert checked("Portrait") == ["painting.png"]
    assert checked("Audio") == ["Mic"]
    assert _find(menu, "Preview").checked is True

    status.value = {**STATUS, "emotion": "sad", "intensity": 0.3, "motion_scale": 1.4, "paused": True,
                    "photo": "/photos/old/me.jpg",
                    "audio": {"source": "USB Headset", "state": "listening"}, "outputs": {"camera": {"state": "open"}}}
    tray.refresh()
    menu = tray.menu()
    assert checked("Emotion") == ["Sad"]
    assert checked("Intensity") == ["25%"]  # the nearest step
    assert checked("Head motion") == ["Lively"]  # the nearest step
    assert checked("Portrait") == ["me.jpg (old)"]
    assert [i.text for i in _items(_find(menu, "Audio").submenu)] == ["Mic", "System", "USB Headset"]
    assert checked("Audio") == ["USB Headset"]
    assert _find(menu, "Pause lip sync").checked is True
    assert _find(menu, "Preview").checked is False
    assert _find(menu, "vcam: sad 30% · lip sync paused · 30 fps").enabled is False


def test_empty_status_and_no_photos():
    tray, _, _ = _tray({}, photos=[])
    menu = tray.menu()
    assert _items(menu)[0].text == "vcam: starting…"
    assert [i.text for i in _items(_find(menu, "Portrait").submenu)] == ["No recent photos", "Open…"]
    assert not any(i.checked for i in _items(_find(menu, "Emotion").submenu))
    assert tooltip({}) == "vcam: starting…"


def test_failing_status_keeps_the_last_one():
    tray, _, status = _tray()

    def broken() -> dict:
        raise RuntimeError("daemon busy")

    tray._status_fn = broken
    assert tray.refresh()["emotion"] == "happy"


def test_menu_items_post_commands():
    tray, inbox, _ = _tray()
    menu = tray.menu()
    for name in EMOTIONS:
        _click(_find(menu, "Emotion", name.capitalize()))
    _click(_find(menu, "Intensity", "50%"))
    _click(_find(menu, "Head motion", "Still"))
    _click(_find(menu, "Portrait", "me.jpg (old)"))
    _click(_find(menu, "Audio", "System"))
    _click(_find(menu, "Pause lip sync"))
    _click(_find(menu, "Preview"))
    assert inbox.drain() == [*(SetEmotion(n) for n in EMOTIONS), SetIntensity(0.5), SetMotionScale(0.0),
                             SetPhoto("/photos/old/me.jpg"),
                             SetAudio("system"), SetPaused(True), SetPreview(False)]
    _click(_find(menu, "Quit"))
    assert inbox.drain() == [Quit()]


def test_start_at_login_toggles_the_xdg_autostart_entry(tmp_path):
    autostart = Autostart(platform="linux", folder=tmp_path / "autostart")
    tray, inbox, _ = _tray(autostart=autostart)
    assert _find(tray.menu(), "Start at login").checked is False
    _click(_find(tray.menu(), "Start at login"))
    entry = tmp_path / "autostart" / "vcam.desktop"
    assert entry.is_file() and "-m vcam run" in entry.read_text()
    assert _find(tray.menu(), "Start at login").checked is True
    _click(_find(tray.menu(), "Start at login"))
    assert not entry.exists() and _find(tray.menu(), "Start at login").checked is False
    assert inbox.drain() == []  # a setting of the desktop, not a command to the daemon


def test_pause_and_preview_toggle_when_the_state_is_unknown():
    tray, inbox, _ = _tray({"emotion": "neutral"})
    menu = tray.menu()
    _click(_find(menu, "Pause lip sync"))
    _click(_find(menu, "Preview"))
    assert inbox.drain() == [SetPaused(None), SetPreview(None)]


def test_tooltip_and_status_line():
    assert status_line(STATUS) == "vcam: happy 75% · 30 fps"
    assert tooltip(STATUS) == "vcam: happy 75% · 30.0 fps · p50 41 ms · 3 dropped · mic listening"
    failing = {**STATUS, "paused": True, "dropped": None, "outputs": {"camera": {"state": "retrying", "dropped": 2}}}
    assert tooltip(failing) == "vcam: happy 75% · paused · 30.0 fps · p50 41 ms · 2 dropped · mic listening · camera retrying"
    assert tooltip({"emotion": "sad", "fps": None, "latency_ms": {"p50": None}}) == "vcam: sad · – fps"
    long = {**STATUS, "outputs": {f"y4m:/very/long/path/number/{i}.y4m": "failing" for i in range(5)}}
    assert len(tooltip(long)) == 127 and tooltip(long).endswith("…")


def test_photo_labels_and_icon():
    assert photo_labels(["/a/x.jpg", "/b/x.jpg", "/a/y.png"]) == ["x.jpg (a)", "x.jpg (b)", "y.png"]
    for size in (16, 22, 64):
        for paused in (False, True):
            img = draw_icon(size, paused=paused)
            assert img.size == (size, size) and img.mode == "RGBA"
            assert img.getpixel((size // 2, size // 2))[3] == 255  # the face is opaque
            assert img.getpixel((0, 0))[3] == 0  # the corners are clear


def test_open_posts_the_path_a_chooser_prints(monkeypatch):
    tray, inbox, _ = _tray()
    seen = []

    def chooser(start_dir):
        seen.append(start_dir)
        return [sys.executable, "-c", "print('/chosen/photo.png')"]

    monkeypatch.setattr(tray_mod, "_chooser_command", chooser)
    _click(_find(tray.menu(), "Portrait", "Open…"))
    assert inbox.wait(10)
    assert inbox.drain() == [SetPhoto("/chosen/photo.png")]
    assert seen == [None]  # the example paths are not folders here

    monkeypatch.setattr(tray_mod, "_chooser_command", lambda _d: [sys.executable, "-c", "raise SystemExit(1)"])
    _click(_find(tray.menu(), "Portrait", "Open…"))
    assert not inbox.wait(1.0)  # cancelled: nothing posted


def test_chooser_command_prints_one_path():
    argv = tray_mod._chooser_command("/tmp")
    assert argv and (os.path.basename(argv[0]) in ("zenity", "kdialog", "osascript") or "--choose-photo" in argv)


# -- where no tray can be shown --


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="X11/Wayland check")
def test_not_available_without_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert TrayIcon.available() == (False, "no display (DISPLAY is not set)")
    tray, _, _ = _tray()
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="^no system tray: no display"):
        tray.run()
    assert time.monotonic() - t0 < 2


def test_unknown_backend_is_a_device_error(monkeypatch):
    monkeypatch.setenv("DISPLAY", os.environ.get("DISPLAY") or ":0")
    ok, why = TrayIcon.available("nonsense")
    assert not ok and "unknown pystray backend 'nonsense'" in why


def test_stop_before_run_returns_at_once():
    tray, _, _ = _tray()
    tray.stop()
    tray.stop()
    t0 = time.monotonic()
    with tray:
        tray.run()
    tray.close()
    assert time.monotonic() - t0 < 1


# -- a real pystray loop on an X display (child process) --

_CHILD = textwrap.dedent(r"""
    import faulthandler, json, os, signal, sys, threading, time
    faulthandler.dump_traceback_later(20, exit=True)  # a hang: show where, then fail fast
    import vcam.app.tray as T
    from vcam.app.commands import CommandInbox
    T.REFRESH_S = 0.2
    backend, mode = sys.argv[1], sys.argv[2]
    status = {"emotion": "happy", "intensity": 0.5, "fps": 30.0, "paused": False}
    inbox = CommandInbox()
    tray = T.TrayIcon(inbox, lambda: dict(status), photos_fn=lambda: [], backend=backend)
    out = {"available": T.TrayIcon.available(backend)}

    def gtk_menu_items():
        from gi.repository import GLib
        done = threading.Event()
        found = {}
        def walk():
            menu = tray._icon._menu_handle
            for item in menu.get_children():
                label = item.get_label() or ""
                found[label] = item
                sub = item.get_submenu()
                for child in (sub.get_children() if sub else []):
                    found[label + "/" + (child.get_label() or "")] = child
            done.set()
        GLib.idle_add(walk)
        done.wait(5)
        return found

    def on_gtk(fn):
        from gi.repository import GLib
        GLib.idle_add(lambda: fn() and False)

    def driver():
        out["running"] = tray.wait_running(10)
        out["backend"] = tray.backend
        if mode == "stop":
            if backend in ("gtk", "appindicator"):
                items = gtk_menu_items()
                out["labels"] = sorted(items)
                on_gtk(items["Emotion/Sad"].activate)
                on_gtk(items["Pause lip sync"].activate)
                inbox.wait(5); time.sleep(0.2)
                status["emotion"] = "sad"
                time.sleep(0.7)  # a few refreshes
                out["title"] = tray._icon.title
                items = gtk_menu_items()
                out["sad_checked"] = items["Emotion/Sad"].get_active()
            time.sleep(0.3)
            tray.stop()
        elif mode == "quit":
            on_gtk(gtk_menu_items()["Quit"].activate)
        elif mode == "sigint":
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=driver, daemon=True).start()
    t0 = time.monotonic()
    try:
        tray.run()
        out["result"] = "returned"
    except KeyboardInterrupt:
        out["result"] = "KeyboardInterrupt"
    out["run_s"] = time.monotonic() - t0
    out["commands"] = [type(c).__name__ + ":" + repr(getattr(c, "name", getattr(c, "paused", ""))) for c in inbox.drain()]
    time.sleep(0.1)
    out["threads"] = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon)
    tray.close(); tray.stop()
    print("RESULT " + json.dumps(out), flush=True)
""")


def _gtk_ok() -> bool:
    try:
        import gi

        gi.require_version("Gtk", "3.0")
    except (ImportError, ValueError):
        return False
    return True


def _run_child(display: str, backend: str, mode: str) -> dict:
    env = {**os.environ, "DISPLAY": display, "NO_AT_BRIDGE": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)  # no session bus: what CI has
    proc = subprocess.run([sys.executable, "-c", _CHILD, backend, mode], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


needs_gtk = pytest.mark.skipif(not _gtk_ok(), reason="PyGObject with GTK 3 is not installed")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 backends")


@linux_only
@needs_gtk
def test_gtk_menu_posts_commands_and_stop_returns(x_display):  # noqa: F811
    out = _run_child(x_display, "gtk", "stop")
    assert out["available"][0] is True
    assert out["running"] is True and out["backend"] == "gtk"
    assert {"Emotion/Happy", "Intensity/50%", "Portrait/Open…", "Audio/Mic", "Preview", "Quit"} <= set(out["labels"])
    assert out["commands"] == ["SetEmotion:'sad'", "SetPaused:True"]
    assert out["title"].startswith("vcam: sad 50%")  # the timer refreshed the tooltip
    assert out["sad_checked"] is True  # ... and rebuilt the menu
    assert out["result"] == "returned" and out["run_s"] < 8
    assert out["threads"] == []  # pystray's setup thread and ours are gone


@linux_only
@needs_gtk
def test_gtk_quit_posts_quit_and_returns(x_display):  # noqa: F811
    out = _run_child(x_display, "gtk", "quit")
    assert out["result"] == "returned" and out["commands"] == ["Quit:''"] and out["threads"] == []


@linux_only
@needs_gtk
def test_gtk_ctrl_c_stops_and_raises_keyboard_interrupt(x_display):  # noqa: F811
    out = _run_child(x_display, "gtk", "sigint")
    assert out["result"] == "KeyboardInterrupt" and out["threads"] == []


@linux_only
def test_xorg_backend_runs_and_stops(x_display):  # noqa: F811
    out = _run_child(x_display, "xorg", "stop")
    ok, note = out["available"]
    assert ok is True and "no menu" in note
    assert out["running"] is True and out["result"] == "returned" and out["threads"] == []
