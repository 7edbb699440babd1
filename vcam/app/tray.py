"""The system-tray icon of the live webcam: status at a glance, emotion / photo / audio controls.

:class:`TrayIcon` shows an icon with a menu built by `pystray <https://pypi.org/project/pystray/>`_
(LGPL-3.0): a status line, *Emotion*, *Intensity*, *Portrait* (recent photos and *Open…*),
*Audio*, *Pause lip sync*, *Preview*, *Microphone* (the virtual microphone on or off), *Voice
offset* (a trim of its delay), *Start at login* and *Quit*. Choosing an item posts the matching
:mod:`vcam.app.commands` command to the daemon's :class:`~vcam.app.commands.CommandInbox`; the tray never
touches the engine. Check marks and the tooltip come from ``status_fn`` (the daemon's status
dict), read by a timer thread every second; the menu is rebuilt only when what it shows changes.

Backends (pystray's; ``PYSTRAY_BACKEND`` or the ``backend`` argument picks one):

* Linux: ``appindicator`` (StatusNotifierItem over D-Bus; falls back to an XEmbed icon when no
  watcher runs), ``gtk`` (XEmbed ``Gtk.StatusIcon``; X11 only) -- both need PyGObject and GTK 3;
  ``xorg`` (python-xlib only) shows the icon **without a menu**: a click toggles the preview
  (as a left click does on ``win32``; elsewhere either click opens the menu).
  GNOME Shell shows neither kind without the *AppIndicator and KStatusNotifierItem* extension.
* Windows: ``win32``. macOS: ``darwin`` -- must run on the main thread.

*Open…* picks a photo without blocking the tray's loop: a GTK file chooser on the GTK backends,
otherwise a chooser in a child process -- ``zenity`` or ``kdialog`` when installed (Linux),
``osascript`` (macOS), else Tk's file dialog (``python -m vcam.app.tray_chooser --choose-photo``).

Nothing is imported from pystray or PyGObject until a tray is asked for.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vcam.runtime.channels import EMOTIONS
from vcam.runtime.errors import DeviceError
from vcam.app.commands import (
    Command,
    CommandInbox,
    Quit,
    SetAudio,
    SetMotionScale,
    SetAvOffset,
    SetEmotion,
    SetIntensity,
    SetMic,
    SetPaused,
    SetPhoto,
    SetPreview,
)
from vcam.app.tray_backend import GTK_BACKENDS, _icon_class, _load_backend, _oneline, _pystray, _sni_host, _x_tray_host
from vcam.app.tray_chooser import PHOTO_PATTERNS, _chooser_command
from vcam.app.tray_icon import draw_icon
from vcam.app.tray_status import (
    MIC_OFFSETS_MS,
    NAME,
    _audio,
    _num,
    _same_path,
    mic_on,
    photo_labels,
    preview_shown,
    status_line,
    tooltip,
)

log = logging.getLogger(__name__)

INTENSITIES: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
#: The "Head motion" menu: label and ``[motion] scale``.
HEAD_MOTIONS: tuple[tuple[str, float], ...] = (("Still", 0.0), ("Calm", 0.5), ("Natural", 1.0), ("Lively", 1.6))
REFRESH_S = 1.0
MAX_RECENT = 8
CLICK_PREVIEW_BACKENDS = ("xorg", "win32")  # a (left) click on the icon toggles the preview




# -- the tray --


class TrayIcon:
    """The live daemon's tray icon and menu. Producers' side only: it posts commands to ``inbox``.

    ``status_fn`` returns the daemon's status dict (``emotion``, ``intensity``, ``paused``,
    ``photo``, ``audio`` {"source", "state"}, ``fps``, ``latency_ms`` {"p50", "p95"},
    ``dropped``, ``outputs``; missing keys are fine); ``photos_fn`` the recent photo paths,
    newest first. Both are called from the tray's timer thread about once a second, so they
    must be cheap and thread-safe. ``backend`` picks a pystray backend (default:
    ``$PYSTRAY_BACKEND``, else pystray's order for the platform).

    :meth:`run` blocks (on the main thread: macOS requires it, GTK prefers it) until
    :meth:`stop`, :meth:`close` or the menu's *Quit* (which posts :class:`Quit` first).
    Single use: a stopped tray does not run again.
    """

    def __init__(
        self,
        inbox: CommandInbox,
        status_fn: Callable[[], dict],
        *,
        photos_fn: Callable[[], list[str]],
        audio_sources: Sequence[str] = ("mic", "system"),
        backend: str | None = None,
        autostart: Any = None,
    ) -> None:
        from vcam.app.desktop import Autostart

        self.inbox = inbox
        #: "Start at login" (a :class:`vcam.app.desktop.Autostart`; tests pass one on a temporary folder).
        self.autostart = autostart if autostart is not None else Autostart()
        self._status_fn = status_fn
        self._photos_fn = photos_fn
        self.audio_sources = tuple(audio_sources)
        self.backend_request = backend
        self.backend: str | None = None  # the pystray backend in use, once run() loaded one
        self._status: dict = {}
        self._photos: list[str] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._running = threading.Event()
        self._setup_began = threading.Event()
        self._icon_stopped = False
        self._closed = False
        self._icon: Any = None
        self._timer: threading.Thread | None = None
        self._shower: threading.Thread | None = None
        self._menu_key: Any = None
        self._chooser: subprocess.Popen | None = None
        self._dialog: Any = None

    # -- can a tray be shown here? --

    @staticmethod
    def available(backend: str | None = None) -> tuple[bool, str | None]:
        """``(True, None)`` when a tray icon with a menu can be shown; ``(False, why)`` when none can;
        ``(True, warning)`` when one can, with a catch (no menu, no tray host seen). One line each."""
        if sys.platform not in ("win32", "darwin"):
            if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
                return False, "no display (DISPLAY is not set)"
        try:
            name, _ = _load_backend(backend)
        except DeviceError as e:
            return False, str(e)
        if sys.platform in ("win32", "darwin"):
            return True, None
        if name == "xorg":
            note = ("the tray icon has no menu (pystray's xorg backend; a click toggles the preview): "
                    "install PyGObject and GTK 3 for one")
            return True, note if _x_tray_host() is not False else note + "; and no system tray is running"
        hosts = [_sni_host()] if name == "appindicator" else []
        if os.environ.get("DISPLAY"):
            hosts.append(_x_tray_host())
        if hosts and not any(hosts) and None not in hosts:
            return True, ("no system tray is running, so the icon will not show "
                          "(on GNOME, install the AppIndicator extension)")
        return True, None

    # -- the menu --

    def refresh(self) -> dict:
        """Read ``status_fn`` and ``photos_fn`` now (the timer does this every second); the status."""
        try:
            status = self._status_fn()
            status = dict(status) if isinstance(status, dict) else {}
        except Exception as e:  # noqa: BLE001 - a failing status must not take the tray down
            log.debug("tray: status failed: %s", e)
            status = self._status
        try:
            photos = [str(p) for p in (self._photos_fn() or [])][:MAX_RECENT]
        except Exception as e:  # noqa: BLE001
            log.debug("tray: recent photos failed: %s", e)
            photos = self._photos
        self._status, self._photos = status, photos
        return status

    def menu(self):
        """The pystray ``Menu``; items read the last :meth:`refresh` when a backend builds it."""
        pystray = _pystray()
        Item, Menu = pystray.MenuItem, pystray.Menu
        return Menu(
            Item(lambda _item: status_line(self._status), None, enabled=False),
            Menu.SEPARATOR,
            Item("Emotion", Menu(*[
                Item(name.capitalize(), self._poster(SetEmotion(name)), radio=True,
                     checked=functools.partial(self._emotion_is, name))
                for name in EMOTIONS])),
            Item("Intensity", Menu(*[
                Item(f"{round(v * 100)}%", self._poster(SetIntensity(v)), radio=True,
                     checked=functools.partial(self._intensity_is, v))
                for v in INTENSITIES])),
            Item("Head motion", Menu(*[
                Item(label, self._poster(SetMotionScale(v)), radio=True,
                     checked=functools.partial(self._motion_is, v))
                for label, v in HEAD_MOTIONS])),
            Item("Portrait", Menu(self._portrait_items)),
            Item("Audio", Menu(self._audio_items)),
            Menu.SEPARATOR,
            Item("Pause lip sync", self._on_pause, checked=lambda _item: self._status.get("paused") is True),
            Item("Preview", self._on_preview, checked=lambda _item: preview_shown(self._status),
                 default=lambda _item: self.backend in CLICK_PREVIEW_BACKENDS),
            Item("Microphone", self._on_mic, checked=lambda _item: mic_on(self._status)),
            Item("Voice offset", Menu(*[
                Item(f"{ms:+d} ms" if ms else "0 ms (measured delay)", self._poster(SetAvOffset(float(ms))),
                     radio=True, checked=functools.partial(self._offset_is, ms))
                for ms in MIC_OFFSETS_MS])),
            Menu.SEPARATOR,
            Item("Start at login", self._on_autostart, checked=lambda _item: self._autostart_on()),
            Item("Quit", self._on_quit),
        )

    def _autostart_on(self) -> bool:
        try:
            return self.autostart.enabled
        except Exception:  # noqa: BLE001 - an unreadable folder or registry: shown as off
            return False

    def _on_autostart(self) -> None:
        """Toggle "Start at login" (:class:`vcam.app.desktop.Autostart`); a failure is logged."""
        try:
            self.autostart.set(not self._autostart_on())
        except Exception as e:  # noqa: BLE001
            log.warning("tray: %s", e)

    def _emotion_is(self, name: str, _item: Any) -> bool:
        return self._status.get("emotion") == name

    def _offset_is(self, ms: int, _item: Any) -> bool:
        mic = self._status.get("mic")
        current = _num(mic.get("offset_ms")) if isinstance(mic, dict) else None
        return current is not None and abs(current - ms) < 0.5

    def _on_mic(self) -> None:
        self.inbox.post(SetMic(not mic_on(self._status)))

    def _intensity_is(self, value: float, _item: Any) -> bool:
        current = _num(self._status.get("intensity"))
        return current is not None and abs(current - value) < 0.125  # the nearest step

    def _motion_is(self, value: float, _item: Any) -> bool:
        current = _num(self._status.get("motion_scale"))
        if current is None:
            return False
        nearest = min(HEAD_MOTIONS, key=lambda lv: abs(lv[1] - current))[1]
        return nearest == value

    def _portrait_items(self):
        pystray = _pystray()
        Item = pystray.MenuItem
        photos = list(self._photos)
        current = self._status.get("photo")
        items = [Item(label, self._poster(SetPhoto(path)), radio=True,
                      checked=functools.partial(lambda path, _item: _same_path(path, self._status.get("photo")), path))
                 for label, path in zip(photo_labels(photos), photos, strict=True)]
        if current and not any(_same_path(current, p) for p in photos):
            items.insert(0, Item(Path(str(current)).name, None, checked=lambda _item: True, radio=True, enabled=False))
        if not items:
            items.append(Item("No recent photos", None, enabled=False))
        items += [pystray.Menu.SEPARATOR, Item("Open…", self._on_open_photo)]
        return items

    def _audio_items(self):
        Item = _pystray().MenuItem
        current, _state = _audio(self._status)
        sources = list(self.audio_sources)
        if current and current not in sources:
            sources.append(current)
        return [Item(source.capitalize() if source in ("mic", "system") else source,
                     self._poster(SetAudio(source)), radio=True,
                     checked=functools.partial(lambda s, _item: _audio(self._status)[0] == s, source))
                for source in sources]

    def _menu_state(self) -> tuple:
        """Everything the menu shows; it is rebuilt when this changes."""
        s = self._status
        return (status_line(s), s.get("emotion"), _num(s.get("intensity")), _num(s.get("motion_scale")),
                s.get("paused") is True,
                str(s.get("photo")), _audio(s)[0], preview_shown(s), tuple(self._photos), mic_on(s),
                _num((s.get("mic") or {}).get("offset_ms")) if isinstance(s.get("mic"), dict) else None,
                self._autostart_on())

    # -- actions (pystray calls them on its loop's thread) --

    def _poster(self, command: Command) -> Callable[[], None]:
        def post() -> None:
            self.inbox.post(command)

        post.__name__ = f"post_{type(command).__name__}"
        return post

    def _on_pause(self) -> None:
        paused = self._status.get("paused")
        self.inbox.post(SetPaused(not paused if isinstance(paused, bool) else None))

    def _on_preview(self) -> None:
        shown = self._status.get("preview")
        if not isinstance(shown, bool) and not isinstance(self._status.get("outputs"), dict):
            self.inbox.post(SetPreview(None))  # nothing known: toggle
        else:
            self.inbox.post(SetPreview(not preview_shown(self._status)))

    def _on_quit(self) -> None:
        self.inbox.post(Quit())
        self.stop()

    def _on_open_photo(self) -> None:
        start = None
        for candidate in (self._status.get("photo"), *self._photos):
            if candidate and Path(str(candidate)).parent.is_dir():
                start = str(Path(str(candidate)).parent)
                break
        if self.backend in GTK_BACKENDS:
            try:
                self._gtk_choose(start)
                return
            except Exception as e:  # noqa: BLE001 - fall back to a chooser in a child process
                log.warning("tray: GTK file chooser failed (%s); trying another", _oneline(e))
        with self._lock:
            if self._chooser is not None and self._chooser.poll() is None:
                return  # one is open already
        threading.Thread(target=self._run_chooser, args=(_chooser_command(start),),
                         name="vcam-tray-chooser", daemon=True).start()

    def _gtk_choose(self, start_dir: str | None) -> None:
        """A non-modal GTK file chooser, on the GTK loop's thread (where menu actions run)."""
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        if self._dialog is not None:
            self._dialog.present()
            return
        dialog = Gtk.FileChooserDialog(title="vcam: choose a portrait photo", action=Gtk.FileChooserAction.OPEN)
        dialog.add_buttons("_Cancel", Gtk.ResponseType.CANCEL, "_Open", Gtk.ResponseType.ACCEPT)
        dialog.set_default_response(Gtk.ResponseType.ACCEPT)
        images = Gtk.FileFilter()
        images.set_name("Images")
        images.add_mime_type("image/*")
        for pattern in PHOTO_PATTERNS:
            images.add_pattern(pattern)
            images.add_pattern(pattern.upper())
        dialog.add_filter(images)
        if start_dir:
            dialog.set_current_folder(start_dir)

        def on_response(d: Any, response: int) -> None:
            path = d.get_filename() if response == Gtk.ResponseType.ACCEPT else None
            d.destroy()
            self._dialog = None
            if path:
                self.inbox.post(SetPhoto(path))

        dialog.connect("response", on_response)
        self._dialog = dialog
        dialog.show()
        dialog.present()

    def _run_chooser(self, argv: list[str]) -> None:
        """Run a chooser process; post :class:`SetPhoto` for the path it prints (thread body)."""
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        except OSError as e:
            log.warning("tray: cannot open a file chooser (%s): %s", argv[0], e)
            return
        with self._lock:
            self._chooser = proc
        out, err = proc.communicate()
        with self._lock:
            self._chooser = None
        lines = [line.strip() for line in (out or "").splitlines() if line.strip()]
        if proc.returncode == 0 and lines and not self._stop_event.is_set():
            self.inbox.post(SetPhoto(lines[-1]))
        elif proc.returncode not in (0, 1, -15):  # 1: cancelled (zenity, kdialog, osascript, ours)
            log.warning("tray: file chooser failed (exit %s): %s", proc.returncode,
                        _oneline(Exception(err or "")) or "no message")

    # -- running --

    def wait_running(self, timeout_s: float | None = None) -> bool:
        """Block until :meth:`run` shows the icon (``True``) or ``timeout_s`` passes (``False``)."""
        return self._running.wait(timeout_s)

    @property
    def running(self) -> bool:
        return self._running.is_set() and not self._stop_event.is_set()

    def run(self) -> None:
        """Show the icon and handle it until :meth:`stop` / :meth:`close` / *Quit*; ``DeviceError``
        when no tray can be shown. On the main thread, Ctrl+C (SIGINT with Python's default
        handler) stops it and raises ``KeyboardInterrupt`` as usual."""
        if self._stop_event.is_set():
            return
        is_main = threading.current_thread() is threading.main_thread()
        if sys.platform == "darwin" and not is_main:
            raise DeviceError("no system tray: on macOS the tray must run on the main thread")
        ok, why = self.available(self.backend_request)
        if not ok:
            raise DeviceError(why if why and why.startswith("no system tray") else f"no system tray: {why}")
        if why:
            log.warning("tray: %s", why)
        name, base = _load_backend(self.backend_request)
        self.backend = name
        self.refresh()
        try:
            cls = _icon_class(name, base)
            icon = cls(NAME, draw_icon(64, paused=self._status.get("paused") is True), self._title(),
                       menu=self.menu())
        except Exception as e:  # noqa: BLE001
            raise DeviceError(f"no system tray ({name}): {_oneline(e)}") from None
        self._menu_key = self._menu_state()
        with self._lock:
            if self._stop_event.is_set():
                return
            self._icon = icon

        interrupted = []
        previous = None
        if is_main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            def on_sigint(signum: int, frame: Any) -> None:
                interrupted.append(signum)
                self.stop()

            previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            if name == "xorg":
                self._run_detached(icon)
            else:
                icon.run(setup=self._setup)
        except Exception as e:  # noqa: BLE001
            raise DeviceError(f"system tray ({name}) failed: {_oneline(e)}") from None
        finally:
            self._stop_event.set()
            self._running.clear()
            if not self._setup_began.is_set():
                try:
                    icon._mark_ready()  # the loop died before starting: let pystray's setup thread end
                except Exception:  # noqa: BLE001
                    pass
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if self._timer is not None:
                self._timer.join(2 * REFRESH_S)
            self._finish_chooser(on_loop_thread=True)
            with self._lock:
                self._icon = None
        if interrupted:
            raise KeyboardInterrupt

    def _run_detached(self, icon: Any) -> None:
        """pystray's loop on a daemon thread, this one waiting for :meth:`stop`.

        For the xorg backend, whose loop and cross-thread calls (python-xlib) can deadlock
        under load: however it ends, ``run`` returns and no thread is left to block exit.
        """
        errors: list[BaseException] = []

        def loop() -> None:
            try:
                icon.run(setup=self._setup)
            except BaseException as e:  # noqa: BLE001 - handed to run()
                errors.append(e)
            finally:
                self._stop_event.set()

        thread = threading.Thread(target=loop, name="vcam-tray-loop", daemon=True)
        thread.start()
        while not self._stop_event.wait(0.5):
            pass
        if self._shower is not None:
            self._shower.join(2.0)  # one call into pystray's xorg loop at a time: they share a reply queue
        self._stop_icon(icon)
        thread.join(2.0)
        icon._running = False  # else pystray's Icon.__del__ waits for the (gone) loop to stop it, forever
        if errors:
            raise errors[0]

    def _stop_icon(self, icon: Any) -> None:
        """``icon.stop()``, once; on the xorg backend from a daemon thread, as it may never return."""
        with self._lock:
            if self._icon_stopped or not getattr(icon, "_running", True):
                return  # stopped already, or its loop has not started: then _setup stops it
            self._icon_stopped = True

        def stop() -> None:
            try:
                icon.stop()  # a no-op until the loop runs: _setup checks the event then
            except Exception as e:  # noqa: BLE001
                log.debug("tray: stop: %s", e)

        if self.backend == "xorg":
            threading.Thread(target=stop, name="vcam-tray-stop", daemon=True).start()
        else:
            stop()

    def _setup(self, icon: Any) -> None:
        """pystray's setup callback (its own thread, once the loop runs): show, then start the timer."""
        self._setup_began.set()
        if self._stop_event.is_set():
            self._stop_icon(icon)
            return
        if self.backend == "xorg":  # showing waits on the loop's thread: not on pystray's (non-daemon) one
            shower = threading.Thread(target=self._show, args=(icon,), name="vcam-tray-show", daemon=True)
            shower.start()
            self._shower = shower
        else:
            self._show(icon)

    def _show(self, icon: Any) -> None:
        icon.visible = True
        if self.backend == "gtk":
            icon._update_title()  # the tooltip, which pystray sets only on later title changes
        self._running.set()
        timer = threading.Thread(target=self._tick, args=(icon,), name="vcam-tray-status", daemon=True)
        timer.start()
        self._timer = timer
        if self._stop_event.is_set():  # stop() came while the loop was starting
            self._stop_icon(icon)

    def _title(self) -> str:
        text = tooltip(self._status)
        if self.backend == "xorg":  # its window title is Latin-1
            text = text.replace("…", "...").replace("–", "-").encode("latin-1", "replace").decode("latin-1")
        return text

    def _tick(self, icon: Any) -> None:
        paused = self._status.get("paused") is True
        while not self._stop_event.wait(REFRESH_S):
            try:
                self.refresh()
                icon.title = self._title()
                key = self._menu_state()
                if key != self._menu_key:
                    self._menu_key = key
                    icon.update_menu()
                if (self._status.get("paused") is True) != paused:
                    paused = not paused
                    icon.icon = draw_icon(64, paused=paused)
            except Exception as e:  # noqa: BLE001 - keep ticking
                log.debug("tray: refresh failed: %s", e)

    def stop(self) -> None:
        """Make :meth:`run` return (any thread, signal handlers included; idempotent)."""
        self._stop_event.set()
        with self._lock:
            icon = self._icon
        if icon is not None and self.backend != "xorg":  # xorg: run() stops it, waking within 0.5 s
            self._stop_icon(icon)

    def close(self) -> None:
        """Stop and drop any open file chooser. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self._finish_chooser()

    def _finish_chooser(self, on_loop_thread: bool = False) -> None:
        with self._lock:
            proc = self._chooser
        if proc is not None and proc.poll() is None:
            proc.terminate()
        dialog, self._dialog = self._dialog, None
        if dialog is not None:
            try:
                if on_loop_thread:  # the GTK loop has ended: no idle callback would run
                    dialog.destroy()
                else:
                    from gi.repository import GLib

                    GLib.idle_add(dialog.destroy)
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> TrayIcon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
