"""``vcam bench --realism``: teeth, the head's edge, framing and head motion, from rendered videos.

What lip sync and liveness do not see, measured as the maintainers measure it (issue 18): each
portrait, and variants of it made here (darker skin, sepia, a cool cast; no photo of a new
person is needed to vary the light and palette), is rendered speaking the development speech
joined into one clip; the project's external measuring tools (run with their own Python, as
:mod:`vcam.bench.lipsync` does) then score

* ``realism.py teeth``: in open-mouth frames, the brightest quarter of the mouth (the teeth)
  against the cheeks in CIELAB L* (real talking-face videos: +16..+22) and the mouth's L*
  spread (real: 30-33);
* ``realism.py halo``: the portrait cut out over a green/magenta board (``realism.py
  keyboard``), rendered: board pixels beyond 12 px of the frame-0 silhouette that stop
  looking like the board as the head moves, per 1000 face pixels (a re-encoded still: 0.3);
* ``liveness.py``: head roll spread (real: 1.4-3.4 degrees) and jerk;

and, from the enrolled portrait itself, the share of the frame past the photo's edge
(``padding``; the frame is filled there). The table ends with the medians over portraits.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from vcam.bench.expressions import joined_speech
from vcam.bench.lipsync import eval_python, render_video, run_json

#: Variants made of each colour portrait: (suffix, CIELAB L* scale, a* shift, b* shift, L* shift).
VARIANTS = (("darker", 0.55, 4.0, 6.0, 0.0), ("cool", 1.0, -6.0, -14.0, 8.0))
_SEEDED = ("--seed", "0", "--no-badge")
COLUMNS = (("teeth_minus_skin_L", "teeth − cheeks L*"), ("mouth_L_spread", "mouth L* spread"),
           ("halo_px_per_1000_face", "halo /1000"), ("roll_std_deg", "roll °"), ("jerk", "jerk"),
           ("padding", "padding"))


def variants(photo: Path, tmp: Path) -> list[Path]:
    """``photo`` and, if it is in colour, :data:`VARIANTS` of it and a sepia print, as PNGs in ``tmp``."""
    import cv2

    bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if bgr is None:
        return [photo]
    sat = float(np.mean(bgr.max(axis=2).astype(np.int16) - bgr.min(axis=2)))
    if sat < 8.0:  # a greyscale photo: its variants would be colour casts, not other people
        return [photo]
    out = [photo]
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
    for name, scale, da, db, dl in VARIANTS:
        v = lab.copy()
        v[..., 0] = v[..., 0] * scale + dl * 2.55
        v[..., 1] += da
        v[..., 2] += db
        path = tmp / f"{photo.stem}-{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(np.clip(v, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR))
        out.append(path)
    grey = bgr.astype(np.float32).mean(axis=2, keepdims=True)
    path = tmp / f"{photo.stem}-sepia.png"
    cv2.imwrite(str(path), np.clip(grey * np.array([0.75, 0.95, 1.12], np.float32), 0, 255).astype(np.uint8))
    out.append(path)
    return out


def board_composite(image: np.ndarray, person_mask: np.ndarray) -> np.ndarray:
    """``(S, S, 3) uint8``: the person of ``image`` ``(S, S, 3) uint8`` (``person_mask`` ``(S, S)``
    float 0..1 above 0.5, its edge softened over 3 px) over a 10 px green/magenta board, the
    sharp background whose truth is known everywhere (as ``realism.py keyboard`` makes it)."""
    import cv2

    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    board = np.where(((yy // 10 + xx // 10) % 2 == 1)[..., None], [0, 200, 0], [200, 0, 200]).astype(np.float32)
    a = cv2.GaussianBlur((person_mask > 0.5).astype(np.float32), (3, 3), 0)[..., None]
    return (image * a + board * (1 - a)).astype(np.uint8)


def is_board(rgb: np.ndarray) -> np.ndarray:
    """``(H, W) bool``: the pixels of ``rgb`` ``(H, W, 3) uint8`` that still look like the board."""
    r, g, b = (rgb[..., i].astype(np.int16) for i in range(3))
    return ((g > 110) & (r < 90) & (b < 90)) | ((r > 110) & (b > 110) & (g < 90))


def padding_share(photo: Path) -> float:
    """The share of the enrolled frame past the photo's edge (0: the photo fills the frame)."""
    from vcam.avatar.enroll import enroll

    return round(float(1.0 - enroll(photo).valid.mean()), 4)


def run(photos: list[Path], media_dir: Path, eval_dir: Path, *, provider: str = "cpu") -> list[dict]:
    """Render and score every portrait and its variants; one row per portrait."""
    py = eval_python(eval_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        speech, _ = joined_speech(media_dir, tmp)
        for photo in [v for p in photos for v in variants(p, tmp)]:
            row: dict = {"photo": photo.stem, "padding": padding_share(photo)}
            video = tmp / f"{photo.stem}.mp4"
            err = render_video(photo, speech, video, provider, *_SEEDED)
            if err:
                rows.append({**row, "error": err.splitlines()[-1]})
                continue
            row.update(run_json([py, str(eval_dir / "realism.py"), "teeth", str(video)]))
            live = run_json([py, str(eval_dir / "liveness.py"), str(video), "--json"])
            row.update({k: live.get(k) for k in ("roll_std_deg", "jerk")})
            board, board_video = tmp / f"{photo.stem}-board.png", tmp / f"{photo.stem}-board.mp4"
            made = run_json([py, str(eval_dir / "realism.py"), "keyboard", str(photo), str(board)])
            if board.is_file() and not render_video(board, speech, board_video, provider, *_SEEDED):
                row.update(run_json([py, str(eval_dir / "realism.py"), "halo", str(board_video)]))
            else:
                row.setdefault("error", made.get("error", "the board composite did not render"))
            rows.append(row)
    return rows


def medians(rows: list[dict]) -> dict:
    """``{column: median over the rows that have it}``."""
    out = {}
    for key, _ in COLUMNS:
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        out[key] = round(float(np.median(vals)), 3) if vals else None
    return out


def table(rows: list[dict]) -> str:
    """Markdown: one row per portrait, then the medians."""
    lines = ["| portrait | " + " | ".join(label for _, label in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for r in rows:
        cells = [_fmt(r.get(k)) for k, _ in COLUMNS]
        if "error" in r:
            cells[-1] += f" ({r['error']})"
        lines.append(f"| {r['photo']} | " + " | ".join(cells) + " |")
    med = medians(rows)
    lines.append("| **median** | " + " | ".join(_fmt(med[k]) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
