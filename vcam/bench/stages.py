"""``vcam bench``: per-stage timings at 512x512 for each available execution provider.

Stages: enroll (first time and cached), features (streaming log-mel per video frame),
motion graph, render graph, encode (H.264 per frame), and the whole ``vcam render`` of the
sample clip as a separate process, start-up included, as a real-time factor.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _pcts(values_ns: list[int]) -> dict[str, float]:
    v = np.asarray(values_ns, np.float64) / 1e6
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "n": int(v.size)}


def machine_line() -> str:
    """One line naming this machine: CPU model, cores, OS, Python, onnxruntime."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}, {cores} cores, {platform.system()} {platform.release().split('-')[0]}, "
            f"Python {platform.python_version()}, onnxruntime {ort.__version__}")


def bench_stages(photo, audio, *, provider: str, frames: int, threads: int = 0, fps: int = 25) -> dict:
    """Time each stage ``frames`` times on ``provider``; returns ``{stage: {p50, p95, n}}`` in ms."""
    from vcam.runtime.emotion import EmotionMixer, load_emotion_presets
    from vcam.runtime.features import LogMelStream
    from vcam.runtime.motion import MotionStage
    from vcam.runtime.render import RenderStage
    from vcam.runtime.audio_file import load_audio
    from vcam.avatar.build import load_avatar
    from vcam.sinks.mp4 import Mp4Sink

    out: dict[str, dict] = {}
    t0 = time.perf_counter_ns()
    load_avatar(photo, use_cache=False)
    out["enroll (first)"] = _pcts([time.perf_counter_ns() - t0])
    cached = []
    for _ in range(3):
        t0 = time.perf_counter_ns()
        avatar = load_avatar(photo)
        cached.append(time.perf_counter_ns() - t0)
    out["enroll (cached)"] = _pcts(cached)

    pcm = load_audio(audio)
    hop = 16000 // fps
    stream = LogMelStream()
    mixer = EmotionMixer(load_emotion_presets())
    feat, mot, ren, enc = [], [], [], []
    with MotionStage(fps=fps, seed=0, provider=provider, threads=threads) as motion, \
            RenderStage(avatar, provider=provider, threads=threads) as render, \
            tempfile.TemporaryDirectory() as tmp, \
            Mp4Sink(Path(tmp) / "bench.mp4", fps=fps) as sink:
        window = motion.mel_buffer
        for i in range(frames + 5):
            k = (i * hop) % max(pcm.shape[0] - hop, 1)
            t0 = time.perf_counter_ns()
            stream.push(pcm[k:k + hop])
            stream.window(stream.frames - 1, window)
            t1 = time.perf_counter_ns()
            m = motion.step(window, mixer.advance(1.0 / fps))
            t2 = time.perf_counter_ns()
            frame = render.render(m)
            t3 = time.perf_counter_ns()
            sink.write(frame)
            t4 = time.perf_counter_ns()
            if i >= 5:  # warm-up excluded
                feat.append(t1 - t0)
                mot.append(t2 - t1)
                ren.append(t3 - t2)
                enc.append(t4 - t3)
        out["features"] = _pcts(feat)
        out["motion graph"] = _pcts(mot)
        out["render graph"] = _pcts(ren)
        out["encode"] = _pcts(enc)
        out["_provider"] = render.provider
    return out


def bench_end_to_end(photo, audio, *, provider: str) -> dict:
    """``vcam render`` as a fresh process: start-up, enroll (empty cache) and encode included."""
    from vcam.runtime.audio_file import load_audio

    duration = load_audio(audio).shape[0] / 16000.0
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, VCAM_CACHE_DIR=str(Path(tmp) / "cache"))
        cmd = [sys.executable, "-m", "vcam", "render", "--photo", str(photo), "--audio", str(audio),
               "--out", str(Path(tmp) / "e2e.mp4"), "--provider", provider]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return {"audio_s": duration, "wall_s": wall, "rtf": wall / duration}


def main(args) -> int:
    from vcam.runtime.graph import available_providers, gpu_present
    from vcam import assets

    photo = args.photo or assets.SAMPLE_PHOTO
    audio = args.audio or assets.SAMPLE_AUDIO
    frames = args.frames or 200
    threads = args.settings.engine.threads if getattr(args, "settings", None) else 0
    wanted = args.provider or "all"
    providers = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda"}
    names = [providers[p] for p in available_providers() if p in providers]
    if not gpu_present():  # the CUDA build's provider is listed even where no GPU is
        names = [n for n in names if n != "cuda"]
    if wanted != "all" and wanted != "auto":
        names = [n for n in names if n == wanted]
    results = {"machine": machine_line(), "frames": frames, "providers": {}}
    for name in names:
        try:
            stages = bench_stages(photo, audio, provider=name, frames=frames, threads=threads)
        except Exception as e:  # noqa: BLE001 - a provider that fails is reported, not fatal
            results["providers"][name] = {"error": f"{type(e).__name__}: {e}".splitlines()[0]}
            continue
        if providers.get(stages.pop("_provider")) != name:
            results["providers"][name] = {"error": "provider did not load; fell back to the CPU"}
            continue
        stages["end to end"] = bench_end_to_end(photo, audio, provider=name)
        results["providers"][name] = stages
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
    return 0


def format_table(results: dict) -> str:
    """The README's markdown table."""
    lines = [f"Machine: {results['machine']}; {results['frames']} frames at 512x512.", "",
             "| stage | provider | p50 ms | p95 ms |", "|---|---|---:|---:|"]
    for prov, stages in results["providers"].items():
        if "error" in stages:
            lines.append(f"| (all) | {prov} | {stages['error']} | |")
            continue
        for stage, v in stages.items():
            if stage == "end to end":
                continue
            lines.append(f"| {stage} | {prov} | {v['p50']:.2f} | {v['p95']:.2f} |")
        e2e = stages.get("end to end", {})
        if "rtf" in e2e:
            lines.append(f"| `vcam render`, {e2e['audio_s']:.1f} s clip, start-up included | {prov} | "
                         f"{e2e['wall_s']:.2f} s wall | {e2e['rtf']:.2f}x real time |")
        elif e2e:
            lines.append(f"| `vcam render` | {prov} | {e2e.get('error')} | |")
    return "\n".join(lines)
