"""``vcam bench``: its options, and the dispatch to the benchmark modules of :mod:`vcam.bench`
(imported only when ``vcam bench`` runs)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from vcam.app.argtypes import int_range as _int_range


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    bench = sub.add_parser(
        "bench",
        parents=[common],
        help="time each stage of the pipeline",
        description="Time enroll, motion and render on this machine.",
    )
    bench.add_argument("--frames", type=_int_range(1, 100_000), metavar="N", help="frames to time")
    bench.add_argument("--photo", type=Path, metavar="P", help="portrait photo (default: the sample)")
    bench.add_argument("--audio", type=Path, metavar="A", help="speech recording (default: the sample)")
    bench.add_argument("--json", action="store_true", help="print results as JSON")
    bench.add_argument("--lipsync", action="store_true",
                       help="instead: render every speech clip of --media (clean and with noise under it), "
                            "espeak-ng speech in four languages, a song and bilabial-rich sentences in voices the "
                            "lip model never heard on the portraits; score lip sync and every P/B/M")
    bench.add_argument("--offline", action="store_true",
                       help="with --lipsync: score the motion graph's jawOpen without rendering (seconds, not "
                            "minutes; for comparing lip models)")
    bench.add_argument("--graph-dir", type=Path, metavar="DIR",
                       help="with --lipsync --offline: the exported graphs to score (default: the installed onnx/)")
    bench.add_argument("--expressions", action="store_true",
                       help="instead: render each emotion, silence and the --media speech on the portraits and "
                            "score emotions and liveness")
    bench.add_argument("--realism", action="store_true",
                       help="instead: render the portraits (and darker, cool and sepia variants) speaking the "
                            "--media speech and score teeth against the cheeks, the head's halo over a sharp "
                            "background, head roll and the frame's padding")
    bench.add_argument("--live", action="store_true",
                       help="instead: measure the live webcam's audio->mouth latency and frame rate from outside "
                            "(needs PulseAudio or PipeWire)")
    bench.add_argument("--provenance", action="store_true",
                       help="instead: render the portraits, transform the videos with ffmpeg as calls and uploads "
                            "do, and measure the watermark's survival, false positives, PSNR and cost")
    bench.add_argument("--av-sync", action="store_true",
                       help="instead: measure from outside how far the lips on the camera lag the voice on the "
                            "virtual microphone, at the start and after --minutes (needs PulseAudio or PipeWire)")
    bench.add_argument("--mouth-rise", action="store_true",
                       help="instead: how long after a voice starts the drawn mouth is half open, on varied "
                            "speech, as the engine measures it for the microphone's delay (offline)")
    bench.add_argument("--fps", type=_int_range(1, 120), metavar="N", default=30,
                       help="frame rate of the daemon for --live and --av-sync, and of --mouth-rise and "
                            "--lipsync --offline (default 30, as [live] fps)")
    bench.add_argument("--plot", type=Path, metavar="PNG",
                       help="--av-sync: also draw each burst's microphone level and lip gap into this PNG")
    bench.add_argument("--minutes", type=float, metavar="M", default=30.0,
                       help="--av-sync: measure again after this many minutes of running (default 30; 0: once)")
    bench.add_argument("--trials", type=_int_range(3, 1000), metavar="N", default=20,
                       help="speech onsets played for --live and --av-sync (default 20)")
    bench.add_argument("--media", type=Path, metavar="DIR", default=Path("../shared/media/audio"),
                       help="speech clips (*.wav with a .txt transcript) for --lipsync, --expressions and "
                            "--mouth-rise")
    bench.add_argument("--eval-dir", type=Path, metavar="DIR", default=Path("../shared/eval"),
                       help="the measuring tools (setup.sh, lipsync.py, liveness.py) for --lipsync and --expressions")
    bench.set_defaults(run=_bench, subparser=bench)


def _bench(args: argparse.Namespace) -> int:
    from vcam.app.cli import EXIT_OK, _check_audio, _check_photo  # loaded: it called us
    from vcam.app.settings import load_settings

    if args.photo is not None:
        _check_photo(args.photo)
    if args.audio is not None:
        _check_audio(args.audio)
    args.settings = load_settings(args.config)
    from vcam import assets

    photos = [args.photo] if args.photo else [assets.SAMPLE_PHOTO, *assets.EXTRA_PHOTOS]
    if args.lipsync:
        from vcam.bench import lipsync as bench_lipsync

        if args.offline:
            rows = bench_lipsync.run_offline(args.media, args.eval_dir, fps=args.fps, graph_dir=args.graph_dir)
        else:
            rows = bench_lipsync.run(photos, args.media, args.eval_dir, provider=args.provider or "cpu")
        return _emit(args, rows, bench_lipsync.table)
    if args.expressions:
        from vcam.bench import expressions as bench_expressions

        result = bench_expressions.run(photos, args.media, args.eval_dir, provider=args.provider or "cpu")
        return _emit(args, result, bench_expressions.table)
    if args.realism:
        from vcam.bench import realism as bench_realism

        rows = bench_realism.run(photos, args.media, args.eval_dir, provider=args.provider or "cpu")
        return _emit(args, rows, bench_realism.table)
    if args.live:
        from vcam.bench import live as bench_live
        from vcam.bench.stages import machine_line

        result = bench_live.run(args.photo or assets.SAMPLE_PHOTO, trials=args.trials, fps=args.fps,
                                provider=args.provider or "cpu")
        return _emit(args, result, lambda r: bench_live.table(r, machine_line()))
    if args.av_sync:
        from vcam.bench import avsync as bench_avsync
        from vcam.bench.stages import machine_line

        result = bench_avsync.run(args.photo or assets.SAMPLE_PHOTO, trials=args.trials, minutes=args.minutes,
                                  fps=args.fps, provider=args.provider or "cpu", audio=args.audio)
        if args.plot:
            bench_avsync.plot(result, str(args.plot))
        return _emit(args, result, lambda r: bench_avsync.table(r, machine_line()))
    if args.mouth_rise:
        from vcam.bench import mouth_rise as bench_mouth_rise
        from vcam.bench.stages import machine_line

        result = bench_mouth_rise.run(args.media, args.photo or assets.SAMPLE_PHOTO, fps=args.fps)
        return _emit(args, result, lambda r: bench_mouth_rise.table(r, machine_line()))
    if args.provenance:
        from vcam.bench import provenance as bench_provenance
        from vcam.bench.stages import machine_line

        result = bench_provenance.run(photos, args.audio or assets.SAMPLE_AUDIO, provider=args.provider or "cpu")
        return _emit(args, result, lambda r: bench_provenance.table(r, machine_line()))
    bench = importlib.import_module("vcam.bench.stages")
    status = bench.main(args)
    return EXIT_OK if status is None else int(status)


def _emit(args: argparse.Namespace, result, table) -> int:
    """Print a benchmark's ``result``: as JSON with ``--json``, else ``table(result)``; the exit status."""
    from vcam.app.cli import EXIT_OK  # loaded: it called us

    sys.stdout.write((json.dumps(result, indent=2) if args.json else table(result)) + "\n")
    return EXIT_OK
