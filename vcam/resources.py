"""Files that travel with vcam: the ONNX graphs, the default settings and the sample media.

Found with :mod:`importlib.resources`, so they are wherever the ``vcam`` package is: inside an
installed wheel they are ``vcam/onnx/``, ``vcam/config/`` and ``vcam/assets/`` (the
repository's top-level ``onnx/`` and ``config/`` folders are mapped there at build time, see
``pyproject.toml``). In a source checkout installed in editable mode those two folders stay at
the repository's top level, beside ``vcam/``; :func:`data_dir` looks there second.

The graphs are opened by onnxruntime from a file name, so these are real folders on disk
(``pathlib.Path``): vcam is not run from a zip archive.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from vcam.runtime.errors import VcamError

#: The data folders packaged inside ``vcam`` (repository folder name = folder name in the wheel).
DATA_FOLDERS = ("onnx", "config")


def package_root() -> Path:
    """The ``vcam`` package's folder on disk."""
    root = importlib.resources.files("vcam")
    if not isinstance(root, Path):
        raise VcamError(f"vcam must be installed as files on disk, not inside an archive (found it at {root})")
    return root


def data_dir(name: str) -> Path:
    """The folder of one packaged data kind: ``"onnx"`` (graphs, manifest, face models) or
    ``"config"`` (``default.toml``, ``emotions.toml``)."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"data folder: expected one of {DATA_FOLDERS}, got {name!r}")
    root = package_root()
    for candidate in (root / name, root.parent / name):  # installed wheel, then source checkout
        if candidate.is_dir():
            return candidate
    raise VcamError(f"vcam's {name}/ folder is missing (looked in {root / name} and {root.parent / name}): "
                    f"the installation is incomplete; reinstall vcam")


def graph_dir() -> Path:
    """The exported graphs and their ``manifest.json``."""
    return data_dir("onnx")


def config_file(name: str) -> Path:
    """A packaged settings file, e.g. ``config_file("default.toml")``."""
    return data_dir("config") / name


def assets_dir() -> Path:
    """The bundled sample portraits and speech."""
    return package_root() / "assets"
