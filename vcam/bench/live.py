"""``vcam bench --live``: audio->frame latency of the live webcam, measured from outside.

The daemon runs as its own process (``vcam run --audio <null sink monitor> --output -``)
exactly as a user would start it, with system audio captured from a PulseAudio/PipeWire
null sink made for the benchmark. This process

* plays short bursts of real speech (vowel onsets cut from the bundled sample clip, each
  after 1.3 s of silence) into the null sink, and notes when each onset reaches the sink:
  the callback's ``monotonic_ns`` plus PortAudio's output latency estimate
  (``outputBufferDacTime - currentTime``);
* reads the Y4M frames from the daemon's stdout, stamping each on arrival, and measures the
  mouth: mean absolute luma change, against the frames just before the onset, inside a box
  on the inner lips (found by enrolling the same photo);
* calls the mouth "moving" at the first frame whose change exceeds the pre-onset noise by
  6 standard deviations (and at least 1.5 luma levels), and reports onset -> that frame.

Also reported: the frame rate and the spread of frame intervals seen by the reader, and the
daemon's own counters (``vcam ctl status``) at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from vcam.runtime.errors import DeviceError

SILENCE_S = 1.3
BURST_S = 0.35
RATE = 48000


def _pactl(*args: str) -> str:
    try:
        done = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DeviceError(f"bench --live needs PulseAudio or PipeWire (pactl): {e}") from None
    if done.returncode != 0:
        raise DeviceError(f"bench --live needs a running PulseAudio/PipeWire server: pactl {' '.join(args)}: "
                          f"{done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def speech_bursts(n: int) -> list[np.ndarray]:
    """``n`` bursts ``(BURST_S * RATE,) float32`` of voiced speech from the sample clip, 5 ms fade-in."""
    from vcam import assets
    from vcam.runtime.audio_file import load_audio

    pcm = load_audio(assets.SAMPLE_AUDIO, rate=RATE)
    hop = RATE // 100
    energy = np.array([float(np.mean(pcm[i:i + hop] ** 2)) for i in range(0, len(pcm) - hop, hop)])
    loud = energy > 0.3 * np.percentile(energy, 95)
    starts = []
    length = int(BURST_S * RATE)
    i = 0
    while i < len(loud) - int(BURST_S * 100) and len(starts) < n:
        if loud[i] and loud[i:i + 5].all():
            starts.append(i * hop)
            i += 60  # the next burst from at least 0.6 s further on
        else:
            i += 1
    while len(starts) < n:
        starts = starts + starts
    fade = np.linspace(0.0, 1.0, RATE // 200, dtype=np.float32)
    bursts = []
    for s in starts[:n]:
        b = pcm[s:s + length].copy()
        b[: fade.shape[0]] *= fade
        b[-fade.shape[0]:] *= fade[::-1]
        bursts.append(b * (0.5 / max(1e-6, float(np.abs(b).max()))))
    return bursts


class _Y4mReader(threading.Thread):
    """Reads 512x512 I420 frames from a pipe; keeps arrival time and the mouth box luma."""

    def __init__(self, stream, box: tuple[int, int, int, int]) -> None:
        super().__init__(name="bench-y4m", daemon=True)
        self.stream = stream
        self.box = box
        self.t_ns: list[int] = []
        self.crops: list[np.ndarray] = []
        self.header = b""

    def run(self) -> None:
        s = self.stream
        self.header = s.readline()
        size = 512 * 512 * 3 // 2
        buf = bytearray(size)
        y0, y1, x0, x1 = self.box
        while True:
            tag = s.readline()
            if not tag.startswith(b"FRAME"):
                return
            view = memoryview(buf)
            got = 0
            while got < size:
                n = s.readinto(view[got:])
                if not n:
                    return
                got += n
            self.t_ns.append(time.monotonic_ns())
            y = np.frombuffer(buf, np.uint8, count=512 * 512).reshape(512, 512)
            self.crops.append(y[y0:y1, x0:x1].astype(np.float32))


def mouth_box(photo) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` around the inner lips of ``photo``'s portrait."""
    from vcam.avatar import landmarks as L
    from vcam.avatar.enroll import enroll

    lm = enroll(photo).landmarks
    pts = lm[list(L.LIPS_INNER_UPPER + L.LIPS_INNER_LOWER), :2]
    cx, cy = pts.mean(0)
    w = float(pts[:, 0].max() - pts[:, 0].min())
    return int(cy - 0.3 * w), int(cy + 0.45 * w), int(cx - 0.4 * w), int(cx + 0.4 * w)


def run(photo, *, trials: int = 20, fps: int = 30, provider: str = "cpu") -> dict:
    """Start a daemon, play ``trials`` speech onsets, return latency and frame-rate figures."""
    _pactl("info")
    sink = f"vcam_bench_{os.getpid()}"
    module = _pactl("load-module", "module-null-sink", f"sink_name={sink}",
                    "sink_properties=device.description=vcam-bench")
    tmp = tempfile.TemporaryDirectory(prefix="vcam-bench-")
    proc = None
    try:
        box = mouth_box(photo)
        env = dict(os.environ, VCAM_CONTROL=os.path.join(tmp.name, "control.sock"), PYTHONUNBUFFERED="1")
        cfg = os.path.join(tmp.name, "config.toml")
        with open(cfg, "w") as f:  # the microphone on, as by default, under a name of its own
            f.write('[mic]\nname = "vcam_bench_live_mic"\ndescription = "vcam bench microphone"\n')
        proc = subprocess.Popen(
            [sys.executable, "-m", "vcam", "run", "--config", cfg, "--photo", str(photo), "--audio", f"{sink}.monitor",
             "--output", "-", "--fps", str(fps), "--no-tray", "--no-hotkeys", "--provider", provider,
             "--seed", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        reader = _Y4mReader(proc.stdout, box)
        reader.start()
        deadline = time.monotonic() + 60
        while len(reader.t_ns) < fps * 2:  # models loaded, frames flowing
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DeviceError(f"the daemon did not start: {proc.stderr.read().decode(errors='replace')[-400:]}")
            time.sleep(0.05)
        time.sleep(2.5)  # an idle PulseAudio sink starts delivering to a new monitor stream after ~2 s

        track, onsets_at = burst_track(speech_bursts(trials))
        onset_ns = play_into(sink, track, onsets_at)
        time.sleep(0.5)
        status = _daemon_status(env)
    finally:
        if proc is not None:
            stop_daemon(proc, 10.0)
        subprocess.run(["pactl", "unload-module", module], capture_output=True)
        tmp.cleanup()
    return analyse(np.array(reader.t_ns, np.int64), reader.crops, onset_ns, fps=fps, daemon_status=status)


def burst_track(bursts: list[np.ndarray], *, jitter_s: float = 0.0, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """``(track (n,) float32, onsets)``: each burst after ``SILENCE_S`` of silence (plus, with
    ``jitter_s``, a random 0..jitter_s more, so that bursts fall at every phase of the frame
    clock instead of a fixed few), and silence at the end; ``onsets``: where each burst starts,
    in samples."""
    rng = np.random.default_rng(seed)
    gaps = [int((SILENCE_S + (rng.uniform(0.0, jitter_s) if jitter_s > 0 else 0.0)) * RATE) for _ in bursts]
    track = np.zeros(sum(gaps) + sum(b.shape[0] for b in bursts) + int(SILENCE_S * RATE), np.float32)
    onsets_at = []
    at = 0
    for gap, b in zip(gaps, bursts, strict=True):
        at += gap
        track[at:at + b.shape[0]] = b
        onsets_at.append(at)
        at += b.shape[0]
    return track, onsets_at


def play_into(sink: str, track: np.ndarray, onsets_at: list[int]) -> list[int]:
    """Play ``track`` (``RATE`` Hz) into the PulseAudio sink ``sink``; returns when each of
    ``onsets_at`` (samples) reached the sink: the callback's ``monotonic_ns`` plus PortAudio's
    output latency estimate (``outputBufferDacTime - currentTime``)."""
    import sounddevice as sd

    onset_ns: list[int] = []
    pos = [0]
    done = threading.Event()

    def callback(outdata, frames, t, status):  # noqa: ARG001 - sounddevice's signature
        p = pos[0]
        n = max(0, min(frames, track.shape[0] - p))
        outdata[:n, 0] = track[p:p + n]
        outdata[n:, 0] = 0.0
        dac_ns = time.monotonic_ns() + int((t.outputBufferDacTime - t.currentTime) * 1e9)
        for at in onsets_at[len(onset_ns):]:
            if p <= at < p + frames:
                onset_ns.append(dac_ns + int((at - p) * 1e9 / RATE))
        pos[0] = p + frames
        if pos[0] >= track.shape[0]:
            done.set()

    os.environ["PULSE_SINK"] = sink
    try:
        with sd.OutputStream(device="pulse", samplerate=RATE, channels=1, dtype="float32", blocksize=480,
                             latency="low", callback=callback):
            done.wait(track.shape[0] / RATE + 10)
    finally:
        os.environ.pop("PULSE_SINK", None)
    return onset_ns


def stop_daemon(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it is not gone within ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()


def _daemon_status(env) -> dict | None:
    done = subprocess.run([sys.executable, "-m", "vcam", "ctl", "status", "--json"], capture_output=True,
                          text=True, env=env, timeout=20)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return None


def analyse(t_ns: np.ndarray, crops: list[np.ndarray], onsets_ns: list[int], *, fps: int,
            daemon_status: dict | None = None) -> dict:
    """Latency per onset (ms) and frame-rate figures from the frames' arrival times."""
    latencies = []
    for on in onsets_ns:
        base = np.nonzero((t_ns > on - 700e6) & (t_ns < on - 100e6))[0]
        after = np.nonzero((t_ns >= on - 100e6) & (t_ns < on + 600e6))[0]
        if base.size < 5 or after.size == 0:
            continue
        ref = np.mean([crops[i] for i in base], axis=0)
        base_d = np.array([np.abs(crops[i] - ref).mean() for i in base])
        thr = base_d.mean() + max(6 * base_d.std(), 1.5)
        d = np.array([np.abs(crops[i] - ref).mean() for i in after])
        hit = np.nonzero(d > thr)[0]
        if hit.size:
            latencies.append((t_ns[after[hit[0]]] - on) / 1e6)
    intervals = np.diff(t_ns) / 1e6
    lat = np.array(latencies)
    return {
        "trials": len(onsets_ns),
        "detected": int(lat.size),
        "latency_ms": {"p50": float(np.median(lat)) if lat.size else None,
                       "p95": float(np.percentile(lat, 95)) if lat.size else None,
                       "min": float(lat.min()) if lat.size else None,
                       "max": float(lat.max()) if lat.size else None},
        "fps": float((len(t_ns) - 1) / ((t_ns[-1] - t_ns[0]) / 1e9)) if len(t_ns) > 1 else None,
        "frame_interval_ms": {"p50": float(np.median(intervals)), "p95": float(np.percentile(intervals, 95)),
                              "max": float(intervals.max())} if intervals.size else None,
        "daemon": daemon_status,
    }


def table(result: dict, machine: str) -> str:
    """The README's markdown table of one run."""
    lat, fi = result["latency_ms"], result["frame_interval_ms"] or {}
    d = result.get("daemon") or {}
    missed = d.get("missed_ticks", "?")
    return "\n".join([
        f"Machine: {machine}",
        "",
        "| audio->mouth p50 ms | p95 ms | onsets seen | fps | frame interval p95 ms | missed ticks |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {lat['p50']:.0f} | {lat['p95']:.0f} | {result['detected']}/{result['trials']} | {result['fps']:.1f} "
        f"| {fi.get('p95', float('nan')):.1f} | {missed} |",
    ])
