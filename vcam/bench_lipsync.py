"""``vcam bench --lipsync``: lip sync measured from rendered videos.

Renders every speech clip (``*.wav`` with a ``.txt`` transcript beside it) on every
portrait with ``vcam render`` and scores each video with the project's external measuring
tools (``lipsync.py`` from the eval folder, run with their own Python as their ``setup.sh``
prints it): against the transcript's phones, force-aligned. Then the same for speech in
other languages, made here by espeak-ng from sentences the lip model never trained on, scored
against the speech's loudness (the tools' reference without a transcript). Prints one row
per video and the medians of each group.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from runtime.errors import InputError

METRICS = ("r_open", "lag_ms", "closure", "vowel_open", "still_sil")

#: Other-language speech for the loudness-referenced rows: {espeak-ng voice: text}. Not in
#: the lip model's training sentences (``vcam.graphs.lipdata``).
LANGUAGES: dict[str, str] = {
    "es": "El tren de las ocho llegó tarde porque nevaba mucho en la montaña. "
          "Mis abuelos siempre cuentan historias del pueblo.",
    "ja": "きょうはとてもいいてんきですね。えきのまえにあたらしいきっさてんがひらきました。",
    "sv": "Igår promenerade vi längs stranden och såg många båtar. Kaffet på hotellet var starkt och gott.",
    "ru": "Вчера вечером мы долго гуляли по набережной. Завтра обещают тёплую и солнечную погоду.",
}


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


def _speech_jobs(media_dir: Path, languages: dict[str, str] | None, tmp: Path,
                 rows: list[dict]) -> list[tuple[str, Path, Path | None]]:
    """``(clip, wav, transcript or None)`` for every clip of ``media_dir``, then the
    other-language speech spoken into ``tmp`` (a failure to speak is added to ``rows``)."""
    jobs: list[tuple[str, Path, Path | None]] = [(wav.stem, wav, txt) for wav, txt in clips(media_dir)]
    for lang, text in (LANGUAGES if languages is None else languages).items():
        wav = tmp / f"espeak_{lang}.wav"
        err = _speak(lang, text, wav)
        if err:
            rows.append({"clip": wav.stem, "photo": "-", "error": err})
            continue
        jobs.append((wav.stem, wav, None))
    return jobs


def run(photos: list[Path], media_dir: Path, eval_dir: Path, *, provider: str = "cpu",
        languages: dict[str, str] | None = None) -> list[dict]:
    """Render and score every (clip, portrait); returns one dict of metrics per video.

    ``languages`` (default :data:`LANGUAGES`; ``{}`` for none) adds espeak-ng speech scored
    against loudness; rows carry ``"reference": "phones"`` or ``"energy"``.
    """
    py = eval_python(eval_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = _speech_jobs(media_dir, languages, Path(tmp), rows)
        for clip, wav, txt in jobs:
            for photo in photos:
                out = Path(tmp) / f"{clip}-{photo.stem}.mp4"
                row = {"clip": clip, "photo": photo.stem}
                err = render_video(photo, wav, out, provider)
                if err:
                    rows.append({**row, "error": err})
                    continue
                row.update(run_json([py, str(eval_dir / "lipsync.py"), str(out), str(wav)]
                                    + ([str(txt)] if txt else [])))
                rows.append(row)
    return rows


def render_video(photo: Path, audio: Path, out: Path, provider: str, *options: str) -> str | None:
    """``vcam render`` in a child process (as a user runs it); None, or what it wrote to stderr."""
    cmd = [sys.executable, "-m", "vcam", "render", "--photo", str(photo), "--audio", str(audio), "--out", str(out),
           "--provider", provider, *options]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip() or "render failed")


def run_json(cmd: list[str]) -> dict:
    """Run a measuring tool; the JSON it prints, or ``{"error": its last stderr line}``."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        return {"error": (r.stderr.strip().splitlines() or ["no output"])[-1]}


def _speak(lang: str, text: str, wav: Path) -> str | None:
    """espeak-ng says ``text`` in ``lang`` into ``wav``; an error line, or None."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return "espeak-ng is not installed (apt install espeak-ng)"
    r = subprocess.run([exe, "-v", lang, "-s", "160", "-w", str(wav), text], capture_output=True, text=True)
    return None if r.returncode == 0 and wav.is_file() else f"espeak-ng -v {lang} failed: {r.stderr.strip()}"


#: Run with the measuring tools' Python: scores a mouth-opening track (``.npy``, one value per
#: video frame) against the speech exactly as ``lipsync.py`` scores a video's lip gap.
_SCORE_TRACK = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import lipsync as ls
gap = np.load(sys.argv[2]).astype(np.float32)
fps = float(sys.argv[3])
a = ls.load_audio16k(sys.argv[4])
text = open(sys.argv[5]).read().strip() if len(sys.argv) > 5 else None
times = (np.arange(len(gap)) + 0.5) / fps
phones = ls.align(a, text) if text else None
ref = ls.reference_from_phones(phones, times) if phones else ls.reference_from_energy(a, times)
r, lag = ls.best_lag(gap, ref, fps)
out = {"reference": "phones" if phones else "energy", "r_open": round(r, 3), "lag_ms": round(lag, 1)}
if phones:
    p95 = float(np.percentile(gap, 95))
    near = [gap[(times >= s - 0.04) & (times <= e + 0.04)] for n, s, e in phones
            if n in ("P", "B", "M") and e - s >= 0.05]
    hits = [float(g.min()) < 0.25 * p95 for g in near if len(g)]
    out["closure"] = round(sum(hits) / len(hits), 3) if hits else None
print(json.dumps(out))
"""


def run_offline(media_dir: Path, eval_dir: Path, *, fps: int = 25, graph_dir: Path | None = None,
                languages: dict[str, str] | None = None) -> list[dict]:
    """Score the motion graph's ``jawOpen`` itself, without rendering, on the clips of :func:`run`:
    seconds instead of minutes, for comparing lip models (export one with ``export_motion
    --out DIR``, pass DIR as ``graph_dir``). The rendered lip gap follows jawOpen closely, but
    the face tracker's view of it costs r_open about 0.03 (``vcam bench --lipsync``)."""
    import numpy as np

    from runtime.channels import INDEX
    from vcam.audio_file import load_audio
    from vcam.render_job import motion_track

    py = eval_python(eval_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = _speech_jobs(media_dir, languages, Path(tmp), rows)
        for clip, wav, txt in jobs:
            track = Path(tmp) / f"{clip}.npy"
            np.save(track, motion_track(load_audio(wav), fps=fps, graph_dir=graph_dir)[:, INDEX["jawOpen"]])
            rows.append({"clip": clip, "photo": "(jawOpen)",
                         **run_json([py, "-c", _SCORE_TRACK, str(eval_dir), str(track), str(fps), str(wav)]
                                    + ([str(txt)] if txt else []))})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: one row per video, then the medians of the phone- and loudness-referenced rows."""
    head = "| speech | portrait | " + " | ".join(METRICS) + " |"
    lines = [head, "|---|---|" + "---:|" * len(METRICS)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['clip']} | {r['photo']} | {r['error']} |" + " |" * (len(METRICS) - 1))
            continue
        lines.append(f"| {r['clip']} | {r['photo']} | " + " | ".join(_fmt(r.get(m)) for m in METRICS) + " |")
    for ref, label in (("phones", "**median, transcripts**"), ("energy", "**median, other languages**")):
        group = [r for r in rows if "error" not in r and r.get("reference", "phones") == ref]
        if not group:
            continue
        med = []
        for m in METRICS:
            vals = [r[m] for r in group if r.get(m) is not None]
            med.append(_fmt(statistics.median(vals)) if vals else "-")
        lines.append(f"| {label} | | " + " | ".join(med) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
