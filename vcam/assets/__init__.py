"""Bundled sample inputs (public-domain portrait and speech) for ``vcam render --sample``."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

#: This package's folder: the files sit beside this module.
ASSETS_DIR = Path(str(importlib.resources.files(__name__)))

SAMPLE_PHOTO = ASSETS_DIR / "painting_thomas_jefferson_rembrandt_peale.jpg"
"""Portrait of Thomas Jefferson by Rembrandt Peale (1800), public domain."""

SAMPLE_AUDIO = ASSETS_DIR / "en_ljspeech_LJ001-0001.wav"
"""LJ Speech clip LJ001-0001 (public domain); its transcript is the ``.txt`` beside it."""

SAMPLE_OUT = Path("vcam-demo.mp4")
"""Where ``--sample`` writes when ``--out`` is not given (the current directory)."""

EXTRA_PHOTOS = (
    ASSETS_DIR / "photo_astronaut_eileen_collins.png",
    ASSETS_DIR / "photo_abraham_lincoln_beard_bw.jpg",
)
"""More bundled portraits: NASA's Eileen Collins (open, smiling mouth with teeth; public domain,
via scikit-image's data) and Abraham Lincoln by Alexander Gardner, 1863 (beard, black and
white; public domain)."""
