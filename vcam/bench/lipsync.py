"""``vcam bench --lipsync``: lip sync measured from rendered videos.

Renders every speech clip (``*.wav`` with a ``.txt`` transcript beside it) on every
portrait with ``vcam render`` and scores each video with the project's external measuring
tools (``lipsync.py`` from the eval folder, run with their own Python as their ``setup.sh``
prints it): against the transcript's phones, force-aligned. Then the same clips with noise
under them (:data:`NOISE_SNR_DB`: pink noise and the other clips' speech), scored against
the clean clip's alignment. Then speech in other languages, made here by espeak-ng from
sentences the lip model never trained on, and a song (:data:`SONG`, espeak-ng held notes over
chords), scored against the speech's loudness (the tools' reference without a transcript).
Then the held-out bilabial sentences (:mod:`vcam.bench.lip_events`), spoken by voices the lip
model never heard. Prints one row per video and the medians of each group (:data:`GROUPS`),
then every P/B/M's closest lip gap and the false closures inside open vowels, per group.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

from vcam.runtime.errors import InputError
from vcam.bench.lip_events import score_events, summary

METRICS = ("r_open", "lag_ms", "closure", "vowel_open", "still_sil", "false_closure")

#: Other-language speech for the loudness-referenced rows: {espeak-ng voice: text}. Not in
#: the lip model's training sentences (``vcam.graphs.lipdata``).
LANGUAGES: dict[str, str] = {
    "es": "El tren de las ocho llegó tarde porque nevaba mucho en la montaña. "
          "Mis abuelos siempre cuentan historias del pueblo.",
    "ja": "きょうはとてもいいてんきですね。えきのまえにあたらしいきっさてんがひらきました。",
    "sv": "Igår promenerade vi längs stranden och såg många båtar. Kaffet på hotellet var starkt och gott.",
    "ru": "Вчера вечером мы долго гуляли по набережной. Завтра обещают тёплую и солнечную погоду.",
}


#: The noisy rows: pink noise and a babble of the other clips' speech, each 3 dB quieter than
#: this, so together this many dB below the speech's active level.
NOISE_SNR_DB = 10.0

#: The sung row: (word, MIDI note), one held note per word (Twinkle, Twinkle, Little Star,
#: public domain; a baritone's 82-139 Hz, the span espeak-ng's pitch setting reaches), over
#: chords :data:`SONG_BED_DB` below the voice.
SONG: tuple[tuple[str, int], ...] = (
    ("twinkle", 40), ("twinkle", 47), ("little", 49), ("star", 47), ("how", 45), ("I", 45), ("wonder", 44),
    ("what", 42), ("you", 42), ("are", 40), ("up", 47), ("above", 47), ("the", 45), ("world", 45), ("so", 44),
    ("high", 44), ("like", 42), ("a", 47), ("diamond", 45), ("in", 45), ("the", 44), ("sky", 42))
SONG_BED_DB = 12.0

#: Row groups and their median lines: the transcribed clips, the same with noise, and the
#: loudness-referenced rows (other languages and the song).
GROUPS: tuple[tuple[str, str], ...] = (("clean", "**median, transcripts**"),
                                       ("noisy", f"**median, transcripts + noise {NOISE_SNR_DB:g} dB**"),
                                       ("other", "**median, other languages and singing**"),
                                       ("bilabial", "**median, bilabial sentences, held-out voices**"))


@dataclass(frozen=True)
class SpeechJob:
    """One speech clip to render and score."""

    clip: str  #: the row's name
    audio: Path  #: what ``vcam render`` is given
    reference: Path  #: what the measuring tools score against (the clean speech)
    transcript: Path | None  #: None: scored against loudness
    group: str  #: one of :data:`GROUPS`


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


def _speech_jobs(media_dir: Path, languages: dict[str, str] | None, tmp: Path, rows: list[dict],
                 noisy: bool = True, song: bool = True, bilabial: bool = True) -> list[SpeechJob]:
    """Every clip of ``media_dir``, then (``noisy``) each with noise under it, the other-language
    speech, (``song``) the song and (``bilabial``) the held-out bilabial clips, the made ones
    written into ``tmp`` (a failure to speak is added to ``rows``)."""
    jobs = [SpeechJob(wav.stem, wav, wav, txt, "clean") for wav, txt in clips(media_dir)]
    if noisy and jobs:
        import numpy as np

        from vcam.runtime.audio_file import load_audio, write_wav

        speech = [load_audio(j.audio) for j in jobs]
        for k, job in enumerate(list(jobs)):
            out = tmp / f"{job.clip}+noise.wav"
            write_wav(out, mix_noise(speech[k], speech[:k] + speech[k + 1:], np.random.default_rng(k)))
            jobs.append(SpeechJob(f"{job.clip} + noise", out, job.audio, job.transcript, "noisy"))
    for lang, text in (LANGUAGES if languages is None else languages).items():
        wav = tmp / f"espeak_{lang}.wav"
        err = _speak(lang, text, wav)
        if err:
            rows.append({"clip": wav.stem, "photo": "-", "error": err})
            continue
        jobs.append(SpeechJob(wav.stem, wav, wav, None, "other"))
    if song:
        wav = tmp / "espeak_song.wav"
        err = sing(wav)
        if err:
            rows.append({"clip": wav.stem, "photo": "-", "error": err})
        else:
            jobs.append(SpeechJob(wav.stem, wav, wav, None, "other"))
    if bilabial:
        from vcam.bench.lip_events import bilabial_jobs

        jobs += bilabial_jobs(tmp, rows)
    return jobs


def active_rms(pcm):
    """RMS of ``pcm`` (``(n,) float32``) over its 20 ms frames within 40 dB of the loudest: the
    level of the speech, not of its pauses."""
    import numpy as np

    n = len(pcm) // 320
    if n == 0:
        return float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)) + 1e-20))
    power = np.mean(np.square(pcm[: n * 320].reshape(n, 320), dtype=np.float64), axis=1)
    return float(np.sqrt(np.mean(power[power >= power.max() * 1e-4]) + 1e-20))


def mix_noise(speech, others, rng):
    """``speech`` (``(n,) float32``, 16 kHz) with pink noise and a babble of ``others`` (other
    speech, each ``(m,) float32``, looped from random starts) under it, each
    ``NOISE_SNR_DB + 3`` dB below the speech's :func:`active_rms` (pink noise alone at
    ``NOISE_SNR_DB`` without ``others``). Returns ``(n,) float32``, peak at most 0.99."""
    import numpy as np

    n = len(speech)
    level = active_rms(speech)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0.0
    parts = [np.fft.irfft(spectrum, n)]
    if others:
        babble = np.zeros(n)
        for o in others:
            o = o / max(active_rms(o), 1e-9)
            babble += np.resize(np.roll(o, -int(rng.integers(0, len(o)))), n)
        parts.append(babble)
    snr_db = NOISE_SNR_DB + (10.0 * np.log10(len(parts)))
    out = speech.astype(np.float64)
    for part in parts:
        out += part * (level / max(active_rms(part), 1e-12) * 10.0 ** (-snr_db / 20.0))
    out *= min(1.0, 0.99 / max(float(np.abs(out).max()), 1e-9))
    return out.astype(np.float32)


def sing_note(word: str, note: int, rate: int = 16000):
    """espeak-ng sings ``word`` held on MIDI ``note``: slowest rate, flat intonation, and the
    pitch setting (``-p``) for the note's frequency, as measured on en-us: ``-p 40`` speaks at
    80 Hz and every 20 more multiplies that by 1.25. Returns ``(n,) float32`` at ``rate``;
    raises ``InputError`` when espeak-ng is missing or fails."""
    import math

    import numpy as np

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise InputError("espeak-ng is not installed (apt install espeak-ng)")
    hz = 440.0 * 2.0 ** ((note - 69) / 12.0)
    pitch = int(round(min(99.0, max(0.0, 40.0 + 20.0 * math.log(hz / 80.0) / math.log(1.25)))))
    ssml = f'<speak><prosody rate="x-slow" range="x-low">{word}</prosody></speak>'
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "note.wav"
        r = subprocess.run([exe, "-v", "en-us", "-m", "-p", str(pitch), "-w", str(out), ssml],
                           capture_output=True, text=True)
        if r.returncode != 0 or not out.is_file():
            raise InputError(f"espeak-ng could not sing {word!r}: {r.stderr.strip()}")
        with wave.open(str(out), "rb") as w:
            sr = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768.0
    if sr != rate:
        x = np.interp(np.arange(int(len(x) * rate / sr)) * (sr / rate), np.arange(len(x)), x)
    return x.astype(np.float32)


def sing(wav: Path, rate: int = 16000) -> str | None:
    """The song into ``wav`` (16-bit, ``rate`` Hz): :data:`SONG`'s words (:func:`sing_note`),
    60 ms apart, over a major chord on each note an octave up (sines swelling every 1.5 s),
    :data:`SONG_BED_DB` below the voice. An error line, or None."""
    import numpy as np

    voice, notes = [], []
    try:
        for word, note in SONG:
            x = sing_note(word, note, rate)
            voice += [x, np.zeros(int(0.06 * rate), np.float32)]
            notes += [note] * (len(x) + int(0.06 * rate))
    except InputError as e:
        return str(e)
    x = np.concatenate(voice).astype(np.float64)
    t = np.arange(len(x)) / rate
    root = 440.0 * 2.0 ** ((np.asarray(notes, np.float64) - 69 + 12) / 12.0)
    bed = sum(np.sin(2 * np.pi * np.cumsum(root * k) / rate) for k in (1.0, 2 ** (4 / 12), 2 ** (7 / 12)))
    bed *= 0.6 + 0.4 * np.sin(np.pi * t / 1.5) ** 2
    x = x + bed * (active_rms(x) / active_rms(bed) * 10.0 ** (-SONG_BED_DB / 20.0))
    from vcam.runtime.audio_file import write_wav

    write_wav(wav, (x * (0.7 / np.abs(x).max())).astype(np.float32), rate=rate)
    return None


def run(photos: list[Path], media_dir: Path, eval_dir: Path, *, provider: str = "cpu",
        languages: dict[str, str] | None = None, noisy: bool = True, song: bool = True,
        bilabial: bool = True) -> list[dict]:
    """Render and score every (clip, portrait); returns one dict of metrics per video.

    ``noisy`` adds each transcribed clip with noise under it, ``languages`` (default
    :data:`LANGUAGES`; ``{}`` for none) espeak-ng speech and ``song`` the song, both scored
    against loudness; rows carry their ``"group"`` (:data:`GROUPS`) and the tools'
    ``"reference"`` (``"phones"`` or ``"energy"``); ``bilabial`` adds the held-out bilabial
    clips. Rows with a transcript also carry the per-event figures
    (:func:`vcam.bench.lip_events.score_events`) and their ``"false_closure"`` share.
    """
    py = eval_python(eval_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for job in _speech_jobs(media_dir, languages, Path(tmp), rows, noisy, song, bilabial):
            for photo in photos:
                out = Path(tmp) / f"{job.audio.stem}-{photo.stem}.mp4"
                row = {"clip": job.clip, "photo": photo.stem, "group": job.group}
                err = render_video(photo, job.audio, out, provider)
                if err:
                    rows.append({**row, "error": err})
                    continue
                row.update(run_json([py, str(eval_dir / "lipsync.py"), str(out), str(job.reference)]
                                    + ([str(job.transcript)] if job.transcript else [])))
                if job.transcript and "error" not in row:
                    _add_events(row, score_events(py, eval_dir, out, job.reference, job.transcript))
                rows.append(row)
    return rows


def _add_events(row: dict, events: dict) -> None:
    """Per-event figures into ``row``, with their ``false_closure`` share (None without open vowels)."""
    if "error" in events:
        row["events_error"] = events["error"]
        return
    row.update(events)
    n = events["open_vowels"]
    row["false_closure"] = round(len(events["false_closures"]) / n, 3) if n else None


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
                languages: dict[str, str] | None = None, noisy: bool = True, song: bool = True,
                bilabial: bool = True) -> list[dict]:
    """Score the motion graph's ``jawOpen`` itself, without rendering, on the clips of :func:`run`:
    seconds instead of minutes, for comparing lip models (export one with ``export_motion
    --out DIR``, pass DIR as ``graph_dir``). The rendered lip gap follows jawOpen closely, but
    the face tracker's view of it costs r_open about 0.03 (``vcam bench --lipsync``)."""
    import numpy as np

    from vcam.runtime.channels import INDEX
    from vcam.runtime.audio_file import load_audio
    from vcam.app.render_job import motion_track

    py = eval_python(eval_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for job in _speech_jobs(media_dir, languages, Path(tmp), rows, noisy, song, bilabial):
            track = Path(tmp) / f"{job.audio.stem}.npy"
            np.save(track, motion_track(load_audio(job.audio), fps=fps, graph_dir=graph_dir)[:, INDEX["jawOpen"]])
            row = {"clip": job.clip, "photo": "(jawOpen)", "group": job.group,
                   **run_json([py, "-c", _SCORE_TRACK, str(eval_dir), str(track), str(fps), str(job.reference)]
                              + ([str(job.transcript)] if job.transcript else []))}
            if job.transcript and "error" not in row:
                _add_events(row, score_events(py, eval_dir, track, job.reference, job.transcript, fps))
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: one row per video, then the medians of each of :data:`GROUPS` (rows without a
    group: by their reference, phones or loudness)."""
    head = "| speech | portrait | " + " | ".join(METRICS) + " |"
    lines = [head, "|---|---|" + "---:|" * len(METRICS)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['clip']} | {r['photo']} | {r['error']} |" + " |" * (len(METRICS) - 1))
            continue
        lines.append(f"| {r['clip']} | {r['photo']} | " + " | ".join(_fmt(r.get(m)) for m in METRICS) + " |")
    for name, label in GROUPS:
        group = [r for r in rows if "error" not in r and _group(r) == name]
        if not group:
            continue
        med = []
        for m in METRICS:
            vals = [r[m] for r in group if r.get(m) is not None]
            med.append(_fmt(statistics.median(vals)) if vals else "-")
        lines.append(f"| {label} | | " + " | ".join(med) + " |")
    events = summary(rows)
    return "\n".join(lines) + ("\n\n" + events if events.count("\n") > 1 else "")


def _group(row: dict) -> str:
    return row.get("group") or ("clean" if row.get("reference", "phones") == "phones" else "other")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
