"""An X display for tests that need one: ``$DISPLAY`` when it answers, else a private Xvfb.

Import the fixtures into a test module with ``from fixtures_x import x_display, x_env``.
``x_display`` (session) yields the display name; ``x_env`` (per test) also points
``DISPLAY`` at it (and clears ``WAYLAND_DISPLAY``) for the code under test, which matters
for pynput: its X backend reads ``DISPLAY`` when it connects. :func:`xdotool` runs
xdotool on a given display.

Set ``VCAM_TEST_OWN_XVFB=1`` to use a private Xvfb even when ``$DISPLAY`` answers, so that
tests typing keys with xdotool do not type into your desktop.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

_START_TIMEOUT_S = 10.0


def _answers(name: str) -> bool:
    """Whether an X server accepts a connection on display ``name``."""
    import Xlib.display

    try:
        Xlib.display.Display(name).close()
    except Exception:
        return False
    return True


def _free_display_number(start: int = 90) -> int:
    """The first display number from ``start`` with neither a socket nor a lock file."""
    for n in range(start, start + 400):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError(f"no free X display number in {start}..{start + 399}")


def _start_xvfb(xvfb: str) -> tuple[subprocess.Popen, str]:
    """Start Xvfb on a free display and wait until it accepts connections.

    Another process may pick the same free number at the same moment: then one of the two
    servers exits, and the other's display must not be mistaken for ours. So readiness is
    what *our* server reports with ``-displayfd`` (it writes the display number once it
    accepts connections, and nothing if it exits), and a lost race moves on to the next
    number.
    """
    errors = []
    n = 90
    for _ in range(8):
        n = _free_display_number(n)
        name = f":{n}"
        log = tempfile.TemporaryFile()  # not a pipe: a chatty Xvfb must never block on it
        ready_r, ready_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [xvfb, name, "-screen", "0", "1280x720x24", "-nolisten", "tcp", "-noreset",
                 "-displayfd", str(ready_w)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(ready_w,),
            )
        finally:
            os.close(ready_w)
        try:
            reported = _read_line(ready_r, _START_TIMEOUT_S)
        finally:
            os.close(ready_r)
        if reported == str(n) and proc.poll() is None and _answers(name):
            log.close()
            return proc, name
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.seek(0)
        err = log.read().decode(errors="replace").strip()
        log.close()
        errors.append(f"{name}: exit {proc.returncode}, reported {reported!r}: {err[-300:]}")
        n += 1
    raise RuntimeError("Xvfb did not start: " + "; ".join(errors))


def _read_line(fd: int, timeout_s: float) -> str:
    """What is written to ``fd`` up to a newline, EOF or ``timeout_s``, stripped."""
    data = b""
    deadline = time.monotonic() + timeout_s
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


@pytest.fixture(scope="session")
def x_display():
    """A usable X display name such as ``":90"``; skips when Xvfb or xdotool is missing."""
    pytest.importorskip("Xlib.display", reason="python-xlib is not installed")
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (apt-get install xdotool)")
    current = os.environ.get("DISPLAY")
    if current and os.environ.get("VCAM_TEST_OWN_XVFB") != "1" and _answers(current):
        yield current
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("no X display answers and Xvfb is not installed (apt-get install xvfb)")
    proc, name = _start_xvfb(xvfb)
    try:
        yield name
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def x_env(x_display, monkeypatch):
    """``x_display``, with ``DISPLAY`` set to it and ``WAYLAND_DISPLAY`` cleared for this test."""
    monkeypatch.setenv("DISPLAY", x_display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return x_display


def xdotool(display: str, *args: str) -> None:
    """Run ``xdotool ARGS`` on ``display`` (e.g. ``xdotool(":90", "key", "ctrl+alt+2")``)."""
    env = {**os.environ, "DISPLAY": display}
    subprocess.run(["xdotool", *args], env=env, check=True, timeout=10, capture_output=True)
