"""The per-user cache folder and atomic writes of cached arrays.

The cache lives in ``$VCAM_CACHE_DIR`` when that is set (tests and users may point it
anywhere), else in the platform's per-user cache folder (:mod:`vcam.userdirs`).

Nothing is created at import time; :func:`cache_dir` makes the folder when asked.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ENV_VAR = "VCAM_CACHE_DIR"


def cache_root() -> Path:
    """The cache folder for this user and platform (not created): :func:`vcam.userdirs.cache_dir`."""
    from vcam.userdirs import cache_dir as user_cache

    return user_cache()


def cache_dir(sub: str | None = None) -> Path:
    """The cache folder (or its subfolder ``sub``), created if missing."""
    path = cache_root() / sub if sub else cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> bool:
    """Write ``arrays`` compressed to ``path`` via a temp file in the same folder and a rename.

    Readers never see a half-written file. Returns False (and logs a warning) when the cache
    cannot be written, e.g. a read-only or full disk: a cache is never worth failing for.
    """
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp_name, path)
        return True
    except OSError as e:
        log.warning("could not write cache file %s: %s", path, e)
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
        return False


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """All arrays of a cached ``.npz``, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:  # truncated or damaged: recompute
        log.warning("ignoring unreadable cache file %s: %s", path, e)
        return None
