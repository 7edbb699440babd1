"""End-to-end tests of the live daemon (``vcam run``) with real parts.

The daemon runs as a user starts it (``python -m vcam run ... --output -``), with Y4M frames
on its stdout, speech from a real PulseAudio null sink's monitor (``paplay`` plays into the
sink), a private control socket (``VCAM_CONTROL``), enrollment cache (``VCAM_CACHE_DIR``) and
state directory (``XDG_STATE_HOME``), hotkeys typed with xdotool on Xvfb, and ``vcam ctl``.
One test runs :class:`vcam.app.daemon.Daemon` in-process with a recording pyvirtualcam backend.

What the face does is measured in the frames, at places found by enrolling the same photo
(the portrait frame is the output frame). Head sway moves the whole face by several pixels,
so every measure is relative: a patch of the reference frames (the mean of a few frames
before the change) is found again in each frame by template matching, and a feature's
displacement is taken against a rigid one nearby:

* jaw drop: the chin's vertical displacement minus the subnasale's (mouth opening);
* lip motion: mean frame-to-frame luma change in a box on the inner lips (stillness);
* smile: the mouth corners' displacement, up (against the subnasale) and apart;
* brow raise: the brows' upward displacement against the nose bridge.

Set ``VCAM_TEST_SAVE_FRAMES=DIR`` to save PNGs of the frames the assertions look at.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_pulse import pulse_null_sink, pulse_without_modules  # noqa: F401 (fixtures)
from fixtures_x import x_display, x_env, xdotool  # noqa: F401 (fixtures)

from vcam.avatar import landmarks as L
from vcam.assets import ASSETS_DIR

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PulseAudio/Xvfb tests are Linux's")

REPO = Path(__file__).resolve().parents[1]
PAINTING = ASSETS_DIR / "painting_thomas_jefferson_rembrandt_peale.jpg"
ASTRONAUT = ASSETS_DIR / "photo_astronaut_eileen_collins.png"
SPEECH = ASSETS_DIR / "en_ljspeech_LJ001-0001.wav"
SPEECH_S = 4.0  # "Printing, in the only sense with which we are at present concerned," then a pause
FPS = 30
SIZE = 512
FRAME_BYTES = SIZE * SIZE * 3 // 2
START_TIMEOUT_S = 60.0
TEST_MIC = "vcam_test_mic"
PULSE_WARMUP_S = 2.5  # a new capture stream gets its first audio ~2 s late (PulseAudio renders ahead)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def enrolled(tmp_path_factory):
    """``(cache_dir, {photo: Portrait})``: the two portraits enrolled once into a private cache
    that every daemon of this module shares (so none of them enrolls again)."""
    cache = tmp_path_factory.mktemp("daemon-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("VCAM_CACHE_DIR", str(cache))
    try:
        from vcam.avatar.enroll import enroll

        portraits = {photo: enroll(photo) for photo in (PAINTING, ASTRONAUT)}
    finally:
        patch.undo()
    return cache, portraits


@pytest.fixture
def workdir():
    """A short private directory (a Unix socket path must stay under 104 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="vcamd-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemons(workdir, enrolled):
    """``start(*args, ...)`` -> a running :class:`LiveDaemon`; all are killed at teardown."""
    started: list[LiveDaemon] = []

    def start(*args: str, **kw) -> LiveDaemon:
        d = LiveDaemon(workdir, enrolled[0], *args, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


# --------------------------------------------------------------------------- the daemon


class Y4mReader(threading.Thread):
    """Reads the daemon's stdout: the header, then each frame with its arrival time."""

    def __init__(self, stream) -> None:
        super().__init__(name="y4m-reader", daemon=True)
        self.stream = stream
        self.header = b""
        self.frames: list[bytes] = []
        self.times: list[float] = []
        self.tail = b""  # a partial frame at EOF (must stay empty)
        self.eof = threading.Event()

    def run(self) -> None:
        s = self.stream
        try:
            self.header = s.readline()
            while True:
                tag = s.readline()
                if not tag:
                    return
                if tag != b"FRAME\n":
                    self.tail = tag
                    return
                buf = s.read(FRAME_BYTES)
                if len(buf) < FRAME_BYTES:
                    self.tail = buf
                    return
                self.frames.append(buf)
                self.times.append(time.monotonic())
        except (OSError, ValueError):
            pass
        finally:
            self.eof.set()

    def __len__(self) -> int:
        return len(self.frames)


class LiveDaemon:
    """``python -m vcam run --output - ...`` with a private control socket, cache and state."""

    _n = 0

    def __init__(self, workdir: Path, cache: Path, *args: str, outputs=("-",), config: str = "",
                 env: dict | None = None) -> None:
        LiveDaemon._n += 1
        n = LiveDaemon._n
        self.sock = workdir / "control.sock"
        cfg = workdir / f"config{n}.toml"
        if "[mic]" not in config:  # the microphone under the tests' own name (a desktop's vcam keeps vcam_mic)
            config += f'\n[mic]\nname = "{TEST_MIC}"\ndescription = "vcam test microphone"\n'
        cfg.write_text(config)
        self.env = {**os.environ, "VCAM_CONTROL": str(self.sock), "VCAM_CACHE_DIR": str(cache),
                    "XDG_STATE_HOME": str(workdir / "state"), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.err_path = workdir / f"stderr{n}.log"
        cmd = [sys.executable, "-m", "vcam", "run", "--config", str(cfg), "--no-tray", "--seed", "1",
               "--fps", str(FPS)]
        for out in outputs:
            cmd += ["--output", out]
        cmd += list(args)
        if "--provider" not in args:
            cmd += ["--provider", "cpu"]  # the same on a machine with a GPU
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                         cwd=REPO, env=self.env)
        self.reader = Y4mReader(self.proc.stdout)
        self.reader.start()
        from vcam.app.control_client import ControlClient

        self.client = ControlClient(str(self.sock), timeout_s=5.0)

    # -- waiting --

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def _check_alive(self, what: str) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited ({self.proc.returncode}) while waiting for {what}; "
                                 f"stderr:\n{self.stderr()[-2000:]}")

    def wait_frames(self, n: int, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while len(self.reader) < n:
            self._check_alive(f"{n} frames")
            assert time.monotonic() < deadline, f"only {len(self.reader)} frames after {timeout} s: {self.stderr()}"
            time.sleep(0.02)

    def wait_started(self) -> None:
        """Frames flowing and the control socket answering."""
        self.wait_frames(1)
        assert self.reader.header.startswith(f"YUV4MPEG2 W{SIZE} H{SIZE} F{FPS}:1 ".encode()), self.reader.header
        self.wait_status(lambda s: s.get("frames", 0) > 0, "a status with frames")

    def settle(self, timeout: float = 6.0) -> None:
        """Wait (at most ``timeout``) until the frames come steadily, 16 fps or more over the
        last 0.75 s: right after the start, on two cores, the first second is slow and jerky."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = time.monotonic()
            if len(self.since(now - 0.75)) >= 12 and now - self.reader.times[0] > 1.0:
                return
            self._check_alive("steady frames")
            time.sleep(0.05)

    def status(self) -> dict:
        return self.client.status()

    def wait_status(self, pred, what: str, timeout: float = 10.0) -> dict:
        from vcam.runtime.errors import VcamError

        deadline = time.monotonic() + timeout
        last = None
        while True:
            self._check_alive(what)
            try:
                last = self.status()
                if pred(last):
                    return last
            except VcamError as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s; last status: {json.dumps(last)[:1500]}")
            time.sleep(0.1)

    def wait_audio_flowing(self) -> None:
        """Audio state running, then long enough for PulseAudio's first audio to have come."""
        self.wait_status(lambda s: (s.get("audio") or {}).get("state") == "running" and s["frames"] > 0,
                         "audio state running")
        time.sleep(PULSE_WARMUP_S)

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "vcam", "ctl", *args], capture_output=True, text=True,
                           env=self.env, cwd=REPO, timeout=30, stdin=subprocess.DEVNULL)
        if check:
            assert r.returncode == 0, f"vcam ctl {' '.join(args)} -> {r.returncode}: {r.stderr}"
        return r

    # -- frames --

    def since(self, t0: float, t1: float = float("inf")) -> list[int]:
        """Indices of the frames that arrived in ``[t0, t1)``."""
        return [i for i, t in enumerate(list(self.reader.times)) if t0 <= t < t1]

    def luma(self, i: int) -> np.ndarray:
        return np.frombuffer(self.reader.frames[i], np.uint8, count=SIZE * SIZE).reshape(SIZE, SIZE)

    def rgb(self, i: int) -> np.ndarray:
        return yuv_to_rgb(self.reader.frames[i])

    def mean_luma(self, idx: list[int]) -> np.ndarray:
        assert idx, "no frames in the window"
        return np.mean([self.luma(i).astype(np.float32) for i in idx], axis=0)

    # -- ending --

    def wait_exit(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the daemon did not exit within {timeout} s; stderr:\n{self.stderr()}") from None
        self.reader.eof.wait(5.0)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.eof.wait(5.0)
        self.proc.stdout.close()


# --------------------------------------------------------------------------- measuring


def yuv_to_rgb(buf: bytes) -> np.ndarray:
    """A Y4M I420 frame (BT.601 limited range) as ``(512, 512, 3) uint8`` RGB."""
    a = np.frombuffer(buf, np.uint8)
    n, q = SIZE * SIZE, SIZE * SIZE // 4
    y = a[:n].reshape(SIZE, SIZE).astype(np.float32)
    u = a[n:n + q].reshape(SIZE // 2, SIZE // 2).astype(np.float32).repeat(2, 0).repeat(2, 1)
    v = a[n + q:].reshape(SIZE // 2, SIZE // 2).astype(np.float32).repeat(2, 0).repeat(2, 1)
    c, d, e = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
    rgb = np.stack([c + 1.402 * e, c - 0.344136 * d - 0.714136 * e, c + 1.772 * d], -1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def luma_of(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range luma of a full-range RGB image, as the Y4M output carries it."""
    y = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return 16 + y * 219 / 255


def save_frames(name: str, daemon: LiveDaemon, indices: list[int]) -> None:
    """With ``VCAM_TEST_SAVE_FRAMES=DIR``: the frames side by side as ``DIR/name.png``."""
    where = os.environ.get("VCAM_TEST_SAVE_FRAMES")
    if not where or not indices:
        return
    from PIL import Image

    Path(where).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([daemon.rgb(i) for i in indices], axis=1)).save(Path(where) / f"{name}.png")


def displacement(ref: np.ndarray, cur: np.ndarray, at, half: tuple[int, int], search: int) -> np.ndarray:
    """``(dx, dy)``, subpixel: where the patch of ``ref`` (``2*half+1`` high and wide, centred at
    ``at``) is found in ``cur`` within ``search`` pixels (normalised cross-correlation)."""
    import cv2

    cx, cy = int(round(float(at[0]))), int(round(float(at[1])))
    hy, hx = half
    patch = np.ascontiguousarray(ref[cy - hy:cy + hy + 1, cx - hx:cx + hx + 1], np.float32)
    region = np.ascontiguousarray(cur[cy - hy - search:cy + hy + search + 1,
                                      cx - hx - search:cx + hx + search + 1], np.float32)
    score = cv2.matchTemplate(region, patch, cv2.TM_CCOEFF_NORMED)
    j, i = np.unravel_index(int(np.argmax(score)), score.shape)

    def vertex(a: float, b: float, c: float) -> float:
        d = a - 2 * b + c
        return 0.0 if d >= 0 else 0.5 * (a - c) / d

    fx = vertex(score[j, i - 1], score[j, i], score[j, i + 1]) if 0 < i < score.shape[1] - 1 else 0.0
    fy = vertex(score[j - 1, i], score[j, i], score[j + 1, i]) if 0 < j < score.shape[0] - 1 else 0.0
    return np.array([i - search + fx, j - search + fy])


class Face:
    """Measures on output frames of one portrait, from its enrolled landmarks."""

    def __init__(self, landmarks: np.ndarray) -> None:
        lm = landmarks[:, :2].astype(np.float64)
        self.lm = lm
        self.subnasale = lm[L.SUBNASALE]
        self.chin = lm[L.CHIN]
        self.bridge = lm[6]  # nose bridge between the eyes
        self.corners = lm[L.MOUTH_CORNER_RIGHT], lm[L.MOUTH_CORNER_LEFT]  # image left, image right
        self.brows = (lm[list(L.RIGHT_BROW + L.RIGHT_BROW_LOWER)].mean(0),
                      lm[list(L.LEFT_BROW + L.LEFT_BROW_LOWER)].mean(0))
        inner = lm[list(L.LIPS_INNER_UPPER + L.LIPS_INNER_LOWER)]
        cx, cy = inner.mean(0)
        w = float(inner[:, 0].max() - inner[:, 0].min())
        self.lip_box = (int(cy - 0.3 * w), int(cy + 0.45 * w), int(cx - 0.4 * w), int(cx + 0.4 * w))

    def jaw_drop(self, ref: np.ndarray, cur: np.ndarray) -> float:
        """Pixels the chin moved down against the subnasale (> 0: the mouth opened)."""
        chin = displacement(ref, cur, self.chin, (8, 16), 16)
        nose = displacement(ref, cur, self.subnasale, (8, 14), 12)
        return float(chin[1] - nose[1])

    def smile(self, ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
        """``(lift, widen)`` in pixels: the mouth corners' rise against the subnasale, and how
        much further apart they are."""
        left = displacement(ref, cur, self.corners[0], (10, 12), 8)
        right = displacement(ref, cur, self.corners[1], (10, 12), 8)
        nose = displacement(ref, cur, self.subnasale, (8, 14), 8)
        return float(nose[1] - (left[1] + right[1]) / 2), float(right[0] - left[0])

    def brow_raise(self, ref: np.ndarray, cur: np.ndarray) -> float:
        """Pixels the brows moved up against the nose bridge."""
        bridge = displacement(ref, cur, self.bridge, (10, 10), 8)
        brows = [displacement(ref, cur, b, (8, 18), 8) for b in self.brows]
        return float(bridge[1] - (brows[0][1] + brows[1][1]) / 2)

    def lip_motion(self, daemon: LiveDaemon, idx: list[int]) -> np.ndarray:
        """Mean |luma change| from the previous frame in the inner-lip box, per frame of ``idx``."""
        y0, y1, x0, x1 = self.lip_box
        return np.array([np.abs(daemon.luma(i)[y0:y1, x0:x1].astype(np.float32)
                                - daemon.luma(i - 1)[y0:y1, x0:x1]).mean() for i in idx if i > 0])


def speech_clip() -> tuple[np.ndarray, int]:
    """The first :data:`SPEECH_S` seconds of the sample speech (a phrase, up to a pause)."""
    import soundfile as sf

    pcm, rate = sf.read(str(SPEECH), dtype="float32")
    return pcm[: int(SPEECH_S * rate)], rate


def play_speech(sink) -> float:
    """Play :func:`speech_clip` into the null sink; the time it was started."""
    pcm, rate = speech_clip()
    t = time.monotonic()
    sink.play(pcm, rate)
    return t


def lines_with(text: str, needle: str) -> list[str]:
    return [ln for ln in text.splitlines() if needle in ln]


# --------------------------------------------------------------------------- 1. speech


@pytest.mark.slow
def test_system_audio_through_a_null_sink_moves_the_mouth_then_it_rests(pulse_null_sink, daemons, enrolled):
    face = Face(enrolled[1][PAINTING].landmarks)
    d = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, "--no-hotkeys")
    d.wait_started()
    d.wait_audio_flowing()
    t_play = play_speech(pulse_null_sink)
    time.sleep(SPEECH_S + 2.2)
    status = d.status()

    rest_idx = d.since(t_play - 1.2, t_play)
    speech_idx = d.since(t_play + 0.3, t_play + SPEECH_S - 0.1)
    after_idx = d.since(t_play + SPEECH_S + 1.0, t_play + SPEECH_S + 2.2)
    assert len(rest_idx) >= 12 and len(speech_idx) >= 45 and len(after_idx) >= 12, (
        f"frames: {len(rest_idx)} rest, {len(speech_idx)} speech, {len(after_idx)} after; {status}")
    ref = d.mean_luma(rest_idx[-6:])
    jaw_rest = np.array([face.jaw_drop(ref, d.luma(i)) for i in rest_idx])
    jaw_speech = np.array([face.jaw_drop(ref, d.luma(i)) for i in speech_idx])
    jaw_after = np.array([face.jaw_drop(ref, d.luma(i)) for i in after_idx])
    move_rest, move_speech, move_after = (face.lip_motion(d, idx) for idx in (rest_idx, speech_idx, after_idx))
    report = (f"jaw drop px p90: rest {np.percentile(np.abs(jaw_rest), 90):.2f}, speech "
              f"{np.percentile(jaw_speech, 90):.2f} (max {jaw_speech.max():.1f}, open > 2 px in "
              f"{np.mean(jaw_speech > 2):.0%}), after {np.percentile(np.abs(jaw_after), 90):.2f}; lip motion "
              f"rest {move_rest.mean():.2f}, speech {move_speech.mean():.2f}, after {move_after.mean():.2f}; "
              f"audio {status['audio']}")
    print(report)
    open_i = speech_idx[int(np.argmax(jaw_speech))]
    save_frames("speech_rest_open_after", d, [rest_idx[-1], open_i, after_idx[-1]])

    # the mouth opens during speech, clearly above the silence level ...
    rest_level = float(np.percentile(np.abs(jaw_rest), 90))
    assert np.percentile(jaw_speech, 90) > max(4.0, rest_level + 3.0), report
    assert np.mean(jaw_speech > 2.0) > 0.35, report
    assert move_speech.mean() > max(1.5, 4 * move_rest.mean()), report
    # ... and rests in the silence afterwards: closed again, and nearly still
    assert np.percentile(np.abs(jaw_after), 90) < min(2.0, 0.25 * np.percentile(jaw_speech, 90)), report
    assert move_after.mean() < max(1.0, 3 * move_rest.mean()), report
    assert status["audio"]["state"] == "running" and status["errors"] == 0, status


# --------------------------------------------------------------------------- 2. hotkeys


@pytest.mark.slow
def test_hotkey_ctrl_alt_2_makes_the_face_smile(x_env, pulse_null_sink, daemons, enrolled):
    face = Face(enrolled[1][PAINTING].landmarks)
    d = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, env={"DISPLAY": x_env})
    d.wait_started()
    s = d.wait_status(lambda s: (s.get("hotkeys") or {}).get("active"), "hotkeys active")
    assert s["emotion"] == "neutral"
    d.settle()
    time.sleep(1.0)
    t_key = time.monotonic()
    xdotool(x_env, "key", "ctrl+alt+2")
    d.wait_status(lambda s: s["emotion"] == "happy", "emotion happy after ctrl+alt+2", timeout=5.0)
    time.sleep(max(0.0, t_key + 1.6 - time.monotonic()))

    before = d.since(t_key - 1.0, t_key)
    after = d.since(t_key + 0.8, t_key + 1.6)
    assert len(before) >= 12 and len(after) >= 8, (len(before), len(after))
    ref = d.mean_luma(before[-5:])
    pre = np.array([face.smile(ref, d.luma(i)) for i in before])
    post = np.array([face.smile(ref, d.luma(i)) for i in after])
    lift_noise, widen_noise = pre.std(0) + 0.05
    lift, widen = post.mean(0) - pre.mean(0)
    report = (f"corner lift {lift:+.2f} px (noise {lift_noise:.2f}), widening {widen:+.2f} px "
              f"(noise {widen_noise:.2f})")
    print(report)
    save_frames("smile_before_after", d, [before[-1], after[-1]])
    assert lift > max(0.4, 3 * lift_noise), report  # the corners go up ...
    assert widen > max(2.0, 4 * widen_noise), report  # ... and apart: a smile
    assert d.status()["emotion"] == "happy"


# --------------------------------------------------------------------------- 3. vcam ctl


@pytest.mark.slow
def test_vcam_ctl_drives_a_running_daemon(pulse_null_sink, daemons, enrolled):
    face = Face(enrolled[1][PAINTING].landmarks)
    d = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, "--no-hotkeys")
    d.wait_started()
    t_start = time.monotonic()  # audio capture opened: its first audio comes ~2 s later
    mode = os.stat(d.sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)

    # status --json: frames, fps, latency
    d.wait_status(lambda s: s.get("uptime_s", 0) > 1.2 and s.get("fps"), "an fps figure")
    status = json.loads(d.ctl("status", "--json").stdout)
    assert status["frames"] > 0 and 10 < status["fps"] <= FPS + 1, status
    assert set(status["latency_ms"]) >= {"p50", "p95"} and status["provider"] == "cpu", status
    assert status["audio"]["source"] == pulse_null_sink.monitor, status
    assert "video:" in d.ctl("status").stdout

    # motion-scale: applied between frames, reported in the status
    assert status["motion_scale"] == 1.0
    d.ctl("motion-scale", "0")
    d.wait_status(lambda s: s.get("motion_scale") == 0.0, "motion_scale 0 in status")
    assert "head motion: x0" in d.ctl("status").stdout
    d.ctl("motion-scale", "1")
    d.wait_status(lambda s: s.get("motion_scale") == 1.0, "motion_scale 1 in status")

    # emotion surprised raises the brows
    d.settle()
    time.sleep(0.8)
    t_emo = time.monotonic()
    d.ctl("emotion", "surprised")
    time.sleep(1.5)
    before, after = d.since(t_emo - 0.8, t_emo), d.since(t_emo + 0.8, t_emo + 1.5)
    ref = d.mean_luma(before[-5:])
    pre = np.array([face.brow_raise(ref, d.luma(i)) for i in before])
    post = np.array([face.brow_raise(ref, d.luma(i)) for i in after])
    raised, noise = post.mean() - pre.mean(), pre.std() + 0.05
    report = f"brows raised {raised:+.2f} px (noise {noise:.2f}; {len(before)} / {len(after)} frames)"
    print(report)
    save_frames("surprise_before_after", d, [before[-1], after[-1]])
    assert raised > max(0.6, 3 * noise), report
    assert d.status()["emotion"] == "surprised"
    d.ctl("emotion", "neutral")

    # pause: speech leaves the mouth still; resume (speech still playing): it moves again
    d.ctl("pause")
    d.wait_status(lambda s: s["paused"] is True and s["emotion"] == "neutral", "paused in status")
    # the jaw dropped by the surprise takes a second to close again
    time.sleep(max(1.5, t_start + PULSE_WARMUP_S + 0.5 - time.monotonic()))
    t_play = play_speech(pulse_null_sink)
    time.sleep(2.0)
    d.ctl("resume")
    t_resume = time.monotonic()
    time.sleep(max(0.0, t_play + SPEECH_S + 0.2 - time.monotonic()))
    d.wait_status(lambda s: s["paused"] is False, "resumed in status")
    assert d.status()["audio"]["state"] == "running"
    ref_idx = d.since(t_play - 0.6, t_play)
    ref = d.mean_luma(ref_idx[-5:])
    paused_idx, resumed_idx = d.since(t_play + 0.3, t_resume - 0.1), d.since(t_resume + 0.4, t_play + SPEECH_S - 0.1)
    jaw_paused = np.array([face.jaw_drop(ref, d.luma(i)) for i in paused_idx])
    jaw_resumed = np.array([face.jaw_drop(ref, d.luma(i)) for i in resumed_idx])
    move_paused = face.lip_motion(d, paused_idx)
    report = (f"paused: jaw p90 {np.percentile(np.abs(jaw_paused), 90):.2f} px, lip motion {move_paused.mean():.2f} "
              f"({len(paused_idx)} frames); resumed: jaw p90 {np.percentile(jaw_resumed, 90):.2f} px "
              f"({len(resumed_idx)} frames)")
    print(report)
    save_frames("paused_speech_then_resumed", d, [paused_idx[len(paused_idx) // 2],
                                                  resumed_idx[int(np.argmax(jaw_resumed))]])
    assert len(paused_idx) >= 20 and len(resumed_idx) >= 12, report
    assert np.percentile(np.abs(jaw_paused), 90) < 2.0 and move_paused.mean() < 1.0, report
    assert np.percentile(jaw_resumed, 90) > 3.0, report

    # photo: the portrait changes and the frames keep coming
    astronaut, painting = (luma_of(enrolled[1][p].image) for p in (ASTRONAUT, PAINTING))
    t_photo = time.monotonic()
    d.ctl("photo", str(ASTRONAUT))
    s = d.wait_status(lambda s: s["photo"] == str(ASTRONAUT), "the new photo in status")
    time.sleep(0.8)
    during = d.since(t_photo - 0.1)
    gaps = np.diff([d.reader.times[i] for i in during])
    last = d.luma(during[-1]).astype(np.float32)
    far_astronaut, far_painting = np.abs(last - astronaut).mean(), np.abs(last - painting).mean()
    print(f"photo swap: {len(during)} frames in {time.monotonic() - t_photo:.1f} s, longest gap "
          f"{gaps.max() * 1000:.0f} ms; luma distance to astronaut {far_astronaut:.1f}, to painting {far_painting:.1f}")
    save_frames("photo_swapped", d, [during[0], during[-1]])
    assert gaps.max() < 1.0, f"the output stalled {gaps.max():.2f} s while the photo changed"
    assert far_astronaut < 0.5 * far_painting and far_astronaut < 20, (far_astronaut, far_painting)
    assert s["last_error"] is None

    # quit: exit 0, the socket is gone, the Y4M stream ends on a frame boundary
    n = len(d.reader)
    d.ctl("quit")
    assert d.wait_exit(5.0) == 0, d.stderr()
    assert not d.sock.exists()
    assert d.reader.eof.is_set() and d.reader.tail == b"" and len(d.reader) > n
    assert "Traceback" not in d.stderr()
    r = d.ctl("status", check=False)
    assert r.returncode == 2 and "no vcam daemon is running" in r.stderr


# --------------------------------------------------------------------------- 4. pyvirtualcam


class RecordingCamera:
    """A pyvirtualcam backend that records arrival time, shape and dtype of what it is sent."""

    sent: list[tuple[float, tuple[int, ...], np.dtype]] = []
    sample: np.ndarray | None = None
    closed = 0

    def __init__(self, *, width, height, fps, fourcc, device, **kw) -> None:
        self.size = (width, height, fps)

    def send(self, frame: np.ndarray) -> None:
        RecordingCamera.sent.append((time.monotonic(), frame.shape, frame.dtype))
        RecordingCamera.sample = frame.copy()

    def close(self) -> None:
        RecordingCamera.closed += 1

    def device(self) -> str:
        return "/dev/video-recording"

    def native_fourcc(self):
        return None


@pytest.mark.slow
def test_in_process_daemon_feeds_a_pyvirtualcam_backend(pulse_null_sink, workdir, enrolled, monkeypatch):
    import pyvirtualcam

    from vcam.app.daemon import Daemon, LiveOptions

    monkeypatch.setenv("VCAM_CACHE_DIR", str(enrolled[0]))
    monkeypatch.setenv("XDG_STATE_HOME", str(workdir / "state"))
    pyvirtualcam.register_backend("vcam-daemon-test", RecordingCamera)
    RecordingCamera.sent, RecordingCamera.sample, RecordingCamera.closed = [], None, 0
    opts = LiveOptions(photo=PAINTING, audio=pulse_null_sink.monitor, outputs=("camera",), fps=FPS,
                       emotion="neutral", intensity=0.8, fade_s=0.3, provider="cpu",
                       camera_backend="vcam-daemon-test", tray=False, hotkeys=False,
                       control_address=str(workdir / "control.sock"), seed=1)
    try:
        daemon = Daemon(opts)
        runner = threading.Thread(target=daemon.run, name="daemon-run", daemon=True)
        try:
            runner.start()
            deadline = time.monotonic() + 30
            while not RecordingCamera.sent:
                assert time.monotonic() < deadline, "no frame reached the camera"
                time.sleep(0.02)
            time.sleep(0.5)
            t0, engine_frames = time.monotonic(), daemon.engine.frames
            time.sleep(1.5)
            engine_frames = daemon.engine.frames - engine_frames
            status = daemon.status()
            from vcam.app.control_client import ControlClient

            assert ControlClient(opts.control_address).status()["frames"] > 0
        finally:
            daemon.stop()
            runner.join(10)
            daemon.close()
    finally:
        pyvirtualcam.camera.BACKENDS.pop("vcam-daemon-test", None)
    assert not runner.is_alive()
    window = [(t, shape, dtype) for t, shape, dtype in RecordingCamera.sent if t0 <= t < t0 + 1.5]
    intervals = np.diff([t for t, _, _ in window]) * 1000
    print(f"camera: {len(window)} frames in 1.5 s (the engine drew {engine_frames}), median interval "
          f"{np.median(intervals):.1f} ms, status fps {status['fps']}")
    assert {(shape, dtype) for _, shape, dtype in RecordingCamera.sent} == {((SIZE * SIZE * 3,), np.dtype(np.uint8))}
    # about the set 30 fps: loose bounds, as two cores shared with other work give 23..30 fps
    assert 24 <= len(window) <= 55, len(window)
    assert 25 <= np.median(intervals) <= 60, np.median(intervals)
    assert len(window) >= engine_frames - 3, "frames were lost between the engine and the camera"
    assert RecordingCamera.sample.std() > 20  # a picture, not a blank
    assert status["outputs"]["camera"]["state"] == "running", status["outputs"]
    assert status["outputs"]["camera"]["device"] == "/dev/video-recording"
    assert RecordingCamera.closed == 1  # close() released the camera
    assert not (workdir / "control.sock").exists()


# --------------------------------------------------------------------------- 5. faults


@pytest.mark.slow
def test_audio_device_vanishing_and_returning(pulse_null_sink, daemons, enrolled):
    face = Face(enrolled[1][PAINTING].landmarks)
    d = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, "--no-hotkeys")
    d.wait_started()
    d.wait_status(lambda s: s["audio"]["state"] == "running", "audio running")
    time.sleep(0.5)
    t_lost = time.monotonic()
    pulse_null_sink.unload()
    s = d.wait_status(lambda s: s["audio"]["state"] == "waiting", "audio state waiting", timeout=5.0)
    assert pulse_null_sink.monitor in (s["audio"]["error"] or ""), s["audio"]
    silence_fed = s["silence_fed_ms"]
    t_waiting = time.monotonic()
    time.sleep(1.5)
    s = d.status()
    assert s["audio"]["state"] == "waiting" and s["silence_fed_ms"] > silence_fed + 1000, s
    gone = d.since(t_waiting, t_waiting + 1.5)
    ref = d.mean_luma(d.since(t_lost - 0.4, t_lost))
    jaw = np.array([face.jaw_drop(ref, d.luma(i)) for i in gone])
    print(f"audio lost: {len(gone)} frames in 1.5 s, jaw p90 {np.percentile(np.abs(jaw), 90):.2f} px; {s['audio']}")
    assert len(gone) >= 20, "frames must keep flowing while the audio device is gone"
    assert np.percentile(np.abs(jaw), 90) < 2.0  # the face idles, mouth closed

    pulse_null_sink.reload()
    s = d.wait_status(lambda s: s["audio"]["state"] == "running", "audio running again", timeout=8.0)
    assert s["audio"]["reopens"] >= 1 and s["audio"]["error"] is None, s["audio"]
    n = len(d.reader)
    d.wait_frames(n + 10, timeout=5.0)
    assert d.status()["errors"] == 0


@pytest.mark.slow
def test_no_camera_device_advises_once_and_keeps_streaming(pulse_null_sink, daemons):
    config = "[live]\ncamera_retry_s = 0.5\n"
    if list(Path("/dev").glob("video*")):  # a real camera would open: point at one that is not there
        config += 'camera_device = "/dev/video-vcam-test-missing"\n'
    d = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, "--no-hotkeys",
                outputs=("camera", "-"), config=config)
    d.wait_started()
    t0 = time.monotonic()
    time.sleep(2.0)  # several retries
    s = d.status()
    flowing = d.since(t0, t0 + 2.0)
    d.kill()
    err = d.stderr()
    advice = lines_with(err, "modprobe v4l2loopback")
    assert len(advice) == 1, err
    assert s["outputs"]["camera"]["state"] == "waiting" and s["outputs"]["camera"]["dropped"] > 30, s["outputs"]
    assert s["outputs"]["-"]["state"] == "running", s["outputs"]
    assert len(flowing) >= 30, f"{len(flowing)} Y4M frames in 2 s"
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_provider_that_fails_to_load_falls_back_to_the_cpu(pulse_null_sink, daemons):
    d = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, "--no-hotkeys", "--provider", "cuda")
    d.wait_started()
    s = d.status()
    d.wait_frames(len(d.reader) + 15, timeout=5.0)
    err = d.stderr()
    if s["provider"] == "cuda":  # CUDA works here: nothing to fall back from
        assert "CUDA" not in err
        return
    assert s["provider"] == "cpu" and s["errors"] == 0, s
    said = [ln for ln in err.splitlines()
            if ln.startswith("vcam:") and not ln.startswith(("vcam: running", "vcam: in the call app"))]
    assert len(said) == 1 and "CUDA" in said[0] and "CPU" in said[0], err
    assert "Traceback" not in err


@pytest.mark.slow
def test_live_frames_saved_as_mp4_verify_as_made_by_vcam(pulse_null_sink, daemons, workdir):
    """Frames taken from ``vcam run --output -`` and saved as an MP4 carry the watermark (and
    the badge): ``vcam verify`` says so. The daemon runs with its default settings."""
    d = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, "--no-hotkeys")
    d.wait_started()
    d.wait_frames(len(d.reader) + 40, timeout=10.0)
    d.kill()
    y4m = workdir / "live.y4m"
    with open(y4m, "wb") as f:
        f.write(d.reader.header)
        for frame in d.reader.frames[-40:]:
            f.write(b"FRAME\n" + frame)
    mp4 = workdir / "live.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(y4m), "-c:v", "libx264", "-crf", "23", str(mp4)],
                   check=True, timeout=60)
    r = subprocess.run([sys.executable, "-m", "vcam", "verify", str(mp4), str(y4m)], capture_output=True, text=True,
                       cwd=REPO, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("made by vcam (confidence") == 2, r.stdout
    y = np.frombuffer(d.reader.frames[-1], np.uint8)[:SIZE * SIZE].reshape(SIZE, SIZE)
    assert y[482:502, 468:502].max() > 200  # the badge's white "AI", bottom right


def test_a_photo_that_is_no_image_exits_2_with_one_line(workdir):
    text = workdir / "notes.txt"
    text.write_text("not a picture\n")
    env = {**os.environ, "VCAM_CONTROL": str(workdir / "control.sock"), "VCAM_CACHE_DIR": str(workdir / "cache"),
           "XDG_STATE_HOME": str(workdir / "state")}
    r = subprocess.run([sys.executable, "-m", "vcam", "run", "--photo", str(text), "--output", "-", "--no-tray",
                        "--no-hotkeys"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r
    assert r.stderr.splitlines() == [f"vcam: error: not an image: {text} (no image format recognised)"], r.stderr
    assert r.stdout == "" and not (workdir / "control.sock").exists()


@pytest.mark.slow
def test_a_second_daemon_on_the_same_address_is_refused(pulse_null_sink, daemons):
    first = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, "--no-hotkeys")
    first.wait_started()
    r = subprocess.run([sys.executable, "-m", "vcam", "run", "--photo", str(PAINTING), "--audio",
                        pulse_null_sink.monitor, "--output", "-", "--no-tray", "--no-hotkeys", "--provider", "cpu"],
                       capture_output=True, env=first.env, cwd=REPO, timeout=60, stdin=subprocess.DEVNULL)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, err
    assert len(err.splitlines()) == 1 and "already running" in err and "Traceback" not in err, err
    assert r.stdout == b""
    n = len(first.reader)
    first.wait_frames(n + 10, timeout=5.0)  # the first one is unharmed
    assert first.sock.exists() and first.status()["frames"] > 0


# --------------------------------------------------------------------------- 6. SIGTERM


@pytest.mark.slow
def test_sigterm_exits_0_and_removes_the_socket(pulse_null_sink, daemons):
    d = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, "--no-hotkeys")
    d.wait_started()
    d.wait_frames(len(d.reader) + 10, timeout=5.0)
    assert d.sock.exists()
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    rc = d.wait_exit(5.0)
    took = time.monotonic() - t0
    print(f"SIGTERM -> exit {rc} in {took:.2f} s")
    assert rc == 0, d.stderr()
    assert not d.sock.exists()
    assert d.reader.eof.is_set() and d.reader.tail == b""
    assert "Traceback" not in d.stderr()


def test_a_missing_microphone_at_start_is_waited_for(workdir, enrolled, monkeypatch):
    """No input device when the daemon starts (no sound server yet): it runs, idles, retries."""
    import vcam.runtime.audio_in as audio_in
    from vcam.runtime.audio_ring import AudioRing
    from vcam.runtime.errors import DeviceError
    from vcam.app import daemon as daemon_mod
    from vcam.app.daemon import Daemon, LiveOptions

    class LateSource:
        attempts = 0

        def __init__(self, spec, **_kw):
            self.spec, self.ring = spec, AudioRing(32000, 16000)

        def start(self):
            LateSource.attempts += 1
            if LateSource.attempts < 3:
                raise DeviceError("audio input 'mic': there is no default input device; inputs: none")

        def status(self):
            return {"source": self.spec, "device": "late-mic", "state": "running"}

        def close(self):
            pass

    monkeypatch.setenv("VCAM_CACHE_DIR", str(enrolled[0]))
    monkeypatch.setenv("XDG_STATE_HOME", str(workdir / "state"))
    monkeypatch.setattr(audio_in, "AudioSource", LateSource)
    monkeypatch.setattr(daemon_mod, "AUDIO_RETRY_S", 0.2)
    opts = LiveOptions(photo=PAINTING, audio="mic", outputs=(), fps=FPS, emotion="neutral", intensity=0.8,
                       fade_s=0.3, provider="cpu", tray=False, hotkeys=False,
                       control_address=str(workdir / "control.sock"), seed=1)
    with Daemon(opts) as daemon:
        assert daemon.status()["audio"]["state"] == "waiting"
        runner = threading.Thread(target=daemon.run, daemon=True)
        runner.start()
        deadline = time.monotonic() + 10
        while daemon.status()["audio"]["state"] != "running":
            assert time.monotonic() < deadline, daemon.status()["audio"]
            time.sleep(0.05)
        assert daemon.engine.frames > 0
        daemon.stop()
        runner.join(5)
    # a device asked for by name that is not there is an error at start (likely a typo)
    LateSource.attempts = -10
    with pytest.raises(DeviceError):
        Daemon(LiveOptions(photo=PAINTING, audio="Blue Yeti", outputs=(), fps=FPS, emotion="neutral",
                           intensity=0.8, fade_s=0.3, provider="cpu", tray=False, hotkeys=False,
                           control_address=str(workdir / "control2.sock"), seed=1))


# --------------------------------------------------------------------------- the virtual microphone


def _pulse_sources() -> list[str]:
    out = subprocess.run(["pactl", "list", "short", "sources"], capture_output=True, text=True, timeout=10).stdout
    return [line.split("\t")[1] for line in out.splitlines() if "\t" in line]


def _wait_sources(pred, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred(_pulse_sources()):
        assert time.monotonic() < deadline, f"{what}: sources {_pulse_sources()}"
        time.sleep(0.1)


def test_vcam_run_publishes_a_microphone_that_ctl_turns_off_and_on(pulse_null_sink, daemons):
    """With no microphone option, `vcam run` gives a camera and a microphone; it says once what
    to pick; `vcam ctl mic` removes and restores it and trims the delay; on exit it is gone."""
    d = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, "--no-hotkeys")
    d.wait_started()
    assert TEST_MIC in _pulse_sources()

    def follows(s) -> bool:  # the delay is the engine's latency + the mouth's rise + 3 ms (updated 5x a second)
        p50 = s["latency_ms"]["p50"]
        return s["mic"]["state"] == "running" and p50 is not None and \
            abs(s["mic"]["delay_ms"] - (p50 + s["mouth_rise_ms"] + 3.0)) < 5.0

    mic = d.wait_status(follows, "mic delay following the engine's latency")["mic"]
    assert mic["device"] == "vcam test microphone" and mic["underruns"] == 0, mic
    picks = [ln for ln in d.stderr().splitlines() if "pick" in ln]
    assert len(picks) == 1 and '"vcam test microphone"' in picks[0], d.stderr()
    assert "mic:" in d.ctl("status").stdout

    d.ctl("mic", "offset", "40")
    d.wait_status(lambda s: s["mic"]["offset_ms"] == 40.0, "offset 40")
    d.ctl("mic", "off")
    _wait_sources(lambda names: TEST_MIC not in names, "mic off")
    assert d.wait_status(lambda s: s["mic"]["state"] == "off", "mic off")["mic"]["offset_ms"] == 40.0
    d.ctl("mic", "on")
    _wait_sources(lambda names: TEST_MIC in names, "mic on")
    st = d.wait_status(lambda s: s["mic"]["state"] == "running", "mic on again")
    assert st["mic"]["offset_ms"] == 40.0
    n = len(d.reader)
    d.wait_frames(n + 20, timeout=5.0)  # the camera never stopped

    d.ctl("quit")
    assert d.wait_exit(20) == 0, d.stderr()
    assert TEST_MIC not in _pulse_sources() and f"{TEST_MIC}_feed" not in " ".join(_pulse_sources())


def test_a_second_daemon_refuses_the_microphone_name(pulse_null_sink, daemons, workdir):
    first = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, "--no-hotkeys")
    first.wait_started()
    env = {**first.env, "VCAM_CONTROL": str(workdir / "second.sock")}
    cfg = workdir / "second.toml"
    cfg.write_text(f'[mic]\nname = "{TEST_MIC}"\n')
    r = subprocess.run([sys.executable, "-m", "vcam", "run", "--config", str(cfg), "--photo", str(PAINTING),
                        "--audio", pulse_null_sink.monitor, "--output", "-", "--no-tray", "--no-hotkeys",
                        "--provider", "cpu"], capture_output=True, env=env, cwd=REPO, timeout=90,
                       stdin=subprocess.DEVNULL)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("vcam:")]
    assert len(lines) == 1 and f"pid {first.proc.pid}" in lines[0] and "Traceback" not in err, err
    assert TEST_MIC in _pulse_sources()  # the first one's microphone is untouched
    assert first.status()["mic"]["state"] == "running"


def test_no_mic_publishes_no_microphone(pulse_null_sink, daemons):
    d = daemons("--photo", str(PAINTING), "--audio", pulse_null_sink.monitor, "--no-hotkeys", "--no-mic")
    d.wait_started()
    assert d.status()["mic"]["state"] == "off"
    assert TEST_MIC not in _pulse_sources()
    assert not [ln for ln in d.stderr().splitlines() if "microphone" in ln]


def test_the_microphone_never_hears_itself(pulse_null_sink, daemons):
    """A machine without a real input makes vcam's own source the default one: with --audio mic
    vcam would capture its own microphone, an echo without end. It keeps the microphone silent
    and says why, and un-mutes when a real input is the default again."""
    pulse_null_sink.set_default()
    old = subprocess.run(["pactl", "get-default-source"], capture_output=True, text=True).stdout.strip()
    d = daemons("--photo", str(PAINTING), "--audio", "mic", "--no-hotkeys")
    d.wait_started()
    d.wait_status(lambda s: s["mic"]["state"] == "running", "mic running")
    assert d.status()["mic"]["muted"] is False
    try:
        subprocess.run(["pactl", "set-default-source", TEST_MIC], check=True)
        st = d.wait_status(lambda s: s["mic"]["muted"] is True, "muted", timeout=8.0)
        assert "hear itself" in (st["last_error"] or ""), st["last_error"]
    finally:
        subprocess.run(["pactl", "set-default-source", old or pulse_null_sink.monitor])
    d.wait_status(lambda s: s["mic"]["muted"] is False, "un-muted", timeout=8.0)


def test_a_sound_server_without_module_support_warns_once_and_the_camera_runs(pulse_without_modules, daemons):
    """A real sound server that refuses every module (started --disallow-module-loading)."""
    d = daemons("--photo", str(PAINTING), "--audio", pulse_without_modules.monitor, "--no-hotkeys",
                env=pulse_without_modules.env)
    d.wait_started()
    st = d.wait_status(lambda s: s["mic"]["state"] == "unavailable", "mic unavailable")
    assert "--no-mic" in st["mic"]["error"]
    n = len(d.reader)
    d.wait_frames(n + 30, timeout=5.0)  # the camera runs on
    time.sleep(3.0)  # retries happen meanwhile, quietly
    warned = [ln for ln in d.stderr().splitlines() if "virtual microphone" in ln]
    assert len(warned) == 1, d.stderr()
    locked = subprocess.run(["pactl", "list", "short", "sources"], capture_output=True, text=True, timeout=10,
                            env={**os.environ, **pulse_without_modules.env}).stdout
    assert TEST_MIC not in locked and TEST_MIC not in _pulse_sources()
