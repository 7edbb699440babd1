"""Make the README's gallery: rendered frames at visemes, a head turn, a blink and every emotion.

    python -m vcam.bench.contact_sheet docs/contact-sheet.jpg [--full docs/gallery] [--audio A] [PHOTO ...]

Each portrait speaks the sample speech; from its motion the frame with the widest jaw, the
roundest lips, the firmest lip closure during speech, the head turned furthest and the
deepest blink are picked, plus one frame of each emotion preset (at the default intensity)
on a silent stretch. The sheet: rows are portraits, columns those moments, scaled down;
with ``--full``, also one JPEG per portrait of the same frames at full resolution (3 x 3).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from vcam.runtime.channels import INDEX

EMOTION_COLUMNS = ("happy", "sad", "angry", "surprised")
COLUMNS = ("open vowel (A)", "rounded (O/U)", "M/B/P closure", "head turn", "blink", *EMOTION_COLUMNS)


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
    turn = (np.abs(rows[:, 1 + INDEX["headYaw"]]) + np.abs(rows[:, 1 + INDEX["headRoll"]])
            + np.abs(rows[:, 1 + INDEX["headPitch"]]))
    return [int(np.argmax(jaw)), int(np.argmax(rounded)), int(np.argmax(closure)), int(np.argmax(turn)),
            int(np.argmax(blink))]


def make(photos: list[Path], audio: Path, out: Path, tile: int = 200, full: Path | None = None) -> Path:
    """Render, pick and tile; writes ``out`` (PNG or JPEG) and returns it; with ``full``, also
    ``full/<photo>.jpg``, the frames at 512x512 in a 3 x 3 grid."""
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
            if full is not None:
                _full_sheet(row, full / f"{Path(photo).stem}.jpg")
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


def _full_sheet(row: list[np.ndarray], out: Path) -> None:
    """The frames of one portrait at full resolution, 3 x 3, each labelled under it."""
    from PIL import Image, ImageDraw

    label_h = 22
    sheet = Image.new("RGB", (3 * 512, 3 * (512 + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (name, frame) in enumerate(zip(COLUMNS, row, strict=True)):
        x, y = (k % 3) * 512, (k // 3) * (512 + label_h)
        sheet.paste(Image.fromarray(frame), (x, y))
        draw.text((x + 8, y + 512 + 5), name, fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=90)


def main(argv=None) -> int:
    from vcam import assets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("photos", type=Path, nargs="*")
    parser.add_argument("--audio", type=Path, default=assets.SAMPLE_AUDIO)
    parser.add_argument("--full", type=Path, metavar="DIR", help="also each portrait's frames at full size here")
    args = parser.parse_args(argv)
    photos = args.photos or [assets.SAMPLE_PHOTO, *assets.EXTRA_PHOTOS]
    print(make(photos, args.audio, args.out, full=args.full))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
