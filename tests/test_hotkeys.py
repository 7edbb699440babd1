"""Global hotkeys: the real X11 listener (python-xlib key grabs) on an X display (Xvfb), keys typed
with xdotool."""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time

import pytest
from fixtures_x import x_display, x_env, xdotool  # noqa: F401 (fixtures)

from vcam.runtime.errors import ConfigError
from vcam.app.commands import CommandInbox, SetEmotion, SetPaused
from vcam.app.hotkeys import HotkeyListener, bindings
from vcam.app.settings import HotkeysConfig

DEFAULTS = HotkeysConfig(
    neutral="<ctrl>+<alt>+1",
    happy="<ctrl>+<alt>+2",
    sad="<ctrl>+<alt>+3",
    angry="<ctrl>+<alt>+4",
    surprised="<ctrl>+<alt>+5",
    pause="<ctrl>+<alt>+0",
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the X11 listener is Linux's")


def _next(inbox: CommandInbox, timeout_s: float = 2.0) -> list:
    """The commands posted within ``timeout_s`` (waits for the first one only)."""
    inbox.wait(timeout_s)
    time.sleep(0.05)  # a command posted right behind the first
    return inbox.drain()


def _listener_threads() -> list[threading.Thread]:
    from vcam.app.hotkeys_x11 import X11HotKeys

    return [t for t in threading.enumerate() if isinstance(t, X11HotKeys) and t.is_alive()]


# -- bindings: no display needed --


def test_bindings_map_each_key_to_its_command():
    assert bindings(DEFAULTS) == {
        "<ctrl>+<alt>+1": SetEmotion("neutral"),
        "<ctrl>+<alt>+2": SetEmotion("happy"),
        "<ctrl>+<alt>+3": SetEmotion("sad"),
        "<ctrl>+<alt>+4": SetEmotion("angry"),
        "<ctrl>+<alt>+5": SetEmotion("surprised"),
        "<ctrl>+<alt>+0": SetPaused(None),
    }


def test_bindings_skip_keys_turned_off():
    config = dataclasses.replace(DEFAULTS, sad="", pause="")
    assert set(bindings(config).values()) == {SetEmotion(n) for n in ("neutral", "happy", "angry", "surprised")}


def test_two_actions_on_one_combination_is_a_config_error():
    config = dataclasses.replace(DEFAULTS, pause="<alt>+<CTRL>+2")  # order and case do not matter
    with pytest.raises(ConfigError, match=r"\[hotkeys\] happy and \[hotkeys\] pause are both bound"):
        bindings(config)
    with pytest.raises(ConfigError, match="happy and .* pause"):
        HotkeyListener(config, CommandInbox())


# -- where hotkeys cannot work: off, one warning, no exception --


@linux_only
@pytest.mark.parametrize(
    ("env", "expect"),
    [({}, "DISPLAY is not set"), ({"WAYLAND_DISPLAY": "wayland-0"}, "Wayland session without X11")],
)
def test_no_display_leaves_hotkeys_off(monkeypatch, caplog, env, expect):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with caplog.at_level(logging.WARNING, logger="vcam.app.hotkeys"), HotkeyListener(DEFAULTS, CommandInbox()) as hk:
        assert hk.active is False
        assert expect in hk.reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "X11 session" in warnings[0].getMessage() and "vcam ctl" in warnings[0].getMessage()


@linux_only
def test_x_server_refusing_leaves_hotkeys_off(monkeypatch, caplog):
    monkeypatch.setenv("DISPLAY", ":4093")  # no server there
    with caplog.at_level(logging.WARNING, logger="vcam.app.hotkeys"), HotkeyListener(DEFAULTS, CommandInbox()) as hk:
        assert not hk.active
        assert "cannot connect to X display ':4093'" in hk.reason
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_x11_without_python_xlib_leaves_hotkeys_off(x_env, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "Xlib.display", None)  # import fails like a missing package
    with caplog.at_level(logging.WARNING, logger="vcam.app.hotkeys"), HotkeyListener(DEFAULTS, CommandInbox()) as hk:
        assert not hk.active
        assert "python-xlib is missing" in hk.reason
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


# -- real keys on a real (virtual) X server --


def test_ctrl_alt_2_sets_happy_and_ctrl_alt_0_toggles_pause(x_env):
    inbox = CommandInbox()
    with HotkeyListener(DEFAULTS, inbox) as hk:
        assert hk.active and hk.reason is None
        xdotool(x_env, "key", "ctrl+alt+2")
        assert _next(inbox) == [SetEmotion("happy")]
        xdotool(x_env, "key", "ctrl+alt+0")
        assert _next(inbox) == [SetPaused(None)]
        xdotool(x_env, "key", "2", "ctrl+2", "alt+2")  # not the combination
        xdotool(x_env, "key", "ctrl+alt+5")
        assert _next(inbox) == [SetEmotion("surprised")]


def test_rebinding_from_config(x_env):
    config = dataclasses.replace(DEFAULTS, happy="<ctrl>+<shift>+h", sad="<ctrl>+<shift>+3")
    inbox = CommandInbox()
    with HotkeyListener(config, inbox):
        xdotool(x_env, "key", "ctrl+alt+2")  # the old key of happy: nothing
        xdotool(x_env, "key", "ctrl+shift+h")
        assert _next(inbox) == [SetEmotion("happy")]
        # Shift+3 types "#" on a US layout; the combination still names the key "3"
        xdotool(x_env, "key", "ctrl+shift+3")
        assert _next(inbox) == [SetEmotion("sad")]


def test_a_held_combination_posts_once(x_env):
    inbox = CommandInbox()
    with HotkeyListener(DEFAULTS, inbox):
        # a held key auto-repeats as release/press pairs; type them quickly by hand
        xdotool(x_env, "keydown", "ctrl+alt+0")
        xdotool(x_env, "keyup", "0", "keydown", "0", "keyup", "0", "keydown", "0")
        xdotool(x_env, "keyup", "ctrl+alt+0")
        assert _next(inbox) == [SetPaused(None)]


def test_close_stops_the_listener_thread_and_is_idempotent(x_env):
    inbox = CommandInbox()
    hk = HotkeyListener(DEFAULTS, inbox)
    hk.start()
    assert hk.active and len(_listener_threads()) == 1
    xdotool(x_env, "key", "ctrl+alt+1")
    assert _next(inbox) == [SetEmotion("neutral")]
    t0 = time.monotonic()
    hk.close()
    assert time.monotonic() - t0 < 1.0
    assert not hk.active and _listener_threads() == []
    hk.close()
    xdotool(x_env, "key", "ctrl+alt+2")
    assert _next(inbox, 0.3) == []


def test_an_unknown_key_name_is_a_config_error(x_env):
    config = dataclasses.replace(DEFAULTS, angry="<ctrl>+<hyperdrive>+4")
    with pytest.raises(ConfigError, match=r"\[hotkeys\] angry: expected .* got '<ctrl>\+<hyperdrive>\+4'"):
        HotkeyListener(config, CommandInbox()).start()
    assert _listener_threads() == []
