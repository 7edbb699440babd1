"""``vcam bench --av-sync``: is the voice on vcam's microphone in step with the lips on its camera?

Measured from outside the daemon, as a call app sees it:

* a PulseAudio/PipeWire null sink stands in for the speakers; the daemon runs as its own
  process, ``vcam run --audio <that sink's monitor> --output -``, with its virtual microphone
  on (a benchmark name, so a running vcam is not disturbed);
* this process plays speech bursts (350 ms from each place where the bundled clip's speech
  starts after a pause, each after 1.3-1.4 s of silence, so they meet the frame clock at every phase) into the sink;
* a recorder process records the virtual microphone at 48 kHz; each recorded sample gets a
  time from PortAudio's capture timestamps (``inputBufferAdcTime``, on ``monotonic_ns``;
  the median over the steady part of the recording, so one late callback does not move it);
* the burst's onset on the microphone is found by cross-correlating the recording with
  the burst that was played (the correlation at the best lag is also the glitch check: a
  drop-out or a click in the microphone lowers it);
* the frames on the daemon's stdout are stamped on arrival; MediaPipe's face mesh gives each
  one the inner-lip gap (landmarks 13-14 over the outer eye corners 33-263, as
  ``../shared/eval``). The mouth "opens" at the first frame whose gap passes halfway from its
  rest value (150-600 ms before the onset) to its open value (the largest gap from 150 ms
  before to 250 ms after the onset: the onset's own syllable; a burst is 350 ms of running
  speech, and a later syllable may open the mouth wider);
* offset = that frame's arrival - the burst's onset on the microphone. Positive: the lips
  come after the voice.

Run once at the start and once after ``minutes`` of running (the sample clip plays on a loop
in between, so the daemon works as in a call and any clock drift builds up).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from vcam.runtime.errors import DeviceError, InputError
from vcam.bench.live import BURST_S, RATE, _daemon_status, _pactl, burst_track, play_into, stop_daemon

MIC_NAME = "vcam_bench_mic"
REST_MS = (-600.0, -150.0)  # rest window around the microphone onset
PHASE_JITTER_S = 0.1
"""Up to this much more silence before each burst: the bursts meet the frame clock at every
phase (with a fixed spacing of 1.65 s, 49.5 frames at 30 fps, they alternated between two
phases, and a run's median depended on which two)."""
START_FRAC = 1e-3
"""A frame within 30 dB of the speech's loud level (its 95th percentile), and 6 dB above the
pause before it, has sound in it."""
SEARCH_MS = (-150.0, 250.0)
"""Where the crossing is looked for, and the open value taken: the onset's own syllable (a
burst is 350 ms of running speech, and a later syllable may open the mouth wider)."""

_RECORDER = r"""
import os, sys, time
import numpy as np
import sounddevice as sd
rate, seconds, out, source = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
buf = np.zeros(int(rate * (seconds + 5)), np.float32)
info = np.zeros((int(seconds * rate / 240) + 2000, 3), np.int64)
k = [0, 0]
def callback(indata, frames, t, status):
    n, i = k
    m = min(frames, buf.shape[0] - n)
    buf[n:n + m] = indata[:m, 0]
    if i < info.shape[0]:
        info[i] = (n, time.monotonic_ns() - int((t.currentTime - t.inputBufferAdcTime) * 1e9), bool(status))
    k[0], k[1] = n + m, i + 1
os.environ["PULSE_SOURCE"] = source
with sd.InputStream(device="pulse", samplerate=rate, channels=1, dtype="float32", blocksize=240,
                    latency="low", callback=callback):
    sys.stdout.write("recording\n"); sys.stdout.flush()
    time.sleep(seconds)
np.savez(out, x=buf[:k[0]], info=info[:min(k[1], info.shape[0])])
"""


def onset_starts(pcm: np.ndarray) -> list[int]:
    """Where speech ``(n,) float32`` at ``RATE`` begins after a pause (samples): at least 100 ms
    quiet (10 ms frames under 5 % of the loud level, the 95th percentile of their power), then
    50 ms loud (over 20 %). Each start is where the sound rises out of that pause: the first of
    the frames before the loud ones (at most 60 ms back) within 30 dB of the loud level and
    6 dB above the pause's own level (a noise floor is not the voice)."""
    hop = RATE // 100
    energy = np.array([float(np.mean(pcm[i:i + hop] ** 2)) for i in range(0, len(pcm) - hop, hop)])
    if energy.size == 0:
        return []
    top = float(np.percentile(energy, 95))
    quiet, loud = energy < 0.05 * top, energy > 0.2 * top
    starts = []
    for i in range(10, len(energy) - 5):
        if quiet[i - 10:i].all() and loud[i:i + 5].all():
            floor = max(START_FRAC * top, 4.0 * float(np.median(energy[i - 10:i])))
            j = i
            while j > i - 6 and energy[j - 1] > floor:
                j -= 1
            starts.append(j * hop)
    return starts


def onset_bursts(n: int, audio=None) -> list[np.ndarray]:
    """``n`` bursts ``(BURST_S * RATE,) float32`` that each begin at one of :func:`onset_starts`
    of the sample clip's speech (``audio``, default the sample clip): real onsets, so the mouth
    has a reason to open at the onset (a cut from the middle of a word may begin as the mouth
    closes). The clip has a few; they repeat. 5 ms fades, normalised to a 0.5 peak."""
    from vcam import assets
    from vcam.runtime.audio_file import load_audio

    pcm = load_audio(audio or assets.SAMPLE_AUDIO, rate=RATE)
    length = int(BURST_S * RATE)
    starts = [s for s in onset_starts(pcm) if s + length <= pcm.shape[0]]
    if not starts:
        raise InputError(f"bench --av-sync: {audio or assets.SAMPLE_AUDIO} has no speech onset after a pause; "
                         "give a recording with pauses between phrases")
    fade = np.linspace(0.0, 1.0, RATE // 200, dtype=np.float32)
    bursts = []
    for k in range(n):
        b = pcm[starts[k % len(starts)]:][:length].copy()
        b[: fade.shape[0]] *= fade
        b[-fade.shape[0]:] *= fade[::-1]
        bursts.append(b * (0.5 / max(1e-6, float(np.abs(b).max()))))
    return bursts


class _FrameKeeper(threading.Thread):
    """Reads 512x512 I420 Y4M frames; stamps each on arrival; keeps only those inside ``windows``
    (``[(t0_ns, t1_ns)]``, appended while it runs) as ``(512, 512) uint8`` luma plus chroma."""

    def __init__(self, stream) -> None:
        super().__init__(name="bench-avsync-y4m", daemon=True)
        self.stream = stream
        self.windows: list[tuple[int, int]] = []
        self.kept: list[tuple[int, bytes]] = []
        self.count = 0
        self.t_first = 0
        self.t_last = 0

    def run(self) -> None:
        s = self.stream
        s.readline()
        size = 512 * 512 * 3 // 2
        while True:
            tag = s.readline()
            if not tag.startswith(b"FRAME"):
                return
            data = s.read(size)
            if len(data) < size:
                return
            t = time.monotonic_ns()
            self.count += 1
            self.t_first = self.t_first or t
            self.t_last = t
            if any(a <= t <= b for a, b in self.windows):
                self.kept.append((t, data))


def _i420_rgb(data: bytes) -> np.ndarray:
    """``(512, 512, 3) uint8`` RGB of one I420 frame (BT.601 limited range, as vcam writes)."""
    y = np.frombuffer(data, np.uint8, 512 * 512).reshape(512, 512).astype(np.float32)
    u = np.frombuffer(data, np.uint8, 256 * 256, 512 * 512).reshape(256, 256).astype(np.float32)
    v = np.frombuffer(data, np.uint8, 256 * 256, 512 * 512 + 256 * 256).reshape(256, 256).astype(np.float32)
    u = u.repeat(2, 0).repeat(2, 1) - 128.0
    v = v.repeat(2, 0).repeat(2, 1) - 128.0
    c = (y - 16.0) * 1.164
    rgb = np.stack([c + 1.596 * v, c - 0.392 * u - 0.813 * v, c + 2.017 * u], -1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def lip_gaps(frames: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """``(t_ns (n,) int64, gap (n,) float64)``: the inner-lip gap over the eye-corner distance
    (NaN where no face is found), MediaPipe face mesh on each frame alone (as ../shared/eval/facemeasure.track:
    video mode smooths the landmarks over time, which delays fast lip movement)."""
    from vcam.avatar.enroll import _face_models

    t = np.array([f[0] for f in frames], np.int64)
    gaps = np.full(len(frames), np.nan)
    with _face_models() as faces:
        for i, (_, data) in enumerate(frames):
            found = faces.mesh(_i420_rgb(data), max_faces=1, min_detection=0.3)
            if not found:
                continue
            p = found[0][:, :2] * 512
            gaps[i] = float(np.linalg.norm(p[13] - p[14]) / np.linalg.norm(p[33] - p[263]))
    return t, gaps


def recorder_origin(rec_info: np.ndarray, *, rate: int = RATE) -> float:
    """When the recorder's sample 0 was captured (``monotonic_ns``), from its callbacks' rows
    ``(first sample index, ADC time ns, status)``: the median over the steady part (the first
    quarter is the stream's start-up burst)."""
    off = rec_info[:, 1] - rec_info[:, 0] * 1e9 / rate
    return float(np.median(off[len(off) // 4:] if len(off) > 8 else off))


def mic_onsets(rec_x: np.ndarray, rec_info: np.ndarray, bursts: list[np.ndarray], expect_ns: list[int],
               *, rate: int = RATE) -> list[tuple[int | None, float]]:
    """Per burst ``(onset on the microphone, monotonic_ns, or None; correlation at the best lag)``.

    ``rec_info`` rows ``(first sample index, ADC time ns, status)`` of the recorder's callbacks;
    ``expect_ns``: when each burst is expected (its play time), searched +-1 s around.
    """
    t0 = recorder_origin(rec_info, rate=rate)
    out = []
    for burst, expect in zip(bursts, expect_ns, strict=True):
        centre = int(round((expect - t0) * rate / 1e9))
        lo, hi = max(0, centre - rate), min(rec_x.shape[0] - burst.shape[0], centre + rate)
        if hi <= lo:
            out.append((None, 0.0))
            continue
        seg = rec_x[lo:hi + burst.shape[0]]
        corr = np.correlate(seg, burst, mode="valid")
        k = int(np.argmax(corr))
        piece = seg[k:k + burst.shape[0]]
        denom = float(np.linalg.norm(piece) * np.linalg.norm(burst))
        r = float(corr[k] / denom) if denom > 0 else 0.0
        out.append((int(round(t0 + (lo + k) * 1e9 / rate)), r))
    return out


def offsets(mic: list[tuple[int | None, float]], t_ns: np.ndarray, gaps: np.ndarray) -> list[float | None]:
    """Per burst: arrival of the frame whose lip gap passes halfway rest -> open, minus the
    microphone onset (ms); ``None`` when the mouth is not seen to open."""
    out: list[float | None] = []
    for onset, _r in mic:
        if onset is None:
            out.append(None)
            continue
        rel = (t_ns - onset) / 1e6
        rest = gaps[(rel >= REST_MS[0]) & (rel <= REST_MS[1]) & np.isfinite(gaps)]
        win = np.nonzero((rel > SEARCH_MS[0]) & (rel <= SEARCH_MS[1]) & np.isfinite(gaps))[0]
        if rest.size < 3 or win.size < 3:
            out.append(None)
            continue
        r0, r1 = float(np.median(rest)), float(np.max(gaps[win]))
        if r1 - r0 < 0.03:  # the mouth did not open visibly
            out.append(None)
            continue
        half = 0.5 * (r0 + r1)
        hit = win[gaps[win] >= half]
        out.append(float(rel[hit[0]]) if hit.size else None)
    return out


def _watch_delay(env, stop: threading.Event, out: list, t0: float) -> None:
    """Every 2 s until ``stop``: ``[s since t0, mic delay ms, mouth rise ms, latency p50 ms]``."""
    while not stop.wait(2.0):
        s = _daemon_status(env) or {}
        out.append([round(time.monotonic() - t0, 1), (s.get("mic") or {}).get("delay_ms"), s.get("mouth_rise_ms"),
                    (s.get("latency_ms") or {}).get("p50")])


def _phase(sink: str, keeper: _FrameKeeper, trials: int, tmp: str, tag: str, audio=None, env=None) -> dict:
    """One measurement: ``trials`` bursts, recorded from the microphone; offsets and correlations;
    with ``env`` (the daemon's), also how its delay and the mouth's rise moved meanwhile."""
    bursts = onset_bursts(trials, audio)
    track, onsets_at = burst_track(bursts, jitter_s=PHASE_JITTER_S, seed=len(tag))
    seconds = track.shape[0] / RATE + 4.0
    out = os.path.join(tmp, f"rec_{tag}.npz")
    rec = subprocess.Popen([sys.executable, "-c", _RECORDER, str(RATE), str(seconds), out, MIC_NAME],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if rec.stdout.readline().strip() != "recording":
        raise DeviceError(f"bench --av-sync: cannot record {MIC_NAME}: {rec.stderr.read()[-300:]}")
    time.sleep(2.0)  # past the recorder's start-up burst
    start = time.monotonic_ns()
    for at in onsets_at:  # keep frames around each burst (from its play time; the lips come later)
        t = start + int(at * 1e9 / RATE)
        keeper.windows.append((t - 1_000_000_000, t + 1_500_000_000))
    watch: list = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_delay, args=(env, stop, watch, time.monotonic()), daemon=True)
    if env is not None:
        watcher.start()
    played = play_into(sink, track, onsets_at)
    stop.set()
    rec.wait(seconds + 30)
    time.sleep(1.0)
    data = np.load(out)
    frames = list(keeper.kept)
    keeper.kept.clear()
    mic = mic_onsets(data["x"], data["info"], bursts, played)
    t_ns, gaps = lip_gaps(frames)
    offs = offsets(mic, t_ns, gaps)
    lags = [(m[0] - p) / 1e6 for m, p in zip(mic, played, strict=True) if m[0] is not None]
    result = summarise(offs, [m[1] for m in mic], lags, recorder_flags=int(data["info"][:, 2].sum()))
    result["traces"] = traces(mic, t_ns, gaps, data["x"], data["info"])
    result["delay_trace"] = watch  # [s, mic delay ms, mouth rise ms, latency p50 ms]
    return result


def traces(mic, t_ns: np.ndarray, gaps: np.ndarray, rec_x: np.ndarray, rec_info: np.ndarray,
           *, rate: int = RATE) -> list[dict]:
    """Per burst, around its onset on the microphone (-600..+600 ms): the frames' arrival (ms)
    and lip gap, and the microphone's level (10 ms RMS, on a 10 ms grid), for plotting."""
    t0 = recorder_origin(rec_info, rate=rate)
    hop = rate // 100
    out = []
    for onset, _r in mic:
        if onset is None:
            continue
        rel = (t_ns - onset) / 1e6
        keep = (rel >= -600) & (rel <= 600) & np.isfinite(gaps)
        i0 = int(round((onset - 600e6 - t0) * rate / 1e9))
        seg = rec_x[max(0, i0):max(0, i0) + 120 * hop]
        rms = [float(np.sqrt(np.mean(seg[k:k + hop] ** 2))) if seg[k:k + hop].size else 0.0
               for k in range(0, 120 * hop, hop)]
        out.append({"frame_ms": [round(float(x), 1) for x in rel[keep]],
                    "lip_gap": [round(float(x), 4) for x in gaps[keep]], "mic_rms": [round(x, 4) for x in rms]})
    return out


def plot(result: dict, path: str) -> None:
    """``path`` (PNG): for each measurement, every burst's microphone level and lip gap against
    time from the burst's onset on the microphone, and the half-open crossings."""
    try:
        import matplotlib
    except ImportError:
        from vcam.runtime.errors import VcamError

        raise VcamError("bench --plot needs matplotlib: pip install 'vcam-portrait[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = [(k, result[k]) for k in ("start", "later") if result.get(k)]
    fig, axes = plt.subplots(len(phases), 1, figsize=(8, 3.2 * len(phases)), squeeze=False)
    for ax, (key, r) in zip(axes[:, 0], phases, strict=True):
        for tr in r.get("traces", []):
            ax.plot(tr["frame_ms"], tr["lip_gap"], color="tab:red", alpha=0.35, lw=1, marker=".", ms=3)
            t = np.arange(len(tr["mic_rms"])) * 10.0 - 600.0
            ax.plot(t, np.array(tr["mic_rms"]) * 2.0, color="tab:blue", alpha=0.25, lw=1)
        for o in r["offset_ms"]:
            if o is not None:
                ax.axvline(o, color="tab:red", alpha=0.15, lw=1)
        ax.axvline(0, color="k", lw=1)
        label = "start" if key == "start" else f"after {result['minutes']:g} min"
        ax.set_title(f"{label}: median offset {r['median_offset_ms']:.0f} ms, p95 |offset| "
                     f"{r['p95_abs_offset_ms']:.0f} ms ({r['measured']} bursts)", fontsize=10)
        ax.set_xlim(-400, 500)
        ax.set_xlabel("ms from the burst's onset on vcam's microphone")
        ax.set_ylabel("lip gap (red), mic level x2 (blue)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(offs: list[float | None], corrs: list[float], mic_lags_ms: list[float], *,
              recorder_flags: int = 0) -> dict:
    """Median and p95 of |offset|, the correlations, and the mic's delay behind the speakers."""
    o = np.array([x for x in offs if x is not None], np.float64)
    c = np.array(corrs, np.float64)
    return {
        "trials": len(offs),
        "measured": int(o.size),
        "offset_ms": [None if x is None else round(x, 1) for x in offs],
        "median_offset_ms": float(np.median(o)) if o.size else None,
        "p95_abs_offset_ms": float(np.percentile(np.abs(o), 95)) if o.size else None,
        "correlations": [round(float(x), 4) for x in c],
        "correlation_min": float(c.min()) if c.size else None,
        "correlation_median": float(np.median(c)) if c.size else None,
        "mic_after_speakers_ms": float(np.median(mic_lags_ms)) if mic_lags_ms else None,
        "recorder_flags": recorder_flags,
    }


def run(photo, *, trials: int = 20, fps: int = 30, minutes: float = 30.0, provider: str = "cpu",
        audio=None) -> dict:
    """Start a daemon with its microphone; measure at the start and after ``minutes``."""
    _pactl("info")
    sink = f"vcam_bench_spk_{os.getpid()}"
    module = _pactl("load-module", "module-null-sink", f"sink_name={sink}",
                    "sink_properties=device.description=vcam-bench-speakers")
    tmp = tempfile.TemporaryDirectory(prefix="vcam-avsync-")
    proc = None
    result: dict = {"fps": fps, "minutes": minutes, "trials": trials}
    try:
        cfg = Path(tmp.name) / "config.toml"
        cfg.write_text(f'[mic]\nname = "{MIC_NAME}"\ndescription = "vcam bench microphone"\n')
        env = dict(os.environ, VCAM_CONTROL=os.path.join(tmp.name, "control.sock"), PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "vcam", "run", "--config", str(cfg), "--photo", str(photo), "--audio",
             f"{sink}.monitor", "--output", "-", "--fps", str(fps), "--no-tray", "--no-hotkeys", "--provider",
             provider, "--seed", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        keeper = _FrameKeeper(proc.stdout)
        keeper.start()
        deadline = time.monotonic() + 90
        while keeper.count < fps * 3:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DeviceError(f"the daemon did not start: {proc.stderr.read().decode(errors='replace')[-400:]}")
            time.sleep(0.1)
        time.sleep(3.0)  # the engine's latency figure settles; the microphone follows it
        started = time.monotonic()
        result["start"] = _phase(sink, keeper, trials, tmp.name, "start", audio, env)
        result["start"]["daemon"] = _mic_status(env)
        wait_s = minutes * 60.0 - (time.monotonic() - started)
        if wait_s > 0:
            _talk(sink, wait_s)
            result["later"] = _phase(sink, keeper, trials, tmp.name, "later", audio, env)
            result["later"]["daemon"] = _mic_status(env)
        result["uptime_s"] = round(time.monotonic() - started, 1)
        result["frames"] = keeper.count
        span = (keeper.t_last - keeper.t_first) / 1e9
        result["fps_seen"] = round((keeper.count - 1) / span, 2) if span > 0 else None
        status = _daemon_status(env) or {}
        result["missed_ticks"] = status.get("missed_ticks")
        result["render_ms_p50"] = ((status.get("stages_ms") or {}).get("render") or {}).get("p50")
    finally:
        if proc is not None:
            stop_daemon(proc, 15.0)
        subprocess.run(["pactl", "unload-module", module], capture_output=True)
        tmp.cleanup()
    return result


def _talk(sink: str, seconds: float) -> None:
    """Play the sample clip on a loop (with 2 s pauses) for ``seconds``."""
    from vcam import assets
    from vcam.runtime.audio_file import load_audio

    pcm = load_audio(assets.SAMPLE_AUDIO, rate=RATE)
    one = np.concatenate([pcm, np.zeros(2 * RATE, np.float32)])
    reps = int(np.ceil(seconds * RATE / one.shape[0]))
    track = np.tile(one, reps)[: int(seconds * RATE)] * 0.5
    play_into(sink, track, [])


def _mic_status(env) -> dict | None:
    s = _daemon_status(env) or {}
    mic = s.get("mic") or {}
    out = {k: mic.get(k) for k in ("state", "delay_ms", "video_latency_ms", "error_ms", "underruns", "resyncs",
                                   "status_flags")}
    out["mouth_rise_ms"] = s.get("mouth_rise_ms")
    out["onsets"] = s.get("onsets")
    return out


def table(result: dict, machine: str) -> str:
    """The README's markdown table."""
    rows = ["| when | median offset ms | p95 \\|offset\\| ms | bursts seen | mic correlation min / median "
            "| mic delay ms | underruns |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for key, label in (("start", "start"), ("later", f"after {result['minutes']:g} min")):
        r = result.get(key)
        if not r:
            continue
        d = r.get("daemon") or {}
        rows.append(f"| {label} | {_f(r['median_offset_ms'])} | {_f(r['p95_abs_offset_ms'])} | "
                    f"{r['measured']}/{r['trials']} | {_f(r['correlation_min'], 3)} / {_f(r['correlation_median'], 3)} | "
                    f"{_f(d.get('delay_ms'))} | {d.get('underruns', '?')} |")
    return "\n".join([f"Machine: {machine}; {result['fps']} fps; {result.get('fps_seen')} fps seen by the reader, "
                      f"{result.get('missed_ticks')} missed ticks, render p50 {result.get('render_ms_p50')} ms", "",
                      *rows])


def _f(x, nd: int = 0) -> str:
    return "-" if x is None else f"{x:.{nd}f}"
