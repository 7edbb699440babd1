"""Every per-user folder vcam uses, from platformdirs (the XDG spec on Linux, the platform's
conventions on macOS and Windows). Nothing is created here; callers make what they write to.

| folder | Linux | macOS | Windows |
|---|---|---|---|
| config (``config.toml``, signing credentials) | ``~/.config/vcam`` | ``~/Library/Application Support/vcam`` | ``%APPDATA%\\vcam`` |
| cache (enrolled portraits) | ``~/.cache/vcam`` | ``~/Library/Caches/vcam`` | ``%LOCALAPPDATA%\\vcam\\Cache`` |
| state (recent portraits) | ``~/.local/state/vcam`` | ``~/Library/Application Support/vcam`` | ``%LOCALAPPDATA%\\vcam`` |
| runtime (control socket) | ``$XDG_RUNTIME_DIR/vcam`` | ``~/Library/Caches/TemporaryItems/vcam`` | ``%LOCALAPPDATA%\\vcam`` |

On Linux the ``XDG_*_HOME`` variables move them as the spec says. ``$VCAM_CONFIG_DIR`` and
``$VCAM_CACHE_DIR`` override the first two (tests, portable setups). Without a per-user
runtime folder (no ``$XDG_RUNTIME_DIR`` and no ``/run/user/<uid>``) the control socket goes to
a private folder in the temporary directory, ``vcam-<uid>``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

APP = "vcam"


def config_dir() -> Path:
    """The user's settings folder (``config.toml`` lives here)."""
    if os.environ.get("VCAM_CONFIG_DIR"):
        return Path(os.environ["VCAM_CONFIG_DIR"]).expanduser()
    import platformdirs

    return platformdirs.user_config_path(APP, appauthor=False, roaming=True)


def cache_dir() -> Path:
    """The user's cache folder."""
    if os.environ.get("VCAM_CACHE_DIR"):
        return Path(os.environ["VCAM_CACHE_DIR"]).expanduser()
    import platformdirs

    return platformdirs.user_cache_path(APP, appauthor=False)


def state_dir() -> Path:
    """The user's state folder (remembered between runs, not settings)."""
    import platformdirs

    return platformdirs.user_state_path(APP, appauthor=False)


def runtime_dir() -> Path:
    """Where the running daemon's control socket (POSIX) or token file (Windows) lives."""
    import platformdirs

    if sys.platform == "win32":
        return platformdirs.user_data_path(APP, appauthor=False)
    if sys.platform == "darwin" or os.environ.get("XDG_RUNTIME_DIR"):
        return platformdirs.user_runtime_path(APP, appauthor=False)
    session = Path(f"/run/user/{os.geteuid()}")  # what XDG_RUNTIME_DIR would name under systemd
    if session.is_dir() and os.access(session, os.W_OK):
        return session / APP
    return Path(tempfile.gettempdir()) / f"{APP}-{os.geteuid()}"
