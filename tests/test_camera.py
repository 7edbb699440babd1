"""The virtual camera output through pyvirtualcam, with a backend registered for the test."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import pyvirtualcam

from vcam.sinks.camera import VirtualCameraSink, how_to_get_a_camera


class RecordingBackend:
    """A pyvirtualcam backend that keeps what it is sent; ``available`` and ``fail_send`` steer it."""

    available = True
    fail_send = False
    frames: list[tuple[int, tuple[int, ...]]] = []
    opened = 0
    closed = 0

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        if not RecordingBackend.available:
            raise RuntimeError("no such device (test backend switched off)")
        self.width, self.height, self.fps = width, height, fps
        self._device = device or "/dev/video-test"
        RecordingBackend.opened += 1

    def send(self, frame):
        if RecordingBackend.fail_send:
            raise OSError("No such device")
        RecordingBackend.frames.append((time.monotonic_ns(), frame.shape))

    def close(self):
        RecordingBackend.closed += 1

    def device(self):
        return self._device

    def native_fourcc(self):
        return None


@pytest.fixture
def backend():
    pyvirtualcam.register_backend("vcam-test", RecordingBackend)
    RecordingBackend.available, RecordingBackend.fail_send = True, False
    RecordingBackend.frames, RecordingBackend.opened, RecordingBackend.closed = [], 0, 0
    yield RecordingBackend
    pyvirtualcam.camera.BACKENDS.pop("vcam-test", None)


FRAME = np.zeros((512, 512, 3), np.uint8)


def test_frames_reach_the_camera_through_pyvirtualcam(backend):
    with VirtualCameraSink(fps=30, backend="vcam-test") as cam:
        assert cam.status()["state"] == "running"
        for _ in range(3):
            cam.write(FRAME)
        assert cam.camera_device == "/dev/video-test"
    assert [shape for _, shape in backend.frames] == [(512 * 512 * 3,)] * 3
    assert backend.closed == 1
    assert cam.status()["state"] == "closed"


def test_without_a_camera_it_explains_waits_and_picks_one_up(backend, caplog):
    backend.available = False
    with caplog.at_level(logging.WARNING):
        cam = VirtualCameraSink(fps=30, backend="vcam-test", retry_s=0.5)
        for _ in range(5):
            cam.write(FRAME)
    assert cam.status()["state"] == "waiting" and cam.dropped == 5
    told = [r.message for r in caplog.records if "virtual camera" in r.message]
    assert len(told) == 1 and how_to_get_a_camera().split(".")[0] in told[0]
    backend.available = True
    time.sleep(0.6)
    cam.write(FRAME)
    assert cam.status()["state"] == "running" and len(backend.frames) == 1
    cam.close()
    cam.close()


def test_a_lost_camera_is_released_and_reopened(backend):
    cam = VirtualCameraSink(fps=30, backend="vcam-test", retry_s=0.5)
    cam.write(FRAME)
    backend.fail_send = True
    cam.write(FRAME)  # the device went away: no exception
    assert cam.status()["state"] == "waiting" and backend.closed == 1
    backend.fail_send = False
    cam.write(FRAME)  # too soon to retry: dropped
    time.sleep(0.6)
    cam.write(FRAME)
    assert cam.status()["state"] == "running" and backend.opened == 2
    cam.close()
    assert backend.closed == 2


def test_a_wrong_frame_is_an_error_not_a_lost_device(backend):
    with VirtualCameraSink(fps=30, backend="vcam-test") as cam, pytest.raises(ValueError, match="frame shape"):
        cam.write(np.zeros((480, 640, 3), np.uint8))


@pytest.mark.parametrize("platform, needle", [("linux", "modprobe v4l2loopback devices=1 exclusive_caps=1"),
                                              ("darwin", "OBS"), ("win32", "OBS")])
def test_the_advice_fits_the_os(platform, needle):
    assert needle in how_to_get_a_camera(platform)
