"""``vcam bench --lipsync``: lip-sync and liveness measured from rendered videos.

Renders every speech clip (``*.wav`` with a ``.txt`` transcript beside it) on every
portrait with ``vcam render`` and scores each video with the project's external measuring
tools (``lipsync.py``, ``liveness.py`` from the eval folder, run with their own Python as
their ``setup.sh`` prints it). Prints one row per video and the medians.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from runtime.errors import InputError

METRICS = ("r_open", "lag_ms", "closure", "vowel_open", "still_sil")


def eval_python(eval_dir: Path) -> str:
    """The Python of the measuring tools' own environment (made by their ``setup.sh``)."""
    setup = eval_dir / "setup.sh"
    if not setup.is_file():
        raise InputError(f"no measuring tools at {eval_dir}: pass --eval-dir, the folder with setup.sh and lipsync.py")
    out = subprocess.run(["bash", str(setup)], capture_output=True, text=True)
    if out.returncode != 0:
        raise InputError(f"{setup} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    return out.stdout.strip().splitlines()[-1]


def clips(media_dir: Path) -> list[tuple[Path, Path]]:
    """``(wav, transcript)`` pairs in ``media_dir``."""
    return sorted((w, w.with_suffix(".txt")) for w in media_dir.glob("*.wav") if w.with_suffix(".txt").is_file())


def run(photos: list[Path], media_dir: Path, eval_dir: Path, *, provider: str = "cpu") -> list[dict]:
    """Render and score every (clip, portrait); returns one dict of metrics per video."""
    py = eval_python(eval_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for wav, txt in clips(media_dir):
            for photo in photos:
                out = Path(tmp) / f"{wav.stem}-{photo.stem}.mp4"
                cmd = [sys.executable, "-m", "vcam", "render", "--photo", str(photo), "--audio", str(wav),
                       "--out", str(out), "--provider", provider]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    rows.append({"clip": wav.stem, "photo": photo.stem, "error": r.stderr.strip()})
                    continue
                score = subprocess.run([py, str(eval_dir / "lipsync.py"), str(out), str(wav), str(txt)],
                                       capture_output=True, text=True)
                row = {"clip": wav.stem, "photo": photo.stem}
                try:
                    row.update(json.loads(score.stdout))
                except json.JSONDecodeError:
                    row["error"] = score.stderr.strip().splitlines()[-1] if score.stderr.strip() else "no output"
                rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: one row per video, then the medians."""
    head = "| speech | portrait | " + " | ".join(METRICS) + " |"
    lines = [head, "|---|---|" + "---:|" * len(METRICS)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['clip']} | {r['photo']} | {r['error']} |" + " |" * (len(METRICS) - 1))
            continue
        lines.append(f"| {r['clip']} | {r['photo']} | " + " | ".join(_fmt(r.get(m)) for m in METRICS) + " |")
    med = []
    for m in METRICS:
        vals = [r[m] for r in rows if r.get(m) is not None and "error" not in r]
        med.append(_fmt(statistics.median(vals)) if vals else "-")
    lines.append("| **median** | | " + " | ".join(med) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
