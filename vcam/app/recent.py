"""Recently used portraits, remembered between runs (``vcam run`` starts with the last one).

Kept as JSON in the user's state directory: ``$XDG_STATE_HOME/vcam/recent.json`` on Linux
(usually ``~/.local/state``), ``~/Library/Application Support/vcam`` on macOS,
``%LOCALAPPDATA%\\vcam`` on Windows.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
MAX_RECENT = 8


def state_dir() -> Path:
    """Where vcam keeps per-user state on this platform (:func:`vcam.userdirs.state_dir`)."""
    from vcam.userdirs import state_dir as user_state

    return user_state()


def recent_photos() -> list[str]:
    """Absolute paths of recently used photos that still exist, newest first."""
    try:
        data = json.loads((state_dir() / "recent.json").read_text(encoding="utf-8"))
        photos = [p for p in data.get("photos", []) if isinstance(p, str)]
    except (OSError, ValueError, AttributeError):
        return []
    return [p for p in photos if Path(p).is_file()][:MAX_RECENT]


def remember_photo(path: str | os.PathLike) -> None:
    """Put ``path`` first in the recent list (best effort: a read-only home only logs)."""
    path = str(Path(path).resolve())
    photos = [path] + [p for p in recent_photos() if p != path]
    directory = state_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".recent-", suffix=".json", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"photos": photos[:MAX_RECENT]}, f, indent=1)
        os.replace(tmp, directory / "recent.json")
    except OSError as e:
        log.debug("cannot remember the photo: %s", e)
