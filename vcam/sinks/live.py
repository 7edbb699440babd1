"""The live daemon's outputs: each a sink fed by its own :class:`~vcam.runtime.frame_slot.LatestFrameSlot`
thread (newest frame wins, drops counted), opened from a spec: ``camera``, ``preview``,
``y4m:PATH`` or ``-``."""

from __future__ import annotations

import logging
from typing import Any

from vcam.runtime.errors import InputError

log = logging.getLogger(__name__)


class LiveOutput:
    """One named output: the sink and the slot that feeds it on its own thread."""

    def __init__(self, spec: str, sink: Any) -> None:
        from vcam.runtime.frame_slot import LatestFrameSlot

        self.spec = spec
        self.sink = sink
        self.slot = LatestFrameSlot(lambda frame, t_ns: sink.write(frame), name=spec)

    def status(self) -> dict[str, Any]:
        s = {"written": self.slot.written, "dropped": self.slot.dropped, "errors": self.slot.errors,
             "error": self.slot.last_error}
        sub = getattr(self.sink, "status", None)
        if sub is not None:
            inner = sub()
            s["state"] = inner.get("state")
            s["device"] = inner.get("device")
            s["written"] = inner.get("frames_sent", s["written"])
            s["dropped"] += inner.get("dropped", 0)
            s["error"] = inner.get("error") or s["error"]
        elif getattr(self.sink, "open", True) is False:
            s["state"] = "closed by user"
        else:
            s["state"] = "running" if self.slot.errors == 0 else "failing"
        return s

    def close(self) -> None:
        self.slot.close()
        try:
            self.sink.close()
        except Exception as e:  # noqa: BLE001 - closing must go on for the others
            log.warning("closing output %s: %s", self.spec, e)


def open_output(spec: str, opts: Any) -> LiveOutput:
    """Open one live output: ``camera``, ``preview``, ``y4m:PATH`` or ``-``; ``opts`` is the
    daemon's :class:`vcam.app.daemon.LiveOptions` (``fps`` and the ``camera_*`` fields).

    Raises ``InputError`` for an unknown spec and ``DeviceError`` for a preview without a
    display. A missing virtual camera is not an error: the camera sink waits for one.
    """
    if spec == "camera":
        from vcam.sinks.camera import VirtualCameraSink

        sink = VirtualCameraSink(fps=opts.fps, device=opts.camera_device or None, retry_s=opts.camera_retry_s,
                                 backend=opts.camera_backend)
    elif spec == "preview":
        from vcam.sinks.preview import PreviewWindow

        sink = PreviewWindow()
    elif spec == "-" or spec.startswith("y4m:") or spec.lower().endswith(".y4m"):
        from vcam.sinks import open_sink

        sink = open_sink(spec, fps=opts.fps)
    else:
        raise InputError(f"unknown live output {spec!r}: use camera, preview, y4m:PATH or - (Y4M to stdout)")
    return LiveOutput(spec, sink)
