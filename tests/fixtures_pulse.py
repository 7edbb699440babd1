"""A PulseAudio null sink for tests of live audio capture.

``from fixtures_pulse import pulse_null_sink`` in a test module, then ask for ``pulse_null_sink``:

* a PulseAudio (or pipewire-pulse) server must answer ``pactl info``; when none does and the
  ``pulseaudio`` binary exists, a per-user daemon is started once and killed at the end of
  the session (only if the tests started it). Otherwise the test is skipped, saying why;
* a fresh ``module-null-sink sink_name=vcam_test_<random>`` is loaded for the test and
  unloaded afterwards. The fixture's value (:class:`NullSink`) has ``.sink``, ``.monitor``,
  ``play()`` (``paplay --device=<sink>``), ``set_default()`` (undone at teardown),
  ``unload()`` / ``reload()`` (the device vanishing and coming back under the same name).

Playing into a null sink is silent, so the tests never make noise on a desktop.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import pytest

_started_server = False


def _pactl(*args: str, check: bool = False, timeout: float = 5.0) -> subprocess.CompletedProcess:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=timeout, check=check,
                          env={**os.environ, "LC_ALL": "C"}, stdin=subprocess.DEVNULL)


def _server_answers() -> bool:
    try:
        return _pactl("info", timeout=3.0).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _stop_server() -> None:
    global _started_server
    if _started_server:
        subprocess.run(["pulseaudio", "--kill"], capture_output=True, timeout=10)
        _started_server = False


def ensure_pulse_server(config: pytest.Config | None = None) -> None:
    """Make sure a PulseAudio server answers, starting a per-user daemon when none does and
    ``pulseaudio`` is installed; :func:`pytest.skip` (with the reason) when that is impossible."""
    global _started_server
    if shutil.which("pactl") is None:
        pytest.skip("pactl not found (install pulseaudio-utils)")
    if _server_answers():
        return
    if shutil.which("pulseaudio") is None:
        pytest.skip("no PulseAudio server answers `pactl info` and the pulseaudio binary is not installed")
    if subprocess.run(["pulseaudio", "--check"], capture_output=True, timeout=10).returncode == 0:
        # a server is running but slow to answer (a loaded machine): wait for it; never start
        # (and at the end kill) a second one, which would take the running one down with it
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            if _server_answers():
                return
            time.sleep(0.2)
        pytest.skip("a PulseAudio server is running but does not answer `pactl info`")
    r = subprocess.run(["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1"], capture_output=True,
                       text=True, timeout=20)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not _server_answers():
        time.sleep(0.1)
    if not _server_answers():
        err = (r.stderr or r.stdout or "").strip().splitlines()
        pytest.skip(f"could not start a PulseAudio server (pulseaudio exit {r.returncode}: "
                    f"{err[-1] if err else 'no message'})")
    _started_server = True
    if config is not None:
        config.add_cleanup(_stop_server)


class NullSink:
    """A loaded ``module-null-sink``; see the module docstring."""

    def __init__(self, sink: str) -> None:
        self.sink = sink
        self.monitor = f"{sink}.monitor"
        self.module: int | None = None
        self._old_default: str | None = None
        self._players: list[subprocess.Popen] = []
        self._tmp = Path(tempfile.mkdtemp(prefix="vcam_pulse_"))

    # -- the device --

    def load(self) -> None:
        r = _pactl("load-module", "module-null-sink", f"sink_name={self.sink}",
                   f"sink_properties=device.description={self.sink}", check=True)
        self.module = int(r.stdout.strip())
        self.wait_source(True)

    def unload(self) -> None:
        """Unload the module: the sink and its monitor vanish (a USB device unplugged)."""
        if self.module is not None:
            _pactl("unload-module", str(self.module))
            self.module = None
            self.wait_source(False)

    def reload(self) -> None:
        """Load the sink again under the same name (the device is back)."""
        if self.module is None:
            self.load()

    def source_exists(self) -> bool:
        r = _pactl("list", "short", "sources")
        return any(line.split("\t")[1:2] == [self.monitor] for line in r.stdout.splitlines())

    def wait_source(self, present: bool, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.source_exists() != present:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.monitor} still {'absent' if present else 'present'} after {timeout} s")
            time.sleep(0.05)

    def set_default(self) -> None:
        """Make this the default sink (so that audio source 'system' captures its monitor);
        the previous default is restored at teardown."""
        if self._old_default is None:
            info = _pactl("info").stdout
            self._old_default = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                                      if ln.startswith("Default Sink:")), "")
        _pactl("set-default-sink", self.sink, check=True)

    # -- sound --

    def play(self, what: str | os.PathLike | np.ndarray, rate: int | None = None) -> subprocess.Popen:
        """Play a wav file, or a ``(n,) float32`` array at ``rate`` Hz, into the sink (``paplay``
        in the background; killed at teardown). Returns the ``Popen``."""
        if isinstance(what, np.ndarray):
            if rate is None:
                raise ValueError("play(array) needs the sample rate")
            path = self._tmp / f"play{len(self._players)}.wav"
            pcm = (np.clip(np.asarray(what, np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(int(rate))
                w.writeframes(pcm.tobytes())
            what = path
        p = subprocess.Popen(["paplay", f"--device={self.sink}", str(what)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._players.append(p)
        return p

    def teardown(self) -> None:
        for p in self._players:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=5)
            if p.stderr is not None:
                p.stderr.close()
        if self._old_default:
            _pactl("set-default-sink", self._old_default)
        self.unload()
        shutil.rmtree(self._tmp, ignore_errors=True)


@pytest.fixture
def pulse_null_sink(request):
    """A fresh PulseAudio null sink (:class:`NullSink`); skips the test when no server can run."""
    ensure_pulse_server(request.config)
    ns = NullSink(f"vcam_test_{secrets.token_hex(4)}")
    try:
        ns.load()
    except (subprocess.CalledProcessError, TimeoutError) as e:
        pytest.skip(f"could not load module-null-sink: {getattr(e, 'stderr', '') or e}")
    try:
        yield ns
    finally:
        ns.teardown()


class ServerWithoutModules:
    """A second, private PulseAudio server started with ``--disallow-module-loading``: it has a
    null sink (``sink``, ``monitor``) and refuses every ``load-module``, as a locked-down sound
    server does. ``env`` points libpulse (and the ALSA pulse plugin) at it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "native"
        self.sink = f"vcam_locked_{secrets.token_hex(3)}"
        self.monitor = f"{self.sink}.monitor"
        self.env = {"PULSE_SERVER": f"unix:{self.socket}"}
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "PULSE_RUNTIME_PATH": str(self.root / "run"), "PULSE_STATE_PATH": str(self.root / "state")}
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-module-loading",
             "--use-pid-file=no", "-L", f"module-native-protocol-unix socket={self.socket} auth-anonymous=1",
             "-L", f"module-null-sink sink_name={self.sink}"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            r = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True,
                               env={**os.environ, **self.env}, timeout=5)
            if r.returncode == 0 and self.sink in r.stdout:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        pytest.skip("a second PulseAudio server (--disallow-module-loading) did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


@pytest.fixture
def pulse_without_modules(tmp_path):
    """A running :class:`ServerWithoutModules`; skips when ``pulseaudio`` is not installed."""
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        pytest.skip("pulseaudio and pactl are needed for a server without module support")
    server = ServerWithoutModules(tmp_path / "locked-pulse")
    server.root.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()
