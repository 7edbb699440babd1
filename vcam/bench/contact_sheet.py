"""Make the README's gallery: rendered frames at visemes, a blink and every emotion.

    python -m vcam.bench.contact_sheet docs/contact-sheet.png [--audio A] [PHOTO ...]

Each portrait speaks the sample speech; from its motion the frame with the widest jaw, the
roundest lips, the firmest lip closure during speech and the deepest blink are picked, plus
one frame of each emotion preset (at the default intensity) on a silent stretch. Rows:
portraits; columns: those moments.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from vcam.runtime.channels import INDEX

EMOTION_COLUMNS = ("happy", "sad", "angry", "surprised")
COLUMNS = ("open vowel (A)", "rounded (O/U)", "M/B/P closure", "blink", *EMOTION_COLUMNS)


def _frames(video: Path) -> list[np.ndarray]:
    import av

    with av.open(str(video)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _pick(rows: np.ndarray) -> list[int]:
    jaw = rows[:, 1 + INDEX["jawOpen"]]
    close = rows[:, 1 + INDEX["mouthClose"]] + rows[:, 1 + INDEX["mouthPressLeft"]]
    blink = rows[:, 1 + INDEX["eyeBlinkLeft"]] + rows[:, 1 + INDEX["eyeBlinkRight"]]
    speaking = np.convolve(jaw > 0.25, np.ones(9), "same") > 0  # near open vowels: inside speech
    closure = np.where(speaking, close - jaw, -np.inf)
    rounded = rows[:, 1 + INDEX["mouthFunnel"]] + rows[:, 1 + INDEX["mouthPucker"]]
    return [int(np.argmax(jaw)), int(np.argmax(rounded)), int(np.argmax(closure)), int(np.argmax(blink))]


def make(photos: list[Path], audio: Path, out: Path, tile: int = 200) -> Path:
    """Render, pick and tile; writes ``out`` (PNG) and returns it."""
    from PIL import Image, ImageDraw

    from vcam.runtime.audio_file import write_wav
    from vcam.app.render_job import render_file
    from vcam.app.settings import load_settings

    settings = load_settings()
    grid = []
    with tempfile.TemporaryDirectory() as tmp:
        silence = Path(tmp) / "silence.wav"
        write_wav(silence, np.zeros(16000, np.float32))  # one second
        for photo in photos:
            video, csv = Path(tmp) / "speech.mp4", Path(tmp) / "speech.csv"
            render_file(photo, audio, video, settings=settings, emotion="neutral", intensity=0.0, fps=25,
                        seed=1, motion_csv=csv)
            rows = np.loadtxt(csv, delimiter=",", skiprows=1)
            frames = _frames(video)
            row = [frames[i] for i in _pick(rows)]
            for emotion in EMOTION_COLUMNS:
                video = Path(tmp) / f"{emotion}.mp4"
                render_file(photo, silence, video, settings=settings, emotion=emotion,
                            intensity=settings.emotion.intensity, fps=25, seed=1)
                row.append(_frames(video)[-1])  # the expression alone, on silence
            grid.append(row)
    sheet = Image.new("RGB", (tile * len(COLUMNS), tile * len(grid) + 24), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(COLUMNS):
        draw.text((c * tile + 8, 6), name, fill="black")
    for r, row in enumerate(grid):
        for c, frame in enumerate(row):
            sheet.paste(Image.fromarray(frame).resize((tile, tile), Image.LANCZOS), (c * tile, 24 + r * tile))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def main(argv=None) -> int:
    from vcam import assets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("photos", type=Path, nargs="*")
    parser.add_argument("--audio", type=Path, default=assets.SAMPLE_AUDIO)
    args = parser.parse_args(argv)
    photos = args.photos or [assets.SAMPLE_PHOTO, *assets.EXTRA_PHOTOS]
    print(make(photos, args.audio, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
