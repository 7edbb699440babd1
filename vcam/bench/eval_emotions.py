"""Emotion effect sizes from rendered videos: a script run with the measuring tools' Python.

usage: python eval_emotions.py EVAL_DIR NEUTRAL.mp4 EMOTION=VIDEO.mp4 ... -> JSON on stdout

Not imported by vcam: ``vcam bench --expressions`` runs it with the interpreter that the
eval folder's ``setup.sh`` prints, so the face measures are exactly the eval tools'
(``facemeasure.py``). For each emotion it prints the change of that emotion's measure from
the neutral clip (medians over the frames after the first second) and that change in units
of the neutral clip's frame-to-frame noise (the standard deviation of its first differences,
blinks and head motion included), signed so that positive is the expected direction.
"""

import json
import sys

import numpy as np

#: {emotion: (measure, expected sign)}: the measure each emotion must move, and which way.
TARGETS = {"happy": ("corner_lift", +1), "sad": ("corner_lift", -1),
           "surprised": ("brow", +1), "angry": ("brow_gap", -1)}
SKIP_S = 1.0


def series(fm, path):
    """{measure: (n,) float64} over the frames after SKIP_S (NaN where no face was found)."""
    frames, fps = fm.read_video(path)
    rows = fm.track(frames[int(round(SKIP_S * (fps or 25.0))):])
    out = {k: [] for k in ("corner_lift", "brow", "brow_gap")}
    for f in rows:
        if f is None:
            for v in out.values():
                v.append(np.nan)
            continue
        out["corner_lift"].append(f["corner_lift"])
        out["brow"].append((f["brow_l"] + f["brow_r"]) / 2)
        out["brow_gap"].append(f["brow_gap"])
    return {k: np.array(v, np.float64) for k, v in out.items()}


def main(argv):
    sys.path.insert(0, argv[1])
    import facemeasure as fm

    neutral = series(fm, argv[2])
    result = {}
    for arg in argv[3:]:
        emotion, path = arg.split("=", 1)
        measure, sign = TARGETS[emotion]
        base = neutral[measure]
        noise = float(np.nanstd(np.diff(base)))
        delta = float(np.nanmedian(series(fm, path)[measure]) - np.nanmedian(base))
        result[emotion] = {"measure": measure, "delta": round(delta, 5), "noise": round(noise, 5),
                           "x_noise": round(sign * delta / noise, 2) if noise > 0 else None}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
