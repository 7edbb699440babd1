"""The ``vcam`` command: argv -> settings -> a job, and errors -> one line and an exit status.

Exit status: 0 done; 1 an operating-system error (disk full, permission denied), or for
``vcam verify`` a file without vcam's mark; 2 a usage, input or configuration error
(``VcamError``); 130 interrupted. Errors are one line on
stderr (``vcam: error: ...``) without a traceback; ``-v`` logs the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from vcam.runtime.channels import EMOTIONS
from vcam.runtime.errors import InputError, VcamError
from vcam import __version__
from vcam.app.argtypes import int_range as _int_range, motion_scale as _motion_scale, number_range, offset_ms as _offset_ms, unit as _unit

log = logging.getLogger("vcam")

EXIT_OK = 0
EXIT_OS_ERROR = 1
EXIT_NOT_FOUND = 1  # vcam verify: some file carries no vcam mark
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_PROVIDERS = ("auto", "cpu", "cuda")  # as vcam.app.settings.PROVIDERS; not imported to keep startup light


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vcam`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors: argparse has printed them
        return _code(e)
    _setup_logging(args.verbose)
    try:
        return args.run(args)
    except SystemExit as e:  # parser.error() from a check after parsing
        return _code(e)
    except VcamError as e:
        log.debug("error", exc_info=True)
        _error(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted", prefix="vcam: ")
        return EXIT_INTERRUPTED
    except OSError as e:  # environment trouble, not a bug in vcam: one line too
        log.debug("error", exc_info=True)
        _error(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
        return EXIT_OS_ERROR


def build_parser() -> argparse.ArgumentParser:
    """The ``vcam`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="vcam",
        description="A talking portrait from one photo and speech: render a video, or run a live webcam.",
    )
    parser.add_argument("--version", action="version", version=f"vcam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail to stderr")
    # Subcommands accept -v too; SUPPRESS keeps `vcam -v render` from being reset to False.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debugging detail"
    )
    common.add_argument(
        "--config", type=Path, metavar="PATH", help="settings file (default: the user config, if any)"
    )
    common.add_argument(
        "--provider", choices=_PROVIDERS, help="where networks run (default: [engine] provider)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from vcam.app import ctl

    ctl.add_parser(sub, common)

    render = sub.add_parser(
        "render",
        parents=[common],
        help="render a photo and a speech recording to an MP4",
        description="Render a 512x512 talking-portrait MP4 from one photo and one speech recording.",
    )
    render.add_argument("--photo", type=Path, metavar="P", help="portrait photo (JPEG, PNG, WebP, ...)")
    render.add_argument("--audio", type=Path, metavar="A", help="speech recording (wav, flac, mp3, ogg, m4a)")
    render.add_argument("--out", type=Path, metavar="O.mp4", help="video to write (replaced if it exists)")
    render.add_argument(
        "--sample",
        action="store_true",
        help="use the bundled sample portrait and speech; --out defaults to ./vcam-demo.mp4",
    )
    render.add_argument("--emotion", choices=EMOTIONS, help="expression (default: [emotion] default)")
    render.add_argument(
        "--intensity", type=_unit, metavar="0..1", help="expression strength (default: [emotion] intensity)"
    )
    render.add_argument(
        "--fps", type=_int_range(1, 120), metavar="N", help="frame rate (default: [render] fps)"
    )
    render.add_argument(
        "--seed", type=_int_range(0, 2**32 - 1), metavar="N", help="random seed (default: [render] seed)"
    )
    render.add_argument("--face-width", type=_face_width, metavar="0.2..0.8",
                        help="zoom: the face's width as a share of the frame (default: [enroll] face_width_frac)")
    render.add_argument("--motion-scale", type=_motion_scale, metavar="0..2",
                        help="how much the head moves: 0 still, 1 a speaker's range, 2 lively "
                             "(default: [motion] scale)")
    render.add_argument(
        "--motion-out", type=Path, metavar="M.csv", help="also write the motion channels per frame as CSV"
    )
    render.add_argument("--no-badge", action="store_true",
                        help="no visible \"AI\" badge (default: [provenance] badge); the invisible watermark stays")
    render.set_defaults(run=_render, subparser=render)

    from vcam.app import cli_bench

    cli_bench.add_parser(sub, common)

    run = sub.add_parser(
        "run",
        parents=[common],
        help="run the live webcam: speech in, talking portrait out",
        description="Animate a portrait from live speech and publish it as a 512x512 virtual webcam "
                    "(and/or a preview window or a Y4M stream). Runs until Ctrl+C, SIGTERM, the tray's "
                    "Quit or `vcam ctl quit`.",
    )
    run.add_argument("--photo", type=Path, metavar="P",
                     help="portrait photo (default: [live] photo, else the last one used, else the sample)")
    run.add_argument("--audio", metavar="SOURCE",
                     help="mic, system (what the computer plays) or an input device name from `vcam devices` "
                          "(default: [live] audio)")
    run.add_argument("--output", action="append", metavar="OUT",
                     help="camera, preview, y4m:PATH or - (Y4M to stdout); repeatable (default: [live] outputs)")
    run.add_argument("--fps", type=_int_range(1, 120), metavar="N", help="frame rate (default: [live] fps)")
    run.add_argument("--emotion", choices=EMOTIONS, help="expression at start (default: [emotion] default)")
    run.add_argument("--intensity", type=_unit, metavar="0..1",
                     help="expression strength (default: [emotion] intensity)")
    run.add_argument("--face-width", type=_face_width, metavar="0.2..0.8",
                     help="zoom: the face's width as a share of the frame (default: [enroll] face_width_frac)")
    run.add_argument("--motion-scale", type=_motion_scale, metavar="0..2",
                     help="how much the head moves: 0 still, 1 a speaker's range, 2 lively "
                          "(default: [motion] scale)")
    run.add_argument("--no-tray", action="store_true", help="no system-tray icon")
    run.add_argument("--no-hotkeys", action="store_true", help="no global hotkeys")
    run.add_argument("--seed", type=_int_range(0, 2**32 - 1), metavar="N",
                     help="random seed for blinks and head motion (default: a new one each run)")
    run.add_argument("--no-badge", action="store_true",
                     help="no visible \"AI\" badge (default: [provenance] badge); the invisible watermark stays")
    run.add_argument("--no-mic", action="store_true",
                     help="no virtual microphone (default: [mic] enabled): the call app takes your own microphone")
    run.add_argument("--av-offset-ms", type=_offset_ms, metavar="MS",
                     help="trim the microphone's delay, -500..500 ms; positive plays the voice later "
                          "(default: [mic] av_offset_ms)")
    run.set_defaults(run=_run_live, subparser=run)

    devices = sub.add_parser(
        "devices",
        parents=[common],
        help="list audio inputs, system-audio sources and virtual cameras",
        description="List what `vcam run --audio` and the camera output can use on this machine.",
    )
    devices.add_argument("--json", action="store_true", help="print as JSON")
    devices.set_defaults(run=_devices, subparser=devices)

    verify = sub.add_parser(
        "verify",
        parents=[common],
        help="tell whether pictures or videos were made by vcam",
        description="Look for vcam's invisible watermark (and Content Credentials) in pictures and videos. "
                    "Exit status: 0 every file was made by vcam, 1 some file was not, 2 a file could not be read.",
    )
    verify.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="videos (mp4, mkv, webm, mov, y4m) or pictures (png, jpg, webp)")
    verify.add_argument("--json", action="store_true", help="print one JSON object per file, as a list")
    verify.set_defaults(run=_verify, subparser=verify)

    from vcam.app import cli_setup

    cli_setup.add_parsers(sub, common)
    return parser


def _render(args: argparse.Namespace) -> int:
    from vcam import assets

    photo, audio, out = args.photo, args.audio, args.out
    if args.sample:
        photo = photo or assets.SAMPLE_PHOTO
        audio = audio or assets.SAMPLE_AUDIO
        out = out or assets.SAMPLE_OUT
    given = {"--photo": photo, "--audio": audio, "--out": out}
    missing = [flag for flag, value in given.items() if value is None]
    if missing:
        args.subparser.error(f"missing {', '.join(missing)} (or use --sample)")
    _check_photo(photo)
    _check_audio(audio)
    _check_out(out, "output", ".mp4", inputs=(photo, audio))
    if args.motion_out is not None:
        _check_out(args.motion_out, "motion output", None, inputs=(photo, audio, out))

    from vcam.app.progress import Progress

    settings = _settings_for(args)
    render_job = importlib.import_module("vcam.app.render_job")
    with Progress("render") as progress:
        render_job.render_file(
            photo,
            audio,
            out,
            settings=settings,
            emotion=args.emotion or settings.emotion.default,
            intensity=args.intensity if args.intensity is not None else settings.emotion.intensity,
            fps=args.fps or settings.render.fps,
            seed=args.seed if args.seed is not None else settings.render.seed,
            motion_csv=args.motion_out,
            provider=args.provider or settings.engine.provider,
            progress=progress,
        )
    sys.stdout.write(f"wrote {Path(out).resolve()}\n")
    return EXIT_OK


def _devices(args: argparse.Namespace) -> int:
    from vcam.app.devices import format_devices, list_devices

    found = list_devices()
    sys.stdout.write((json.dumps(found, indent=2) if args.json else format_devices(found)) + "\n")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from vcam.provenance.verify import verify_file

    verdicts, failed = [], False
    for path in args.files:
        try:
            verdict = verify_file(path)
        except VcamError as e:
            failed = True
            _error(str(e))
            continue
        verdicts.append(verdict)
        if not args.json:
            sys.stdout.write(verdict.line() + "\n")
            sys.stdout.flush()
    if args.json:
        sys.stdout.write(json.dumps([v.to_json() for v in verdicts], indent=2) + "\n")
    if failed:
        return EXIT_USAGE
    return EXIT_OK if all(v.made_by_vcam for v in verdicts) else EXIT_NOT_FOUND


def _run_live(args: argparse.Namespace) -> int:
    from vcam import assets
    from vcam.app.daemon import Daemon, LiveOptions
    from vcam.app.recent import recent_photos

    settings = _settings_for(args)
    live = settings.live
    if args.photo is not None:
        photo = args.photo
    elif live.photo:
        photo = Path(live.photo).expanduser()
    else:
        recent = recent_photos()
        photo = Path(recent[0]) if recent else assets.SAMPLE_PHOTO
    _check_photo(photo)
    outputs = tuple(args.output or live.outputs)
    opts = LiveOptions(
        photo=photo,
        audio=args.audio or live.audio,
        outputs=outputs,
        fps=args.fps or live.fps,
        emotion=args.emotion or settings.emotion.default,
        intensity=args.intensity if args.intensity is not None else settings.emotion.intensity,
        fade_s=settings.emotion.crossfade_ms / 1000.0,
        provider=args.provider or settings.engine.provider,
        threads=settings.engine.threads,
        face_width_frac=settings.enroll.face_width_frac,
        motion_scale=settings.motion.scale,
        camera_device=live.camera_device,
        camera_retry_s=live.camera_retry_s,
        tray=live.tray and not args.no_tray,
        hotkeys=live.hotkeys and not args.no_hotkeys,
        hotkey_bindings=settings.hotkeys,
        seed=args.seed,
        badge=settings.provenance.badge,
        badge_corner=settings.provenance.badge_corner,
        mic=settings.mic.enabled and not args.no_mic,
        mic_name=settings.mic.name,
        mic_description=settings.mic.description,
        mic_device=settings.mic.device,
        av_offset_ms=args.av_offset_ms if args.av_offset_ms is not None else settings.mic.av_offset_ms,
    )
    with Daemon(opts) as daemon:
        where = ", ".join(outputs)
        sys.stderr.write(f"vcam: running {photo.name} -> {where} at {opts.fps} fps (stop: Ctrl+C or `vcam ctl quit`)\n")
        pick = daemon.pick_line()
        if pick:
            sys.stderr.write(f"vcam: {pick}\n")
        daemon.run()
    return EXIT_OK


# -- checks that fail fast, before any model loads --


def _check_photo(path: Path) -> None:
    from PIL import Image

    # Same wording as vcam.avatar.photo_io, which decodes the photo for real later.
    if not path.exists():
        raise InputError(f"photo not found: {path}")
    if path.is_dir():
        raise InputError(f"not an image: {path} (it is a folder)")
    try:
        with Image.open(path) as image:
            image.verify()  # headers and structure; no full decode
    except Image.DecompressionBombError as e:
        raise InputError(f"photo too large: {path} ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError):
        raise InputError(f"not an image: {path} (no image format recognised)") from None


def _check_audio(path: Path) -> None:
    from vcam.runtime.audio_file import check_audio

    check_audio(path)


def _check_out(path: Path, what: str, suffix: str | None, *, inputs: Sequence[Path]) -> None:
    if suffix is not None and path.suffix.lower() != suffix:
        raise InputError(f"{what} {path} must end in {suffix}")
    if path.is_dir():
        raise InputError(f"cannot write {what} {path}: it is a directory")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {what} {path}: directory {path.parent} does not exist")
    resolved = path.resolve()
    for other in inputs:
        if resolved == Path(other).resolve():
            raise InputError(f"{what} {path} would overwrite an input file")


# -- helpers --

_face_width = number_range(0.2, 0.8)


def _with_motion_scale(settings, scale: float | None):
    """``settings`` with ``[motion] scale`` replaced when ``--motion-scale`` was given."""
    import dataclasses

    if scale is None:
        return settings
    return dataclasses.replace(settings, motion=dataclasses.replace(settings.motion, scale=scale))


def _with_face_width(settings, face_width: float | None):
    """``settings`` with ``[enroll] face_width_frac`` replaced when ``--face-width`` was given."""
    if face_width is None:
        return settings
    import dataclasses

    return dataclasses.replace(settings, enroll=dataclasses.replace(settings.enroll, face_width_frac=face_width))


def _settings_for(args: argparse.Namespace):
    """The settings file (``--config``) with ``--face-width`` and ``--no-badge`` laid over it."""
    from vcam.app.settings import load_settings

    settings = _with_face_width(load_settings(args.config), args.face_width)
    return _with_motion_scale(_without_badge(settings, args.no_badge), getattr(args, "motion_scale", None))


def _without_badge(settings, no_badge: bool):
    """``settings`` with ``[provenance] badge`` off when ``--no-badge`` was given."""
    if not no_badge:
        return settings
    import dataclasses

    return dataclasses.replace(settings, provenance=dataclasses.replace(settings.provenance, badge=False))


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.WARNING, format="vcam: %(message)s", stream=sys.stderr)
    # -v: debug detail from vcam's own loggers only, not from Pillow, absl, ...
    for name in ("vcam", "runtime"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.NOTSET)


def _error(message: str, *, prefix: str = "vcam: error: ") -> None:
    sys.stderr.write(prefix + " ".join(message.split()) + "\n")


def _code(e: SystemExit) -> int:
    if e.code is None:
        return EXIT_OK
    return e.code if isinstance(e.code, int) else EXIT_USAGE
