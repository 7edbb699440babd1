"""Virtual webcam sink through pyvirtualcam (v4l2loopback on Linux, OBS Virtual Camera on
Windows and macOS).

When no virtual camera exists, :class:`VirtualCameraSink` says once exactly how to get one
for this operating system, then tries again every ``retry_s`` seconds while frames keep
coming (the other outputs keep running meanwhile). A camera that fails while sending
(device removed, app closed it) is released and reopened the same way. The device is
released by :meth:`close` (SIGINT, SIGTERM, tray Quit all end there).
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np

log = logging.getLogger(__name__)


def how_to_get_a_camera(platform: str = sys.platform) -> str:
    """One paragraph: how to make a virtual camera available on ``platform``."""
    if platform.startswith("linux"):
        return ("no virtual camera found. Create one with: sudo modprobe v4l2loopback devices=1 "
                "exclusive_caps=1 card_label=vcam (Debian/Ubuntu package: v4l2loopback-dkms), and join the "
                "'video' group to write to it: sudo usermod -aG video $USER, then log in again. "
                "vcam keeps running and picks the camera up as soon as it appears")
    if platform == "darwin":
        return ("no virtual camera found. Install OBS Studio 30 or newer (macOS 13+), click 'Start Virtual "
                "Camera' once and allow the system extension, then stop it again. vcam keeps running and "
                "picks the camera up as soon as it appears")
    if platform == "win32":
        return ("no virtual camera found. Install OBS Studio 26 or newer, click 'Start Virtual Camera' once, "
                "then stop it again (OBS must not be using it). vcam keeps running and picks the camera "
                "up as soon as it appears")
    return "no virtual camera backend for this operating system; use --output preview, y4m:PATH or -"


class VirtualCameraSink:
    """Sends ``(512, 512, 3) uint8`` RGB frames to a virtual camera; a context manager.

    Parameters
    ----------
    fps, width, height:
        What the camera advertises.
    device:
        e.g. ``/dev/video10``; ``None`` or ``""``: the first one found.
    retry_s:
        Seconds between attempts while no camera can be opened.
    backend:
        A ``pyvirtualcam`` backend name (``None``: every registered backend in turn). Tests
        register one with ``pyvirtualcam.register_backend``.

    ``write`` never raises for a missing or lost camera: it drops the frame and counts it in
    :attr:`dropped` (the state is ``"waiting"``); :meth:`status` says what is going on.
    """

    def __init__(self, *, fps: float, width: int = 512, height: int = 512, device: str | None = None,
                 retry_s: float = 5.0, backend: str | None = None) -> None:
        self.fps, self.width, self.height = fps, width, height
        self.device = device or None
        self.retry_s = float(retry_s)
        self.backend = backend
        self._cam = None
        self._next_try_ns = 0
        self._told = False
        self._closed = False
        self.frames_sent = 0
        self.dropped = 0
        self.opens = 0
        self.last_error: str | None = None
        self.state = "waiting"
        self._try_open()

    def _try_open(self) -> bool:
        self._next_try_ns = time.monotonic_ns() + int(self.retry_s * 1e9)
        try:
            import pyvirtualcam

            self._cam = pyvirtualcam.Camera(self.width, self.height, self.fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                            device=self.device, backend=self.backend)
        except Exception as e:  # noqa: BLE001 - pyvirtualcam raises RuntimeError listing every backend
            self._cam = None
            self.last_error = " | ".join(str(e).split("\n"))
            self.state = "waiting"
            if not self._told:
                self._told = True
                log.warning("%s (%s)", how_to_get_a_camera(), self.last_error)
            return False
        self.opens += 1
        self.state = "running"
        self.last_error = None
        if self._told or self.opens > 1:
            log.warning("virtual camera %s is open", self._cam.device)
        else:
            log.info("virtual camera %s (%s backend)", self._cam.device, self._cam.backend)
        self._told = False
        return True

    @property
    def camera_device(self) -> str | None:
        """The open camera's device name, or ``None`` while waiting."""
        return self._cam.device if self._cam is not None else None

    def write(self, frame: np.ndarray) -> None:
        """Send one frame, or drop it (counted) while no camera is open."""
        if self._closed:
            raise ValueError("write to a closed VirtualCameraSink")
        if self._cam is None:
            if time.monotonic_ns() < self._next_try_ns or not self._try_open():
                self.dropped += 1
                return
        try:
            self._cam.send(frame)
            self.frames_sent += 1
        except (TypeError, ValueError):
            raise  # a wrong frame is a bug, not a lost device
        except Exception as e:  # noqa: BLE001 - the device went away: release, retry later
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("virtual camera lost (%s); retrying every %.0f s", self.last_error, self.retry_s)
            self._release()
            self._told = True
            self.dropped += 1

    def _release(self) -> None:
        cam, self._cam = self._cam, None
        self.state = "waiting"
        self._next_try_ns = time.monotonic_ns() + int(self.retry_s * 1e9)
        if cam is not None:
            try:
                cam.close()
            except Exception as e:  # noqa: BLE001
                log.debug("closing the camera: %s", e)

    def status(self) -> dict:
        """``{"state", "device", "frames_sent", "dropped", "error"}`` (JSON-safe)."""
        return {"state": "closed" if self._closed else self.state, "device": self.camera_device,
                "frames_sent": self.frames_sent, "dropped": self.dropped, "error": self.last_error}

    def close(self) -> None:
        """Release the camera device. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._release()
        self.state = "closed"

    def __enter__(self) -> VirtualCameraSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
