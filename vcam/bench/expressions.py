"""``vcam bench --expressions``: emotions and liveness measured from rendered videos.

For each portrait, ``vcam render`` makes: 6 s of silence at each emotion preset (default
intensity), 12 s of silence, and the development speech clips joined into one recording.
The project's external measuring tools then score them (run with their own Python, as
:mod:`vcam.bench.lipsync` does): ``eval_emotions.py`` (this package; the eval tools' face
measures) gives each emotion's effect in units of frame-to-frame noise, ``liveness.py``
blinks per minute, head roll spread, slow sway and jerk.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from vcam.runtime.errors import InputError
from vcam.runtime.audio_file import load_audio, write_wav
from vcam.bench.lipsync import eval_python, render_video, run_json

EMOTIONS = ("happy", "sad", "angry", "surprised")
EMOTION_SECONDS, SILENCE_SECONDS = 6.0, 12.0
LIVENESS = ("face_rate", "blinks_per_min", "roll_std_deg", "sway", "jerk")
RATE = 16000
_SEEDED = ("--seed", "0")


def joined_speech(media_dir: Path, tmp: Path) -> tuple[Path, float]:
    """The media folder's speech clips joined (0.5 s apart) into one WAV; (path, seconds)."""
    parts = []
    for wav in sorted(media_dir.glob("*.wav")):
        parts += [load_audio(wav, rate=RATE), np.zeros(RATE // 2, np.float32)]
    if not parts:
        raise InputError(f"no speech (*.wav) in {media_dir}: pass --media, a folder of speech clips")
    pcm = np.concatenate(parts)
    path = tmp / "speech.wav"
    write_wav(path, pcm)
    return path, len(pcm) / RATE


def run(photos: list[Path], media_dir: Path, eval_dir: Path, *, provider: str = "cpu") -> dict:
    """Render and score; returns ``{"emotions": [row per portrait], "liveness": [row per video]}``."""
    py = eval_python(eval_dir)
    result: dict = {"emotions": [], "liveness": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        silence6, silence12 = tmp / "silence6.wav", tmp / "silence12.wav"
        write_wav(silence6, np.zeros(int(EMOTION_SECONDS * RATE), np.float32))
        write_wav(silence12, np.zeros(int(SILENCE_SECONDS * RATE), np.float32))
        speech, speech_s = joined_speech(media_dir, tmp)
        for photo in photos:
            videos = {}
            for emotion in ("neutral",) + EMOTIONS:
                videos[emotion] = tmp / f"{photo.stem}-{emotion}.mp4"
                err = _last_line(render_video(photo, silence6, videos[emotion], provider, *_SEEDED,
                                              "--emotion", emotion))
                if err:
                    result["emotions"].append({"photo": photo.stem, "error": err})
                    break
            else:
                row = run_json([py, str(Path(__file__).with_name("eval_emotions.py")), str(eval_dir),
                             str(videos["neutral"])] + [f"{e}={videos[e]}" for e in EMOTIONS])
                result["emotions"].append({"photo": photo.stem, **row})
            for clip, audio in ((f"speech {speech_s:.0f} s", speech), (f"silence {SILENCE_SECONDS:.0f} s", silence12)):
                out = tmp / f"{photo.stem}-{audio.stem}.mp4"
                err = _last_line(render_video(photo, audio, out, provider, *_SEEDED, "--emotion", "neutral"))
                row = {"error": err} if err else run_json([py, str(eval_dir / "liveness.py"), str(out), "--json"])
                result["liveness"].append({"photo": photo.stem, "clip": clip, **row})
    return result


def table(result: dict) -> str:
    """Markdown: emotion effects (x frame-to-frame noise), then liveness per video."""
    lines = ["| portrait | " + " | ".join(f"{e} ({_MEASURE[e]})" for e in EMOTIONS) + " |",
             "|---|" + "---:|" * len(EMOTIONS)]
    for r in result["emotions"]:
        if "error" in r:
            lines.append(f"| {r['photo']} | {r['error']} |" + " |" * (len(EMOTIONS) - 1))
            continue
        lines.append(f"| {r['photo']} | " + " | ".join(_fmt(r.get(e, {}).get("x_noise")) for e in EMOTIONS) + " |")
    lines += ["", "| portrait | clip | " + " | ".join(LIVENESS) + " |", "|---|---|" + "---:|" * len(LIVENESS)]
    for r in result["liveness"]:
        if "error" in r:
            lines.append(f"| {r['photo']} | {r['clip']} | {r['error']} |" + " |" * (len(LIVENESS) - 1))
            continue
        lines.append(f"| {r['photo']} | {r['clip']} | " + " | ".join(_fmt(r.get(k)) for k in LIVENESS) + " |")
    return "\n".join(lines)


def _last_line(err: str | None) -> str | None:
    return None if err is None else err.splitlines()[-1]


_MEASURE = {"happy": "corner_lift ↑", "sad": "corner_lift ↓", "angry": "brow_gap ↓", "surprised": "brow ↑"}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
