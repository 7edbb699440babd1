"""``vcam bench --provenance``: does vcam's watermark survive, stay invisible and cost little?

* **Survival.** Each portrait (the bundled ones, and each turned into a flat "illustration":
  median-filtered and posterised, the mark's hardest case, as flat areas carry the least of
  it) is rendered speaking the sample speech with ``vcam render``; each video is transformed
  with ffmpeg as a call or an upload would (:data:`TRANSFORMS`) and checked with
  ``vcam.provenance.verify``. A row per portrait and transformation: found, key A's z-score
  (6.5 counts as found), payload read.
* **False positives.** Media vcam did not make (:func:`negatives`): the portrait photos, each
  also as a JPEG and at half size, the flat illustrations, and "camera footage" made from the
  photos (a slow zoom and pan with sensor noise, H.264), also at 360 lines.
* **Invisibility and cost.** PSNR of each portrait's marked frame against the unmarked one;
  what marking costs (nothing per frame: the mark is in the portrait's tensors; the one-off
  set-up per portrait); ``vcam verify``'s time against each video's duration.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from vcam.runtime.errors import InputError

#: {name: (ffmpeg output options, file suffix)}; ``cut`` drops 2 s from the middle.
TRANSFORMS: dict[str, tuple[list[str], str]] = {
    "h264 400 kbps": (["-c:v", "libx264", "-b:v", "400k", "-maxrate", "400k", "-bufsize", "800k"], ".mp4"),
    "h264 crf 32": (["-c:v", "libx264", "-crf", "32"], ".mp4"),
    "360p": (["-vf", "scale=-2:360", "-c:v", "libx264", "-crf", "23"], ".mp4"),
    "letterbox 16:9 720p": (["-vf", "scale=-2:720,pad=1280:720:(ow-iw)/2:0", "-c:v", "libx264", "-crf", "23"], ".mp4"),
    "crop 20 %": (["-vf", "crop=iw*0.8:ih*0.8:iw*0.15:ih*0.05", "-c:v", "libx264", "-crf", "23"], ".mp4"),
    "crop 20 %, scaled back to 512": (["-vf", "crop=iw*0.8:ih*0.8,scale=512:512", "-c:v", "libx264", "-crf", "23"],
                                      ".mp4"),
    "240p": (["-vf", "scale=-2:240", "-c:v", "libx264", "-crf", "23"], ".mp4"),
    "cut 2 s from the middle": (["-vf", "select='not(between(t,3,5))',setpts=N/FRAME_RATE/TB",
                                 "-af", "aselect='not(between(t,3,5))',asetpts=N/SR/TB",
                                 "-c:v", "libx264", "-crf", "23"], ".mp4"),
    "one frame as PNG": (["-vf", "select=eq(n\\,100)", "-frames:v", "1"], ".png"),
    "360p + 400 kbps": (["-vf", "scale=-2:360", "-c:v", "libx264", "-b:v", "400k", "-maxrate", "400k",
                         "-bufsize", "800k"], ".mp4"),
    "crop 20 % + crf 32": (["-vf", "crop=iw*0.8:ih*0.8:iw*0.15:ih*0.05", "-c:v", "libx264", "-crf", "32"], ".mp4"),
}


#: Rows beyond the issue's list: two transformations at once, as a stress test.
STRESS = ("360p + 400 kbps", "crop 20 % + crf 32")


def _ffmpeg(*args: str) -> None:
    if shutil.which("ffmpeg") is None:
        raise InputError("vcam bench --provenance needs the ffmpeg command (Debian: apt install ffmpeg)")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True, timeout=600)


def flatten(photo: Path, out: Path) -> Path:
    """``photo`` as a flat illustration: median-filtered, 12 colours, smoothed; saved to ``out``."""
    from PIL import Image, ImageFilter

    with Image.open(photo) as im:
        im = im.convert("RGB").filter(ImageFilter.MedianFilter(9)).filter(ImageFilter.MedianFilter(7))
        im = im.quantize(12, method=Image.Quantize.MEDIANCUT).convert("RGB").filter(ImageFilter.SMOOTH_MORE)
        im.save(out)
    return out


def camera_clip(photo: Path, out: Path, *, height: int | None = None) -> Path:
    """Three seconds of "camera footage" of ``photo``: a slow zoom and pan, sensor noise, H.264."""
    scale = f",scale=-2:{height}" if height else ""
    _ffmpeg("-loop", "1", "-i", str(photo), "-t", "3", "-vf",
            "scale=1024:-2,zoompan=z='1+0.002*on':x='iw/2-(iw/zoom/2)+on':y='ih/2-(ih/zoom/2)':d=75:s=640x480,"
            f"noise=alls=6:allf=t{scale}", "-r", "25", "-c:v", "libx264", "-crf", "23", str(out))
    return out


def negatives(photos: list[Path], work: Path) -> list[Path]:
    """Pictures and videos vcam did not make, written into ``work`` where made here."""
    from PIL import Image

    out: list[Path] = []
    for i, photo in enumerate(photos):
        out.append(photo)
        jpg = work / f"neg_{i}_{photo.stem}.jpg"
        half = work / f"neg_{i}_{photo.stem}_half.png"
        with Image.open(photo) as im:
            im = im.convert("RGB")
            im.save(jpg, quality=75)
            im.resize((im.width // 2, im.height // 2), Image.LANCZOS).save(half)
        out += [jpg, half]
    for i, photo in enumerate(photos[:3]):
        out.append(flatten(photo, work / f"neg_flat_{i}.png"))
        out.append(camera_clip(photo, work / f"neg_camera_{i}.mp4"))
        out.append(camera_clip(photo, work / f"neg_camera_{i}_360p.mp4", height=360))
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-12))


def marking_cost_ms(avatar, *, provider: str = "cpu", frames: int = 200) -> dict[str, float]:
    """What the mark costs: once per portrait (``RenderStage.set_avatar``: the expression probes
    and the pattern, added to the portrait's tensors) and per frame (none: the frame path is the
    graph and one copy, as before the mark; its time is given for scale)."""
    from vcam.runtime.channels import N_MOTION
    from vcam.runtime.render import RenderStage

    with RenderStage(avatar, provider=provider) as stage:
        setups = []
        for _ in range(3):
            t0 = time.perf_counter_ns()
            stage.set_avatar(avatar)
            setups.append(time.perf_counter_ns() - t0)
        motion = np.zeros(N_MOTION, np.float32)
        times = []
        for _ in range(frames):
            t0 = time.perf_counter_ns()
            stage.render(motion)
            times.append(time.perf_counter_ns() - t0)
    return {"marking per frame": 0.0, "render stage per frame (graph + copy)": statistics.median(times) / 1e6,
            "set a portrait (probes + mark), once": statistics.median(setups) / 1e6}


def run(photos: list[Path], speech: Path, *, provider: str = "cpu") -> dict:
    """Render, transform and check; returns ``{"rows", "negatives", "psnr", "cost_ms", "verify"}``."""
    from vcam.runtime.render import RenderStage
    from vcam.avatar.build import load_avatar
    from vcam.provenance.verify import verify_file
    from vcam.app.render_job import render_file
    from vcam.app.settings import load_settings

    settings = load_settings()
    result: dict = {"rows": [], "negatives": [], "psnr": {}, "cost_ms": marking_cost_ms(load_avatar(photos[0]),
                                                                                       provider=provider),
                    "verify": []}
    with tempfile.TemporaryDirectory(prefix="vcam-provenance-") as tmp:
        work = Path(tmp)
        portraits = list(photos) + [flatten(p, work / f"illustration_{p.stem}.png") for p in photos[:2]]
        for photo in portraits:
            label = photo.stem
            avatar = load_avatar(photo)
            with RenderStage(avatar, provider=provider) as stage:
                result["psnr"][label] = round(_psnr(stage.frame, avatar.still), 2)
            video = work / f"{label}.mp4"
            render_file(photo, speech, video, settings=settings, emotion="neutral", intensity=0.8, fps=25, seed=0,
                        provider=provider)
            for name, (args, suffix) in {"as rendered": ([], ".mp4"), **TRANSFORMS}.items():
                target = video
                if args:
                    target = work / f"{label}_{len(result['rows'])}{suffix}"
                    _ffmpeg("-i", str(video), *args, str(target))
                t0 = time.perf_counter()
                verdict = verify_file(target)
                spent = time.perf_counter() - t0
                d = verdict.detection
                result["rows"].append({"portrait": label, "transform": name, "found": d.found,
                                       "z": round(d.z, 1), "payload": d.payload is not None,
                                       "scale": round(d.scale, 3)})
                if verdict.kind == "video":
                    duration = _duration_s(target)
                    result["verify"].append({"file": target.name, "seconds": round(spent, 2),
                                             "duration_s": round(duration, 2),
                                             "share": round(spent / duration, 3)})
        for item in negatives(photos, work):
            verdict = verify_file(item)
            result["negatives"].append({"file": item.name, "kind": verdict.kind, "found": verdict.made_by_vcam,
                                        "z": round(verdict.detection.z, 1)})
    return result


def _duration_s(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        return float(c.duration or 0) / 1e6


def table(result: dict, machine: str) -> str:
    """Markdown tables: survival per transformation, false positives, PSNR and cost."""
    rows = result["rows"]
    portraits = list(dict.fromkeys(r["portrait"] for r in rows))
    transforms = list(dict.fromkeys(r["transform"] for r in rows))
    cell = {(r["portrait"], r["transform"]): r for r in rows}
    short = [p.replace("_", " ")[:28] for p in portraits]
    out = [f"Machine: {machine}", "",
           "| transformation | " + " | ".join(short) + " | found |",
           "|---|" + "---:|" * len(portraits) + "---:|"]
    for t in transforms:
        cells = []
        for p in portraits:
            r = cell[(p, t)]
            cells.append(f"{r['z']:.1f}" + ("" if r["found"] else " ✗") + ("" if r["payload"] or not r["found"] else " (no payload)"))
        found = sum(cell[(p, t)]["found"] for p in portraits)
        out.append(f"| {t} | " + " | ".join(cells) + f" | {found}/{len(portraits)} |")
    neg = result["negatives"]
    flagged = [n for n in neg if n["found"]]
    out += ["", f"False positives: {len(flagged)} of {len(neg)} pictures and videos vcam did not make "
                f"(highest z {max(n['z'] for n in neg):.1f}; 6.5 counts as found)."]
    out += ["", "| portrait | PSNR dB |", "|---|---:|"]
    out += [f"| {p.replace('_', ' ')} | {v:.1f} |" for p, v in result["psnr"].items()]
    cost = result["cost_ms"]
    out += ["", "| cost | ms (median) |", "|---|---:|"]
    out += [f"| {k} | {v:.3f} |" for k, v in cost.items()]
    shares = [v["share"] for v in result["verify"]]
    if shares:
        out += ["", f"`vcam verify` on the videos: {statistics.median(shares):.3f} of the video's duration "
                    f"(median; at most {max(shares):.3f})."]
    return "\n".join(out)
