"""Draw docs/before-after-realism.jpg: the same moments rendered by an earlier vcam and by this one.

    git worktree add /tmp/vcam-before <commit>
    python docs/make_before_after.py /tmp/vcam-before docs/before-after-realism.jpg

For each bundled portrait, two pairs of 512x512 frames (before | after): the widest open vowel
of the sample speech, and the same portrait cut out over a green/magenta board at the frame
where the head has moved furthest (the board shows what the head drags along). Each vcam
renders in a child process from its own checkout, with the same seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent


def _render(checkout: Path, photo: Path, audio: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(n, 512, 512, 3) uint8`` of ``vcam render`` run from ``checkout``, and its
    motion ``(n, 1 + channels)`` (time, then the channels)."""
    import av

    env = {**os.environ, "PYTHONPATH": str(checkout)}
    subprocess.run([sys.executable, "-m", "vcam", "render", "--photo", str(photo), "--audio", str(audio),
                    "--out", str(out), "--seed", "1", "--no-badge", "--motion-out", str(out.with_suffix(".csv"))],
                   check=True, cwd=checkout, env=env, capture_output=True)
    with av.open(str(out)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return frames, np.loadtxt(out.with_suffix(".csv"), delimiter=",", skiprows=1)


def _board(photo: Path, out: Path) -> Path:
    """The portrait's person (as vcam enrolls it) over a 10 px green/magenta board."""
    from PIL import Image

    from vcam.avatar.enroll import enroll
    from vcam.bench.realism import board_composite

    p = enroll(photo)
    Image.fromarray(board_composite(p.image, p.person_mask)).save(out)
    return out


def main(argv: list[str]) -> int:
    from PIL import Image, ImageDraw

    from vcam import assets
    from vcam.runtime.channels import INDEX

    before, out = Path(argv[0]).resolve(), Path(argv[1])
    photos = [assets.SAMPLE_PHOTO, *assets.EXTRA_PHOTOS]
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for photo in photos:
            board = _board(photo, tmp / f"{photo.stem}-board.png")
            pair = {}
            for label, checkout in (("before", before), ("after", HERE)):
                speech = _render(checkout, photo, assets.SAMPLE_AUDIO, tmp / f"{label}.mp4")
                moved = _render(checkout, board, assets.SAMPLE_AUDIO, tmp / f"{label}-board.mp4")
                pair[label] = (speech, moved)
            # the widest jaw, and the head turned furthest, of this vcam's motion
            (speech, motion), (moved, motion_b) = pair["after"]
            k_open = int(np.argmax(motion[:, 1 + INDEX["jawOpen"]]))
            pose = motion_b[:, 1 + INDEX["headYaw"]:1 + INDEX["headRoll"] + 1]
            k_move = int(np.argmax(np.abs(pose).sum(axis=1)))
            rows.append([pair["before"][0][0][k_open], speech[k_open], pair["before"][1][0][k_move], moved[k_move]])
    head = 26
    sheet = Image.new("RGB", (4 * 512, head + 512 * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(("open vowel, before", "open vowel, after", "head moving over a sharp board, before",
                              "head moving over a sharp board, after")):
        draw.text((c * 512 + 8, 7), name, fill="black")
    for r, row in enumerate(rows):
        for c, frame in enumerate(row):
            sheet.paste(Image.fromarray(frame), (c * 512, head + r * 512))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=88)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
