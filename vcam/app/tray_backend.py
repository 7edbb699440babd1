"""pystray's backends, loaded lazily and chosen by vcam: which one loads here, vcam's changes
to the GTK ones, and whether a tray host (XEmbed or StatusNotifierItem) is running."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from vcam.runtime.errors import DeviceError

GTK_BACKENDS = ("appindicator", "gtk")

# -- pystray, loaded lazily --

_IMPORT_LOCK = threading.Lock()


def _pystray():
    """The ``pystray`` package (for ``Menu`` / ``MenuItem``), imported without its own backend pick.

    ``import pystray`` chooses a backend at import time and fails outright where that one
    cannot load (no display, no typelib); importing it with the always-importable ``dummy``
    backend and loading the real one with :func:`_load_backend` keeps that choice ours.
    """
    with _IMPORT_LOCK:
        if "pystray" in sys.modules:
            return sys.modules["pystray"]
        saved = os.environ.get("PYSTRAY_BACKEND")
        os.environ["PYSTRAY_BACKEND"] = "dummy"
        try:
            import pystray
        except ImportError as e:
            raise DeviceError(f"no system tray: pystray is not installed ({e}); pip install pystray") from None
        finally:
            if saved is None:
                os.environ.pop("PYSTRAY_BACKEND", None)
            else:
                os.environ["PYSTRAY_BACKEND"] = saved
        return pystray


def _candidates(backend: str | None) -> list[str]:
    if backend:
        return [backend]
    chosen = os.environ.get("PYSTRAY_BACKEND")
    if chosen:
        return [chosen]
    if sys.platform == "darwin":
        return ["darwin"]
    if sys.platform == "win32":
        return ["win32"]
    if not _session_bus_likely():  # no StatusNotifierItem without D-Bus: spare appindicator's warnings
        return ["gtk", "appindicator", "xorg"]
    return ["appindicator", "gtk", "xorg"]


def _session_bus_likely() -> bool:
    """Whether a D-Bus session bus is advertised (``$DBUS_SESSION_BUS_ADDRESS`` or ``$XDG_RUNTIME_DIR/bus``)."""
    if os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return True
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    return bool(runtime_dir) and os.path.exists(os.path.join(runtime_dir, "bus"))


def _load_backend(backend: str | None = None) -> tuple[str, type]:
    """``(name, pystray Icon class)`` of the first backend that loads; ``DeviceError`` if none does."""
    import importlib

    _pystray()
    errors = []
    for name in _candidates(backend):
        if name not in ("appindicator", "gtk", "xorg", "win32", "darwin"):
            raise DeviceError(f"no system tray: unknown pystray backend {name!r} "
                              "(known: appindicator, gtk, xorg, win32, darwin)")
        try:
            module = importlib.import_module(f"pystray._{name}")
        except Exception as e:  # noqa: BLE001 - ImportError, gi's ValueError, Xlib's DisplayNameError...
            errors.append(f"{name}: {_oneline(e)}")
            continue
        return name, module.Icon
    raise DeviceError("no system tray: " + "; ".join(errors))


def _oneline(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:199] + "…"


class _NullNotifier:
    """Stands in for pystray's D-Bus notifier: vcam shows no notifications, and pystray's fails
    ``stop`` where no notification service runs and ``run`` where no session bus does."""

    def notify(self, *args: Any) -> None:
        pass

    def hide(self) -> None:
        pass


def _icon_class(backend: str, base: type) -> type:
    """``base`` with vcam's changes for the GTK backends: the menu on a left click too, a tooltip,
    no D-Bus notifier, and SIGINT left alone (pystray sets it to kill the process outright)."""
    if backend not in GTK_BACKENDS:
        return base
    from gi.repository import GLib, Gtk

    class _Icon(base):
        def _initialize(self) -> None:
            self._notifier = _NullNotifier()
            self._mark_ready()

        def _on_status_icon_activate(self, status_icon: Any) -> None:
            # gtk backend, left click: the menu, as on appindicator (pystray: the default item)
            self._on_status_icon_popup_menu(status_icon, 1, Gtk.get_current_event_time())

        def _update_title(self) -> None:
            super()._update_title()
            status_icon = getattr(self, "_status_icon", None)  # the gtk backend's Gtk.StatusIcon
            if status_icon is not None:
                GLib.idle_add(status_icon.set_tooltip_text, self.title)

    return _Icon


# -- a tray host? --


def _x_tray_host() -> bool | None:
    """Whether an XEmbed system tray owns ``_NET_SYSTEM_TRAY_S<screen>``; ``None``: cannot tell."""
    try:
        import Xlib.display

        display = Xlib.display.Display()
        try:
            atom = display.intern_atom(f"_NET_SYSTEM_TRAY_S{display.get_default_screen()}")
            return display.get_selection_owner(atom) != 0
        finally:
            display.close()
    except Exception:  # noqa: BLE001
        return None


def _sni_host() -> bool | None:
    """Whether a StatusNotifierWatcher runs on the D-Bus session bus; ``None``: cannot tell."""
    try:
        from gi.repository import Gio, GLib

        bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
        reply = bus.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                              "NameHasOwner", GLib.Variant("(s)", ("org.kde.StatusNotifierWatcher",)),
                              GLib.VariantType("(b)"), Gio.DBusCallFlags.NONE, 500, None)
        return bool(reply.unpack()[0])
    except Exception:  # noqa: BLE001
        return None
