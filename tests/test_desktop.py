"""Setting vcam up on a computer: `vcam config`, shell completion, the menu entry and start at
login on each platform (macOS and Windows on temporary folders and a fake registry)."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys

import pytest

from vcam.app import cli_setup, desktop
from vcam.app.cli import build_parser, main
from vcam.app.desktop import RUN_KEY, Autostart


def test_desktop_entry_starts_this_installation():
    text = desktop.desktop_entry(["/opt/my venv/bin/python", "-m", "vcam", "run"])
    assert text.startswith("[Desktop Entry]\nType=Application\n")
    assert 'Exec="/opt/my venv/bin/python" -m vcam run\n' in text
    assert "Icon=vcam\n" in text and "Categories=AudioVideo;Video;\n" in text
    assert desktop.run_command() == [sys.executable, "-m", "vcam", "run"]


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_desktop_entry_passes_desktop_file_validate(tmp_path):
    apps, icons = tmp_path / "applications", tmp_path / "icons"
    written = desktop.install_menu_entry(apps, icons)
    assert [p.name for p in written] == ["vcam.desktop", "vcam.png"]
    done = subprocess.run(["desktop-file-validate", str(written[0])], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert desktop.remove_menu_entry(apps, icons) == written
    assert desktop.remove_menu_entry(apps, icons) == []


def test_menu_entry_and_icon_are_written_and_removed(tmp_path):
    apps, icons = tmp_path / "applications", tmp_path / "icons"
    entry, icon = desktop.install_menu_entry(apps, icons)
    assert entry.read_text().count("Exec=") == 1
    from PIL import Image

    with Image.open(icon) as im:
        assert im.size == (256, 256) and im.mode == "RGBA"
    assert desktop.remove_menu_entry(apps, icons) == [entry, icon]


def test_xdg_autostart_on_and_off(tmp_path):
    auto = Autostart(platform="linux", folder=tmp_path / "autostart")
    assert not auto.enabled
    auto.enable(["/usr/bin/python3", "-m", "vcam", "run"])
    entry = tmp_path / "autostart" / "vcam.desktop"
    assert auto.enabled and "X-GNOME-Autostart-enabled=true" in entry.read_text()
    auto.disable()
    auto.disable()  # idempotent
    assert not auto.enabled and not entry.exists()


def test_macos_launch_agent(tmp_path):
    auto = Autostart(platform="darwin", folder=tmp_path / "LaunchAgents")
    auto.enable(["/usr/local/bin/python3", "-m", "vcam", "run"])
    plist = plistlib.loads((tmp_path / "LaunchAgents" / "org.vcam.daemon.plist").read_bytes())
    assert plist["Label"] == "org.vcam.daemon" and plist["RunAtLoad"] is True
    assert plist["ProgramArguments"] == ["/usr/local/bin/python3", "-m", "vcam", "run"]
    assert auto.enabled
    auto.disable()
    assert not auto.enabled


class FakeWinreg:
    """The part of ``winreg`` Autostart uses, over a dict."""

    HKEY_CURRENT_USER = "HKCU"
    REG_SZ = 1
    KEY_SET_VALUE = 2

    def __init__(self):
        self.values: dict[tuple[str, str], str] = {}

    class _Key:
        def __init__(self, path):
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def OpenKey(self, root, path, *a):
        return self._Key(path)

    CreateKey = OpenKey

    def QueryValueEx(self, key, name):
        try:
            return self.values[(key.path, name)], self.REG_SZ
        except KeyError:
            raise FileNotFoundError(name) from None

    def SetValueEx(self, key, name, _reserved, kind, value):
        assert kind == self.REG_SZ
        self.values[(key.path, name)] = value

    def DeleteValue(self, key, name):
        if (key.path, name) not in self.values:
            raise FileNotFoundError(name)
        del self.values[(key.path, name)]


def test_windows_run_key():
    reg = FakeWinreg()
    auto = Autostart(platform="win32", registry=reg)
    assert not auto.enabled
    auto.enable([r"C:\Program Files\Python311\python.exe", "-m", "vcam", "run"])
    assert reg.values[(RUN_KEY, "vcam")] == r'"C:\Program Files\Python311\python.exe" -m vcam run'
    assert auto.enabled
    auto.disable()
    auto.disable()
    assert not auto.enabled and reg.values == {}


def test_config_path_show_and_edit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VCAM_CONFIG_DIR", str(tmp_path / "cfg"))
    assert main(["config", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cfg" / "config.toml")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "[engine]" in out and 'provider = "auto"' in out and "default.toml" in out
    monkeypatch.setenv("EDITOR", "true")
    monkeypatch.delenv("VISUAL", raising=False)
    assert main(["config", "edit"]) == 0
    user = tmp_path / "cfg" / "config.toml"
    assert "Every key, its meaning and its default" in user.read_text()
    user.write_text('[engine]\nprovider = "cpu"\n')
    assert main(["config", "show"]) == 0
    assert 'provider = "cpu"' in capsys.readouterr().out
    user.write_text('[engine]\nprovder = "cpu"\n')
    assert main(["config", "edit"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "provder" in err and "vcam config edit" in err


@pytest.mark.parametrize("shell", cli_setup.SHELLS)
def test_completion_scripts_name_every_subcommand(shell):
    script = cli_setup.completion_script(build_parser(), shell)
    for name in ("render", "run", "ctl", "bench", "devices", "verify", "config", "autostart"):
        assert name in script
    assert "--photo" in script or "photo" in script


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_completes_subcommands_and_options(tmp_path):
    script = tmp_path / "vcam.bash"
    script.write_text(cli_setup.completion_script(build_parser(), "bash"))
    probe = (f"source {script}; COMP_WORDS=(vcam re); COMP_CWORD=1; _vcam; echo \"${{COMPREPLY[*]}}\"; "
             "COMP_WORDS=(vcam render --ph); COMP_CWORD=2; _vcam; echo \"${COMPREPLY[*]}\"")
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "render" and out[1] == "--photo"
