"""``vcam ctl``: control a running vcam daemon through its control channel (:mod:`vcam.app.control`).

Each action sends one command and prints nothing on success, except ``status`` which prints a
summary (or JSON with ``--json``). Errors are ``VcamError`` subclasses: ``DeviceError`` when no
daemon answers, ``InputError`` for a bad argument or a command the daemon refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vcam.runtime.channels import EMOTIONS
from vcam.runtime.errors import InputError
from vcam.app.argtypes import motion_scale as _motion_scale, offset_ms as _offset_ms, unit as _unit

EXIT_OK = 0
_LABEL_WIDTH = 10


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register ``ctl`` on ``subparsers`` (from ``ArgumentParser.add_subparsers``); its parser."""
    ctl = subparsers.add_parser(
        "ctl",
        parents=[common_parent],
        help="control a running vcam daemon",
        description="Control a running vcam daemon: change the expression, pause, swap the photo, ...",
    )
    ctl.add_argument(
        "--address",
        metavar="ADDR",
        help="control socket path, or 'tcp' / 'tcp:FILE' (default: the daemon's default)",
    )
    ctl.add_argument(
        "--timeout", type=_positive, default=5.0, metavar="S", help="seconds to wait for the daemon (default: 5)"
    )
    actions = ctl.add_subparsers(dest="action", required=True, metavar="ACTION")

    emotion = actions.add_parser("emotion", help="cross-fade to an expression")
    emotion.add_argument("name", choices=EMOTIONS, metavar="NAME", help=f"one of: {', '.join(EMOTIONS)}")
    emotion.add_argument("--intensity", type=_unit, metavar="0..1", help="its strength (default: keep the current)")

    intensity = actions.add_parser("intensity", help="set the strength of the current expression")
    intensity.add_argument("value", type=_unit, metavar="0..1")

    motion = actions.add_parser("motion-scale", help="how much the head moves")
    motion.add_argument("value", type=_motion_scale, metavar="0..2", help="0 still, 1 a speaker's range, 2 lively")

    actions.add_parser("pause", help="pause lip motion")
    actions.add_parser("resume", help="resume lip motion")
    actions.add_parser("toggle-pause", help="pause or resume lip motion")

    photo = actions.add_parser("photo", help="swap in another portrait photo")
    photo.add_argument("path", type=Path, metavar="PATH", help="portrait photo (JPEG, PNG, WebP, ...)")

    audio = actions.add_parser("audio", help="switch the speech source")
    audio.add_argument("source", metavar="SOURCE", help="'mic', 'system' or an input device name")

    preview = actions.add_parser("preview", help="show or hide the preview window")
    preview.add_argument("state", choices=("on", "off", "toggle"), metavar="on|off|toggle")

    mic = actions.add_parser("mic", help="publish or remove the virtual microphone, or trim its delay")
    mic.add_argument("state", metavar="on|off|toggle|offset",
                     choices=("on", "off", "toggle", "offset"),
                     help="on, off, toggle; or offset MS (positive plays the voice later)")
    mic.add_argument("ms", nargs="?", type=_offset_ms, metavar="MS", help="with offset: -500..500 ms")

    status = actions.add_parser("status", help="show what the daemon is doing")
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    actions.add_parser("quit", help="stop the daemon")

    ctl.set_defaults(run=ctl_main, subparser=ctl)
    return ctl


def ctl_main(args: argparse.Namespace) -> int:
    """Run one ``vcam ctl`` action; the exit status."""
    from vcam.app.control_client import ControlClient

    client = ControlClient(getattr(args, "address", None), timeout_s=getattr(args, "timeout", 5.0))
    if args.action == "status":
        status = client.status()
        if args.json:
            sys.stdout.write(json.dumps(status, indent=2, sort_keys=False, default=str) + "\n")
        else:
            sys.stdout.write(format_status(status) + "\n")
        return EXIT_OK
    client.send(build_request(args))
    return EXIT_OK


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON request for a parsed non-``status`` action (see :func:`vcam.app.commands.to_json`)."""
    action = args.action
    if action == "emotion":
        return {"command": "emotion", "name": args.name, "intensity": args.intensity}
    if action == "intensity":
        return {"command": "intensity", "intensity": args.value}
    if action == "motion-scale":
        return {"command": "motion_scale", "scale": args.value}
    if action in ("pause", "resume", "toggle-pause"):
        return {"command": "pause", "paused": {"pause": True, "resume": False}.get(action)}
    if action == "photo":
        path = Path(args.path).expanduser().resolve()
        if not path.exists():
            raise InputError(f"photo not found: {args.path}")
        if path.is_dir():
            raise InputError(f"not an image: {args.path} (it is a folder)")
        return {"command": "photo", "path": str(path)}
    if action == "audio":
        if not args.source.strip():
            raise InputError("audio source must be 'mic', 'system' or a device name, got an empty string")
        return {"command": "audio", "source": args.source}
    if action == "preview":
        return {"command": "preview", "shown": {"on": True, "off": False}.get(args.state)}
    if action == "mic":
        if args.state == "offset":
            if args.ms is None:
                raise InputError("vcam ctl mic offset: expected a number of ms -500..500 (e.g. `vcam ctl mic offset 20`)")
            return {"command": "av_offset", "ms": args.ms}
        if args.ms is not None:
            raise InputError(f"vcam ctl mic {args.state}: takes no number (did you mean `vcam ctl mic offset {args.ms:g}`?)")
        return {"command": "mic", "on": {"on": True, "off": False}.get(args.state)}
    if action == "quit":
        return {"command": "quit"}
    raise InputError(f"unknown ctl action {action!r}")


# -- status --


def format_status(status: Mapping[str, Any]) -> str:
    """A readable summary of the daemon's status dict; keys it does not know are listed as
    ``key: value``, and a known key of an unexpected shape falls back to the same."""
    lines: list[str] = []
    done: set[str] = set()

    def section(keys: tuple[str, ...], render) -> None:
        present = [k for k in keys if k in status]
        if not present:
            return
        try:
            text = render()
        except (TypeError, ValueError, KeyError, AttributeError, IndexError):
            return  # leave these keys to the generic listing
        if text:
            lines.extend(text if isinstance(text, list) else [text])
        done.update(present)

    section(("uptime_s", "provider"), lambda: _line("daemon", _join(
        f"up {_duration(status['uptime_s'])}" if "uptime_s" in status else None,
        f"provider {status['provider']}" if "provider" in status else None,
    )))
    section(("photo",), lambda: _line("photo", _scalar(status["photo"])))
    section(("emotion", "intensity", "paused"), lambda: _line("emotion", _join(
        _scalar(status["emotion"]) if "emotion" in status else None,
        f"intensity {_num(_number(status['intensity']))}" if status.get("intensity") is not None else None,
        "lip motion paused" if "paused" in status and _bool(status["paused"]) else None,
    )))
    section(("motion_scale",), lambda: _line("head motion", f"x{_num(_number(status['motion_scale']))}"))
    section(("fps", "frames", "dropped"), lambda: _line("video", _join(
        f"{_num(_number(status['fps']))} fps" if "fps" in status else None,
        f"{int(status['frames'])} frames" if "frames" in status else None,
        f"{int(status['dropped'])} dropped" if "dropped" in status else None,
    )))
    section(("latency_ms",), lambda: _line("latency", _percentiles(status["latency_ms"])))
    section(("stages_ms",), lambda: _stages(status["stages_ms"]))
    section(("mic",), lambda: _line("mic", mic_summary(status["mic"])))
    section(("mouth_rise_ms", "onsets"), lambda: _line("mouth", mouth_summary(status)))
    for key, value in status.items():
        if key not in done:
            lines.extend(_generic(key, value, 0))
    return "\n".join(lines) if lines else "(the daemon reported no status)"


def mic_summary(mic: Mapping[str, Any]) -> str:
    """One line on the virtual microphone: state, name, delay, offset, underruns, error."""
    state = mic["state"]
    if state == "off":
        return "off" + (f" (offset {_num(_number(mic['offset_ms']))} ms)" if mic.get("offset_ms") else "")
    return _join(
        f"{state} \"{mic['device']}\"" if mic.get("device") else str(state),
        f"delay {_num(_number(mic['delay_ms']))} ms" if mic.get("delay_ms") is not None else None,
        f"offset {_num(_number(mic['offset_ms']))} ms" if mic.get("offset_ms") else None,
        f"{int(mic.get('underruns', 0))} underruns",
        f"error {mic['error']}" if mic.get("error") else None,
    )


def mouth_summary(status: Mapping[str, Any]) -> str:
    """One line on the mouth's measured rise after voice onsets (the microphone's delay uses it)."""
    text = f"half open {_num(_number(status['mouth_rise_ms']))} ms after a voice starts"
    onsets = status.get("onsets")
    if isinstance(onsets, Mapping):
        measured = int(onsets["measured"])
        text += (f" ({measured} of {int(onsets['found'])} onsets measured)" if measured
                 else " (the starting figure: no voice onset measured yet)")
    return text


def _stages(stages: Mapping[str, Any]) -> list[str]:
    if not isinstance(stages, Mapping):
        raise TypeError("stages_ms is not an object")
    width = max((len(str(name)) for name in stages), default=0)
    rows = [f"  {str(name):<{width}}  {_percentiles(value)}" for name, value in stages.items()]
    return [_line("stages", "")] + rows if rows else []


def _percentiles(value: Any) -> str:
    if isinstance(value, Mapping):
        parts = [f"{k} {_num(_number(v))} ms" for k, v in value.items()]
        if not parts:
            raise ValueError("no percentiles")
        return ", ".join(parts)
    return f"{_num(_number(value))} ms"


def _generic(key: str, value: Any, depth: int) -> list[str]:
    indent = "  " * depth
    label = f"{key}:"
    if isinstance(value, Mapping):
        if value and all(not isinstance(v, (Mapping, list, tuple)) for v in value.values()):
            flat = ", ".join(f"{k} {_scalar(v)}" for k, v in value.items())
            if len(indent) + _LABEL_WIDTH + len(flat) <= 100:
                return [f"{indent}{label:<{_LABEL_WIDTH}} {flat}"]
        if not value:
            return [f"{indent}{label:<{_LABEL_WIDTH}} -"]
        out = [f"{indent}{label}"]
        for k, v in value.items():
            out.extend(_generic(str(k), v, depth + 1))
        return out
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (Mapping, list, tuple)) for v in value):
            return [f"{indent}{label:<{_LABEL_WIDTH}} {', '.join(_scalar(v) for v in value) or '-'}"]
        out = [f"{indent}{label}"]
        for i, v in enumerate(value):
            out.extend(_generic(f"[{i}]", v, depth + 1))
        return out
    return [f"{indent}{label:<{_LABEL_WIDTH}} {_scalar(value)}"]


def _line(label: str, text: str) -> str:
    return f"{label + ':':<{_LABEL_WIDTH}} {text}".rstrip()


def _join(*parts: str | None) -> str:
    return ", ".join(p for p in parts if p)


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _num(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _duration(seconds: Any) -> str:
    s = int(_number(seconds))
    if s < 0:
        raise ValueError("negative uptime")
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m {sec:02d}s"
    if m:
        return f"{m}m {sec:02d}s"
    return f"{sec}s"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None
    if not 0.0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds 0..3600, got {text}")
    return value
