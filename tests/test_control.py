"""The daemon's control channel (vcam.app.control) and ``vcam ctl`` (vcam.app.ctl), over real sockets."""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from vcam.runtime.errors import DeviceError, InputError
from vcam.app import control, ctl
from vcam.app.commands import (
    CommandInbox,
    Quit,
    SetAudio,
    SetEmotion,
    SetIntensity,
    SetMotionScale,
    SetPaused,
    SetPhoto,
    SetPreview,
    to_json,
)
from vcam.app.control import ControlServer, default_address
from vcam.app.control_client import ControlClient

pytestmark = pytest.mark.skipif(os.name != "posix", reason="Unix sockets and file modes")

STATUS = {
    "fps": 29.97,
    "frames": 1234,
    "dropped": 2,
    "latency_ms": {"p50": 41.5, "p95": 55.0},
    "stages_ms": {"motion": {"p50": 2.0, "p95": 3.5}, "render": {"p50": 18.25, "p95": 24.0}},
    "audio": {"source": "mic", "overruns": 0},
    "outputs": {"v4l2": {"device": "/dev/video10", "frames": 1230}},
    "emotion": "happy",
    "intensity": 0.7,
    "motion_scale": 1.0,
    "paused": False,
    "photo": "/home/me/face.jpg",
    "provider": "cpu",
    "uptime_s": 3723,
    "gpu_temp": 61,
}


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch) -> Path:
    """A private XDG_RUNTIME_DIR; the control socket lands in ``<it>/vcam/control.sock``."""
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def inbox() -> CommandInbox:
    return CommandInbox()


@pytest.fixture
def server(runtime_dir, inbox):
    with ControlServer(inbox, lambda: dict(STATUS)) as s:
        yield s


def raw_exchange(address: Path, *lines: bytes, read: int | None = None) -> list[dict]:
    """Send raw bytes on one connection; the parsed response lines (``read`` of them)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(str(address))
        for line in lines:
            s.sendall(line)
        s.shutdown(socket.SHUT_WR)
        with s.makefile("rb") as f:
            out = [json.loads(line) for line in f]
    return out if read is None else out[:read]


# -- addresses --


def test_default_address_uses_xdg_runtime_dir(runtime_dir):
    assert default_address() == str(runtime_dir / "vcam" / "control.sock")


def test_default_address_without_xdg_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert default_address() == str(tmp_path / f"vcam-{os.geteuid()}" / "control.sock")


def test_nothing_happens_at_import(runtime_dir):
    import importlib

    importlib.reload(control)
    assert not (runtime_dir / "vcam").exists()


# -- protocol --


@pytest.mark.parametrize(
    "command",
    [
        SetEmotion("happy"),
        SetEmotion("sad", 0.25),
        SetIntensity(0.5),
        SetPaused(True),
        SetPaused(False),
        SetPaused(None),
        SetPhoto("/tmp/face.jpg"),
        SetAudio("system"),
        SetPreview(True),
        SetPreview(None),
        Quit(),
    ],
)
def test_every_command_reaches_the_inbox(server, inbox, command):
    assert ControlClient().request(to_json(command)) == {"ok": True}
    assert inbox.drain() == [command]


def test_status(server):
    assert ControlClient().request({"command": "status"}) == {"ok": True, "status": STATUS}
    assert ControlClient().status() == STATUS


@pytest.mark.parametrize(
    "line, expected",
    [
        (b"this is not json\n", "not JSON"),
        (b"[1, 2]\n", "expected a JSON object"),
        (b"\n", "empty request"),
        (b"\xff\xfe\n", "not UTF-8"),
        (b'{"name": "happy"}\n', '"command" name'),
        (b'{"command": "dance"}\n', "unknown command 'dance'"),
        (b'{"command": "emotion", "name": "smug"}\n', "unknown emotion 'smug'"),
        (b'{"command": "intensity", "intensity": 3}\n', "intensity must be a number 0..1, got 3"),
        (b'{"command": "motion_scale", "scale": -1}\n', "the motion scale must be a number 0..2, got -1"),
        (b'{"command": "status", "verbose": true}\n', "'status' takes no arguments"),
    ],
)
def test_bad_requests_are_answered_and_the_server_keeps_running(server, inbox, line, expected):
    (response,) = raw_exchange(server.address.path, line)
    assert response["ok"] is False
    assert expected in response["error"]
    assert "\n" not in response["error"]
    assert ControlClient().request({"command": "quit"}) == {"ok": True}
    assert inbox.drain() == [Quit()]


def test_several_requests_on_one_connection(server, inbox):
    responses = raw_exchange(
        server.address.path, b'{"command": "pause", "paused": true}\n', b"oops\n", b'{"command": "status"}\n'
    )
    assert [r["ok"] for r in responses] == [True, False, True]
    assert responses[2]["status"] == STATUS
    assert inbox.drain() == [SetPaused(True)]


def test_oversized_request_is_refused(server):
    (response,) = raw_exchange(server.address.path, b"x" * (control.MAX_REQUEST_BYTES + 10) + b"\n")
    assert response == {"ok": False, "error": f"request too large: expected at most {control.MAX_REQUEST_BYTES} bytes"}
    assert ControlClient().request({"command": "status"})["ok"]


def test_a_stuck_client_does_not_block_others(runtime_dir, inbox, monkeypatch):
    monkeypatch.setattr(control, "CLIENT_IDLE_TIMEOUT_S", 0.3)
    with ControlServer(inbox, dict) as server, socket.socket(socket.AF_UNIX) as stuck:
        stuck.connect(str(server.address.path))
        stuck.sendall(b'{"command": ')  # half a line, then silence
        assert ControlClient(timeout_s=2).request({"command": "status"}) == {"ok": True, "status": {}}
        stuck.settimeout(2)
        assert stuck.recv(100) == b""  # dropped after the idle timeout


def test_failing_status_and_inbox_do_not_kill_the_server(runtime_dir):
    class BrokenInbox(CommandInbox):
        def post(self, command):
            raise RuntimeError("boom")

    def broken_status():
        raise KeyError("fps")

    with ControlServer(BrokenInbox(), broken_status) as server:
        response = ControlClient().request({"command": "status"})
        assert response["ok"] is False and "status failed: KeyError" in response["error"]
        with pytest.raises(DeviceError, match="closed the connection without an answer"):
            ControlClient().request({"command": "quit"})
        server.status_fn = lambda: {"ok": 1}
        assert ControlClient().status() == {"ok": 1}


def test_unserialisable_status_is_sent_as_strings(runtime_dir, inbox):
    with ControlServer(inbox, lambda: {"photo": Path("/a/b.jpg")}):
        assert ControlClient().status() == {"photo": "/a/b.jpg"}


# -- the socket file --


def test_socket_and_directory_are_private(server, runtime_dir):
    path = runtime_dir / "vcam" / "control.sock"
    assert server.address.path == path
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(path.parent).st_mode) == 0o700


def test_umask_is_restored(runtime_dir, inbox):
    before = os.umask(0o022)
    os.umask(before)
    with ControlServer(inbox, dict):
        after = os.umask(before)
    assert after == before


def test_second_server_is_refused(server, inbox):
    with pytest.raises(DeviceError, match=r"vcam is already running \(control socket .*control.sock\); "
                                          r"stop it with `vcam ctl quit`"):
        ControlServer(inbox, dict)
    assert ControlClient().request({"command": "status"})["ok"]  # the first one is untouched


def test_stale_socket_is_replaced(runtime_dir, inbox):
    path = runtime_dir / "vcam" / "control.sock"
    path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays; nobody listens
    with pytest.raises(DeviceError, match="no vcam daemon is running"):
        ControlClient().request({"command": "status"})
    with ControlServer(inbox, dict):
        assert ControlClient().request({"command": "status"}) == {"ok": True, "status": {}}


def test_a_file_that_is_not_a_socket_is_left_alone(runtime_dir, inbox):
    path = runtime_dir / "vcam" / "control.sock"
    path.parent.mkdir(mode=0o700)
    path.write_text("mine")
    with pytest.raises(DeviceError, match="exists and is not a socket"):
        ControlServer(inbox, dict)
    assert path.read_text() == "mine"


def test_group_writable_directory_is_refused(runtime_dir, inbox):
    (runtime_dir / "vcam").mkdir()
    os.chmod(runtime_dir / "vcam", 0o770)
    with pytest.raises(DeviceError, match=r"mode 0770, expected no group/world write permission"):
        ControlServer(inbox, dict)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_directory_of_another_user_is_refused(runtime_dir, inbox):
    (runtime_dir / "vcam").mkdir(mode=0o700)
    os.chown(runtime_dir / "vcam", 4242, 4242)
    with pytest.raises(DeviceError, match=r"owned by uid 4242, expected uid 0"):
        ControlServer(inbox, dict)


def test_client_without_server_names_the_socket(runtime_dir):
    path = runtime_dir / "vcam" / "control.sock"
    with pytest.raises(DeviceError) as e:
        ControlClient().request({"command": "status"})
    assert str(e.value) == f"no vcam daemon is running (no socket at {path}): start one with `vcam run`"


def test_close_is_idempotent_and_removes_the_socket(runtime_dir, inbox):
    server = ControlServer(inbox, dict)
    path = server.address.path
    assert path.exists()
    server.close()
    server.close()
    assert server.closed and not os.path.lexists(path)
    with pytest.raises(DeviceError, match="no vcam daemon is running"):
        ControlClient().request({"command": "status"})
    with ControlServer(inbox, dict):  # and the address is free again
        assert path.exists()


def test_close_leaves_a_socket_that_is_no_longer_ours(runtime_dir, inbox):
    server = ControlServer(inbox, dict)
    path = server.address.path
    os.unlink(path)
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(path))  # someone else's now
    try:
        server.close()
        assert os.path.lexists(path)
    finally:
        other.close()


def test_explicit_unix_address(tmp_path, inbox):
    path = tmp_path / "ctl" / "c.sock"
    with ControlServer(inbox, dict, address=f"unix:{path}"):
        assert ControlClient(str(path)).request({"command": "quit"}) == {"ok": True}
    assert inbox.drain() == [Quit()]


# -- TCP + token --


@pytest.fixture
def tcp_server(runtime_dir, inbox):
    with ControlServer(inbox, lambda: {"fps": 30}, address="tcp") as s:
        yield s


def tcp_exchange(port: int, obj: dict) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(json.dumps(obj).encode() + b"\n")
        with s.makefile("rb") as f:
            return json.loads(f.readline())


def test_tcp_token_file_is_private(tcp_server, runtime_dir):
    token_file = runtime_dir / "vcam" / "control.json"
    assert tcp_server.address.path == token_file
    assert stat.S_IMODE(os.lstat(token_file).st_mode) == 0o600
    data = json.loads(token_file.read_text())
    assert data["port"] == tcp_server.port and data["token"] == tcp_server.token
    assert len(data["token"]) >= 32
    assert tcp_server._listener.getsockname()[0] == "127.0.0.1"


def test_tcp_right_token_works(tcp_server, inbox):
    client = ControlClient("tcp")
    assert client.request({"command": "status"}) == {"ok": True, "status": {"fps": 30}}
    assert client.request({"command": "emotion", "name": "angry", "intensity": 1.0}) == {"ok": True}
    assert inbox.drain() == [SetEmotion("angry", 1.0)]
    assert tcp_exchange(tcp_server.port, {"command": "quit", "token": tcp_server.token}) == {"ok": True}


@pytest.mark.parametrize("token", [None, "", "wrong", 42])
def test_tcp_wrong_or_missing_token_is_refused(tcp_server, inbox, token):
    request = {"command": "quit"} if token is None else {"command": "quit", "token": token}
    response = tcp_exchange(tcp_server.port, request)
    assert response["ok"] is False and "bad or missing token" in response["error"]
    assert tcp_server.token not in response["error"]
    assert inbox.drain() == []
    assert ControlClient("tcp").request({"command": "status"})["ok"]


def test_tcp_second_server_is_refused_and_stale_file_replaced(tcp_server, inbox, runtime_dir):
    with pytest.raises(DeviceError, match="vcam is already running"):
        ControlServer(inbox, dict, address="tcp")
    token_file = tcp_server.address.path
    tcp_server.close()
    tcp_server.close()
    assert not token_file.exists()
    token_file.write_text(json.dumps({"port": 9, "token": "old"}))  # left by a crashed daemon
    with pytest.raises(DeviceError, match="no vcam daemon is running"):
        ControlClient("tcp").request({"command": "status"})
    with ControlServer(inbox, dict, address="tcp") as again:
        assert json.loads(token_file.read_text())["token"] == again.token
        assert ControlClient("tcp").request({"command": "status"}) == {"ok": True, "status": {}}


def test_tcp_oversized_request_is_answered(tcp_server):
    with socket.create_connection(("127.0.0.1", tcp_server.port), timeout=3) as s:
        s.sendall(b"y" * (control.MAX_REQUEST_BYTES * 2) + b"\n")
        with s.makefile("rb") as f:
            assert "request too large" in json.loads(f.readline())["error"]


def test_tcp_client_without_server(runtime_dir):
    with pytest.raises(DeviceError, match=r"no vcam daemon is running \(no control file at .*control.json\)"):
        ControlClient("tcp").request({"command": "status"})


# -- vcam ctl --


def build_parser() -> argparse.ArgumentParser:
    """The way vcam.app.cli.build_parser wires ``ctl`` in."""
    parser = argparse.ArgumentParser(prog="vcam")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    common.add_argument("--config", type=Path)
    sub = parser.add_subparsers(dest="command", required=True)
    ctl.add_parser(sub, common)
    return parser


def run_ctl(*argv: str) -> int:
    args = build_parser().parse_args(["ctl", *argv])
    assert args.run is ctl.ctl_main
    return args.run(args)


@pytest.mark.parametrize(
    "argv, command",
    [
        (["emotion", "surprised"], SetEmotion("surprised")),
        (["emotion", "happy", "--intensity", "0.4"], SetEmotion("happy", 0.4)),
        (["intensity", "1"], SetIntensity(1.0)),
        (["motion-scale", "1.5"], SetMotionScale(1.5)),
        (["motion-scale", "0"], SetMotionScale(0.0)),
        (["pause"], SetPaused(True)),
        (["resume"], SetPaused(False)),
        (["toggle-pause"], SetPaused(None)),
        (["audio", "USB Mic"], SetAudio("USB Mic")),
        (["preview", "on"], SetPreview(True)),
        (["preview", "off"], SetPreview(False)),
        (["preview", "toggle"], SetPreview(None)),
        (["quit"], Quit()),
    ],
)
def test_ctl_actions(server, inbox, capsys, argv, command):
    assert run_ctl(*argv) == 0
    assert inbox.drain() == [command]
    assert capsys.readouterr().out == ""


def test_ctl_photo_is_sent_as_an_absolute_path(server, inbox, tmp_path, monkeypatch):
    (tmp_path / "me.png").write_bytes(b"png")
    monkeypatch.chdir(tmp_path)
    assert run_ctl("photo", "me.png") == 0
    assert inbox.drain() == [SetPhoto(str(tmp_path / "me.png"))]


def test_ctl_photo_must_exist(server, inbox, tmp_path):
    with pytest.raises(InputError, match="photo not found: .*nope.png"):
        run_ctl("photo", str(tmp_path / "nope.png"))
    with pytest.raises(InputError, match="it is a folder"):
        run_ctl("photo", str(tmp_path))
    assert inbox.drain() == []


@pytest.mark.parametrize("argv", [["emotion", "smug"], ["intensity", "2"], ["motion-scale", "3"], ["preview", "maybe"],
                                  ["dance"], []])
def test_ctl_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["ctl", *argv])
    assert e.value.code == 2


def test_ctl_status(server, capsys):
    assert run_ctl("status") == 0
    out = capsys.readouterr().out
    for text in ("up 1h 02m 03s", "provider cpu", "happy, intensity 0.7", "head motion: x1", "29.97 fps, 1234 frames, 2 dropped",
                 "p50 41.5 ms, p95 55 ms", "render  p50 18.25 ms, p95 24 ms", "/home/me/face.jpg",
                 "source mic, overruns 0", "device /dev/video10", "gpu_temp:  61"):
        assert text in out, (text, out)
    assert "paused" not in out


def test_ctl_status_json(server, capsys):
    assert run_ctl("status", "--json") == 0
    assert json.loads(capsys.readouterr().out) == STATUS


def test_format_status_copes_with_odd_shapes():
    text = ctl.format_status({"fps": "fast", "latency_ms": [1, 2], "paused": True, "stages_ms": {},
                              "nested": {"a": {"b": 1}}, "none": None})
    assert "fps:       fast" in text
    assert "latency_ms: 1, 2" in text
    assert "lip motion paused" in text
    assert "nested:\n  a:" in text and "b 1" in text
    assert ctl.format_status({}) == "(the daemon reported no status)"


def test_ctl_without_daemon(runtime_dir):
    with pytest.raises(DeviceError, match=r"no vcam daemon is running \(no socket at .*control.sock\)"):
        run_ctl("pause")


def test_refused_command_is_an_input_error(server, inbox):
    with pytest.raises(InputError, match="vcam daemon refused 'audio': expected a non-empty string, got ' '"):
        ControlClient().send({"command": "audio", "source": " "})
    assert inbox.drain() == []


def test_ctl_address_option(tmp_path, inbox):
    path = tmp_path / "c" / "x.sock"
    with ControlServer(inbox, dict, address=str(path)):
        assert run_ctl("--address", str(path), "quit") == 0
    assert inbox.drain() == [Quit()]


def test_server_threads_end_on_close(runtime_dir, inbox):
    before = {t for t in threading.enumerate() if t.name == "vcam-control"}
    with ControlServer(inbox, dict) as server:
        ControlClient().request({"command": "status"})
    server._thread.join(1)
    assert not server._thread.is_alive()
    assert {t for t in threading.enumerate() if t.name == "vcam-control"} <= before

