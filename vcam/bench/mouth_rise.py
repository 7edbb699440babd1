"""``vcam bench --mouth-rise``: how long after a voice starts the drawn mouth is half open, per voice.

The virtual microphone delays the voice by the engine's latency plus this rise, which the engine
measures live (:class:`vcam.runtime.mouth_rise.MouthRiseMeter`). This bench shows, offline and without
rendering, what the meter reports on varied speech and whether it reports the right thing:

* the speech: the development clips, the same with noise under them, espeak-ng in four other
  languages, a sung song (as ``vcam bench --lipsync``) and Flite's English voices;
* each clip is stepped through the motion graph exactly as the live engine steps it (audio in
  3.3 ms blocks, the newest window at every frame of ``fps``), with the meter watching:
  **as is** (the clip's own pauses) and as the **burst track** of ``vcam bench --av-sync``
  (350 ms from each onset after a pause, 1.3-1.4 s of silence apart);
* **known**: on the burst track, the same half-open rule applied from the bursts' true starts,
  so ``meter - known`` is the meter's own error;
* the mouth is seen as a face tracker sees it on one portrait (``--photo``, default the
  sample: its :mod:`vcam.avatar.mouth_view`), as the live engine sees it.

The median of the "as is" column over the clips is the meter's prior
(:data:`vcam.runtime.mouth_rise.PRIOR_MS`), used before a session has seen enough onsets.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

FLITE_VOICES = ("kal", "awb", "rms", "slt")
FLITE_TEXT = ("The museum opens at nine. Bring a map, because the paths behind the old mill are "
              "easy to lose. After lunch we will walk back by the river.")
BLOCK = 53  # samples at 16 kHz: the capture's 3.3 ms blocks


def stepped(pcm16: np.ndarray, fps: int, *, seed: int = 0, view: np.ndarray | None = None):
    """Step the motion graph over ``pcm16`` (``(n,) float32``, 16 kHz) as the live engine does,
    with the meter seeing the mouth through ``view`` (a portrait's ``mouth_view``, or None);
    returns ``(meter, t (F,) int64 stream samples of each frame, openness (F,) float32)``
    (the openness as drawn, without the view)."""
    from vcam.runtime.channels import N_BLENDSHAPES
    from vcam.runtime.features import SAMPLE_RATE, LogMelStream
    from vcam.runtime.motion import MotionStage
    from vcam.runtime.mouth_rise import MouthRiseMeter, openness

    neutral = np.zeros(N_BLENDSHAPES, np.float32)
    n_frames = int(pcm16.shape[0] * fps // SAMPLE_RATE)
    t = np.zeros(n_frames, np.int64)
    o = np.zeros(n_frames, np.float32)
    with MotionStage(fps=fps, seed=seed, provider="cpu") as stage:
        feats = LogMelStream(capacity=512)
        meter = MouthRiseMeter(feats, lookahead_ms=stage.lookahead_ms)
        meter.set_view(view)
        look = int(round(stage.lookahead_ms * SAMPLE_RATE / 1000.0))
        win = stage.mel_buffer
        pos = 0
        for i in range(n_frames):
            end = (i + 1) * SAMPLE_RATE // fps
            while pos < end:
                feats.push(pcm16[pos:min(pos + BLOCK, end)])
                pos = min(pos + BLOCK, end)
            feats.window(feats.frames - 1, win)
            m = stage.step(win, neutral, 1.0 / fps)
            meter.observe(m)
            t[i], o[i] = feats.samples - look, openness(m)
    return meter, t, o


def known_rise_ms(t: np.ndarray, o: np.ndarray, onsets: list[int], view: np.ndarray | None = None) -> list[float]:
    """The half-open rule from known onsets (stream samples): per onset, the first frame past
    halfway from rest (mean, 600..150 ms before) to open (max, 150 ms before to 250 ms after),
    the openness ``o`` seen through ``view`` when given."""
    from vcam.runtime.features import SAMPLE_RATE
    from vcam.runtime.mouth_rise import MIN_OPEN, OPEN_MS, REST_MS

    if view is not None:
        o = np.interp(o, view[0], view[1]).astype(np.float32)
    out = []
    for on in onsets:
        rel = (t - on) * 1000.0 / SAMPLE_RATE
        rest = o[(rel >= REST_MS[0]) & (rel <= REST_MS[1])]
        win = (rel > OPEN_MS[0]) & (rel <= OPEN_MS[1])
        if rest.size < 2 or not win.any():
            continue
        r0, r1 = float(rest.mean()), float(o[win].max())
        if r1 - r0 < MIN_OPEN:
            continue
        out.append(float(rel[np.nonzero(win & (o >= 0.5 * (r0 + r1)))[0][0]]))
    return out


def clips(media_dir: Path, tmp: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """``([(name, wav)], errors)``: the lip-sync bench's speech plus Flite's voices."""
    from vcam.bench.lipsync import _speech_jobs

    rows: list[dict] = []
    out = [(job.clip, Path(job.audio)) for job in _speech_jobs(media_dir, None, tmp, rows)]
    errors = [f"{r['clip']}: {r['error']}" for r in rows]
    exe = shutil.which("flite")
    for voice in FLITE_VOICES:
        wav = tmp / f"flite_{voice}.wav"
        if exe is None:
            errors.append(f"flite_{voice}: flite is not installed (apt install flite)")
            continue
        r = subprocess.run([exe, "-voice", voice, "-t", FLITE_TEXT, "-o", str(wav)], capture_output=True, text=True)
        if r.returncode == 0 and wav.is_file():
            out.append((wav.stem, wav))
        else:
            errors.append(f"flite_{voice}: {r.stderr.strip()[-200:]}")
    return out, errors


def run(media_dir: Path, photo: Path, *, fps: int = 30) -> dict:
    """Every clip: the meter as is and on the burst track, and the known-onset rule, the mouth
    seen as a face tracker sees it on ``photo`` (its ``mouth_view``)."""
    from vcam.runtime.errors import InputError, VcamError

    try:
        from scipy.signal import resample_poly
    except ImportError:
        raise VcamError("bench --mouth-rise needs scipy: pip install 'vcam-portrait[bench]'") from None
    from vcam.runtime.audio_file import load_audio
    from vcam.avatar.build import load_avatar
    from vcam.bench.avsync import PHASE_JITTER_S, onset_bursts
    from vcam.bench.live import RATE, burst_track

    if not Path(media_dir).is_dir():
        raise InputError(f"bench --mouth-rise: {media_dir} is not a folder; give the speech clips' folder "
                         "with --media DIR")
    view = load_avatar(photo, mouth_view=True).mouth_view
    rows = []
    with tempfile.TemporaryDirectory(prefix="vcam-rise-") as tmp:
        made, errors = clips(media_dir, Path(tmp))
        for name, wav in made:
            row: dict = {"clip": name}
            meter, _, _ = stepped(load_audio(wav), fps, view=view)
            row.update(as_is_ms=_r(meter), as_is_onsets=meter.measured)
            try:
                bursts = onset_bursts(12, wav)
            except InputError:
                rows.append(row)
                continue
            track, at = burst_track(bursts, jitter_s=PHASE_JITTER_S)
            meter, t, o = stepped(resample_poly(track, 1, RATE // 16000).astype(np.float32), fps, view=view)
            known = known_rise_ms(t, o, [a * 16000 // RATE for a in at], view)
            row.update(track_ms=_r(meter), track_onsets=meter.measured,
                       known_ms=round(float(np.median(known)), 1) if known else None)
            rows.append(row)
    as_is = [r["as_is_ms"] for r in rows if r.get("as_is_onsets", 0) >= 3]
    return {"fps": fps, "photo": Path(photo).name, "rows": rows, "errors": errors,
            "median_as_is_ms": round(float(np.median(as_is)), 1) if as_is else None}


def _r(meter) -> float | None:
    from vcam.runtime.mouth_rise import MIN_ONSETS

    return round(meter.rise_ms, 1) if meter.measured >= MIN_ONSETS else None


def table(result: dict, machine: str) -> str:
    def f(v):
        return "-" if v is None else f"{v:+.1f}" if isinstance(v, float) else str(v)

    lines = [f"Machine: {machine}; {result['fps']} fps; portrait {result['photo']}", "",
             "| speech | as is: rise ms (onsets) | burst track: rise ms (onsets) | known onsets: rise ms |",
             "|---|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['clip']} | {f(r.get('as_is_ms'))} ({r.get('as_is_onsets', 0)}) | "
                     f"{f(r.get('track_ms'))} ({r.get('track_onsets', 0)}) | {f(r.get('known_ms'))} |")
    lines.append(f"| **median, as is** | {f(result['median_as_is_ms'])} | | |")
    lines += [f"- {e}" for e in result["errors"]]
    return "\n".join(lines)
