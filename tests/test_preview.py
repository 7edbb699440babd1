"""The preview window (Tk on its own thread) under Xvfb."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from fixtures_x import x_display, x_env  # noqa: F401 - pytest fixtures
from vcam.runtime.errors import DeviceError


def test_preview_shows_frames_and_closes(x_env):  # noqa: F811
    from vcam.sinks.preview import PreviewWindow

    with PreviewWindow() as win:
        for v in range(0, 250, 50):
            win.write(np.full((512, 512, 3), v, np.uint8))
            time.sleep(0.05)
        deadline = time.monotonic() + 3
        while win.frames_shown < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert win.frames_shown >= 2 and win.open
    win.close()


def test_preview_exits_cleanly_in_a_process(x_env):  # noqa: F811
    # Tk torn down on its own thread: no "Tcl_AsyncDelete" abort when the process ends.
    code = ("import numpy as np; from vcam.sinks.preview import PreviewWindow\n"
            "w = PreviewWindow(); w.write(np.zeros((512, 512, 3), np.uint8)); import time; time.sleep(0.2); w.close()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Tcl_AsyncDelete" not in done.stderr


def test_no_display_is_a_clear_error(monkeypatch):
    from vcam.sinks.preview import PreviewWindow

    monkeypatch.delenv("DISPLAY", raising=False)
    if not sys.platform.startswith("linux"):
        pytest.skip("DISPLAY only matters on Linux")
    with pytest.raises(DeviceError, match="no X display"):
        PreviewWindow()
