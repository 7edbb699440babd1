"""Desktop integration: a menu entry for ``vcam run`` and "Start at login", per platform.

* Linux and the BSDs (freedesktop.org): the menu entry is ``vcam.desktop`` in
  ``$XDG_DATA_HOME/applications`` with its icon in ``$XDG_DATA_HOME/icons/hicolor/256x256/apps``;
  start at login is a copy of that entry in ``$XDG_CONFIG_HOME/autostart`` (the XDG Autostart
  spec, honoured by GNOME, KDE, Xfce, Cinnamon, MATE, LXQt).
* macOS: start at login is a LaunchAgent, ``~/Library/LaunchAgents/org.vcam.daemon.plist``
  with ``RunAtLoad``.
* Windows: start at login is the ``vcam`` value under
  ``HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``.

The command started is this installation's ``vcam run`` (the Python running now with
``-m vcam run``), so it works from a venv, pipx or a system install alike. Every function
takes the folders it writes to as arguments (defaulting to the user's), so tests run on
temporary folders; the macOS and Windows paths are tested that way, with a fake registry.
"""

from __future__ import annotations

import os
import plistlib
import sys
from pathlib import Path
from typing import Any

from vcam.runtime.errors import VcamError

APP_ID = "vcam"
LAUNCH_AGENT = "org.vcam.daemon"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


def run_command() -> list[str]:
    """``argv`` that starts the live webcam with this installation."""
    return [sys.executable, "-m", "vcam", "run"]


def desktop_entry(argv: list[str] | None = None, *, autostart: bool = False) -> str:
    """The text of ``vcam.desktop`` (Desktop Entry Specification 1.4, which Debian 12's desktop-file-validate knows)."""
    exec_line = " ".join(_desktop_quote(a) for a in (argv or run_command()))
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        "Name=vcam",
        "GenericName=Talking-portrait webcam",
        "Comment=Animate a portrait photo with your voice and show it as a webcam and a microphone",
        f"Exec={exec_line}",
        f"Icon={APP_ID}",
        "Terminal=false",
        "Categories=AudioVideo;Video;",
        "Keywords=webcam;avatar;portrait;lip sync;virtual camera;",
        "StartupNotify=false",
    ]
    if autostart:
        lines.append("X-GNOME-Autostart-enabled=true")
    return "\n".join(lines) + "\n"


def _desktop_quote(arg: str) -> str:
    """One Exec argument, quoted as the Desktop Entry spec asks when it needs quoting."""
    if arg and not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`'):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    return f'"{escaped}"'


# -- folders --


def applications_dir() -> Path:
    """``$XDG_DATA_HOME/applications`` (platformdirs, as every user folder of vcam)."""
    import platformdirs

    return platformdirs.user_data_path() / "applications"


def icons_dir() -> Path:
    import platformdirs

    return platformdirs.user_data_path() / "icons" / "hicolor" / "256x256" / "apps"


def autostart_dir() -> Path:
    """``$XDG_CONFIG_HOME/autostart`` (the XDG Autostart spec)."""
    import platformdirs

    return platformdirs.user_config_path() / "autostart"


def launch_agents_dir() -> Path:
    return Path.home() / "Library" / "LaunchAgents"


# -- menu entry (freedesktop) --


def install_menu_entry(apps: Path | None = None, icons: Path | None = None) -> list[Path]:
    """Write the menu entry and its icon; return what was written."""
    from vcam.app.tray_icon import draw_icon

    apps, icons = apps or applications_dir(), icons or icons_dir()
    apps.mkdir(parents=True, exist_ok=True)
    icons.mkdir(parents=True, exist_ok=True)
    icon = icons / f"{APP_ID}.png"
    draw_icon(256).save(icon)
    entry = apps / f"{APP_ID}.desktop"
    _write_atomic(entry, desktop_entry())
    return [entry, icon]


def remove_menu_entry(apps: Path | None = None, icons: Path | None = None) -> list[Path]:
    """Remove the menu entry and icon; return what was removed (nothing when absent)."""
    removed = []
    for path in ((apps or applications_dir()) / f"{APP_ID}.desktop", (icons or icons_dir()) / f"{APP_ID}.png"):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


# -- start at login --


class Autostart:
    """"Start at login" for this user: :attr:`enabled`, :meth:`enable`, :meth:`disable`.

    ``platform`` defaults to ``sys.platform``; ``folder`` is the autostart folder (Linux) or
    the LaunchAgents folder (macOS); ``registry`` stands in for ``winreg`` (Windows).
    """

    def __init__(self, platform: str | None = None, folder: Path | None = None, registry: Any = None) -> None:
        self.platform = platform or sys.platform
        if self.platform == "darwin":
            self.folder = folder or launch_agents_dir()
        elif self.platform != "win32":
            self.folder = folder or autostart_dir()
        else:
            self.folder = None
        self._registry = registry

    @property
    def where(self) -> str:
        """Where the setting lives, for messages."""
        if self.platform == "win32":
            return f"HKEY_CURRENT_USER\\{RUN_KEY}\\{APP_ID}"
        return str(self._file())

    def _file(self) -> Path:
        name = f"{LAUNCH_AGENT}.plist" if self.platform == "darwin" else f"{APP_ID}.desktop"
        return self.folder / name

    def _winreg(self):
        if self._registry is None:
            import winreg

            self._registry = winreg
        return self._registry

    @property
    def enabled(self) -> bool:
        if self.platform == "win32":
            reg = self._winreg()
            try:
                with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY) as key:
                    reg.QueryValueEx(key, APP_ID)
                return True
            except OSError:
                return False
        return self._file().is_file()

    def enable(self, argv: list[str] | None = None) -> None:
        argv = argv or run_command()
        try:
            if self.platform == "win32":
                reg = self._winreg()
                with reg.CreateKey(reg.HKEY_CURRENT_USER, RUN_KEY) as key:
                    reg.SetValueEx(key, APP_ID, 0, reg.REG_SZ, _windows_command_line(argv))
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.platform == "darwin":
                plist = {"Label": LAUNCH_AGENT, "ProgramArguments": argv, "RunAtLoad": True,
                         "ProcessType": "Interactive", "KeepAlive": False}
                _write_atomic(self._file(), plistlib.dumps(plist).decode("utf-8"))
            else:
                _write_atomic(self._file(), desktop_entry(argv, autostart=True))
        except OSError as e:
            raise VcamError(f"cannot turn on start at login at {self.where}: {e.strerror or e}") from None

    def disable(self) -> None:
        try:
            if self.platform == "win32":
                reg = self._winreg()
                try:
                    with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE) as key:
                        reg.DeleteValue(key, APP_ID)
                except FileNotFoundError:
                    pass
                return
            self._file().unlink(missing_ok=True)
        except OSError as e:
            raise VcamError(f"cannot turn off start at login at {self.where}: {e.strerror or e}") from None

    def set(self, on: bool) -> None:
        if on:
            self.enable()
        else:
            self.disable()


def _windows_command_line(argv: list[str]) -> str:
    """``argv`` as one Windows command line (each argument in quotes when it has a space)."""
    return " ".join(f'"{a}"' if (" " in a or not a) else a for a in argv)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


