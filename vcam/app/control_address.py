"""Where the control channel lives and its files: the address (a Unix socket, or a TCP port
and token in a private JSON file), the private folder, a stale socket left by a crashed
daemon, and the errors that say a daemon is or is not running. Used by
:mod:`vcam.app.control` (the server) and :mod:`vcam.app.control_client`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcam.runtime.errors import DeviceError, InputError, VcamError

_HAS_UNIX = hasattr(socket, "AF_UNIX") and os.name == "posix"
_SOCKET_NAME = "control.sock"
_TOKEN_FILE_NAME = "control.json"
_umask_lock = threading.Lock()

log = logging.getLogger("vcam.app.control")


# -- addresses --


@dataclass(frozen=True)
class Address:
    """Where the control channel lives: ``kind`` is ``"unix"`` (``path`` is the socket) or
    ``"tcp"`` (``path`` is the JSON file holding port and token)."""

    kind: str
    path: Path

    def __str__(self) -> str:
        return str(self.path) if self.kind == "unix" else f"tcp:{self.path}"


def default_dir() -> Path:
    """The per-user directory of the control socket / token file (:func:`vcam.userdirs.runtime_dir`)."""
    from vcam.userdirs import runtime_dir

    return runtime_dir()


def default_address() -> str:
    """The address a daemon listens on when none is given: ``$VCAM_CONTROL`` if set (to run
    several daemons side by side), else the socket path on POSIX, ``tcp:<...\\vcam\\control.json>``
    on Windows."""
    if os.environ.get("VCAM_CONTROL"):
        return os.environ["VCAM_CONTROL"]
    if _HAS_UNIX:
        return str(default_dir() / _SOCKET_NAME)
    return f"tcp:{default_dir() / _TOKEN_FILE_NAME}"


def parse_address(address: str | None) -> Address:
    """``None`` -> :func:`default_address`; ``"tcp"`` -> TCP with the default token file;
    ``"tcp:FILE"`` -> TCP with port and token in FILE; ``"unix:PATH"`` or ``PATH`` -> Unix socket."""
    if address is None:
        address = default_address()
    if not isinstance(address, str) or not address.strip():
        raise InputError(f"control address must be a socket path, 'tcp' or 'tcp:FILE', got {address!r}")
    if address == "tcp":
        return Address("tcp", default_dir() / _TOKEN_FILE_NAME)
    if address.startswith("tcp:"):
        return Address("tcp", Path(address[4:]).expanduser())
    path = address[5:] if address.startswith("unix:") else address
    if not _HAS_UNIX:
        raise InputError(f"Unix sockets are not available here; use 'tcp' as control address, got {address!r}")
    return Address("unix", Path(path).expanduser())


# -- files and errors --


def _not_running(path: Path, what: str) -> DeviceError:
    return DeviceError(f"no vcam daemon is running (no {what} at {path}): start one with `vcam run`")


def _already_running(path: Path, what: str = "control socket") -> DeviceError:
    return DeviceError(f"vcam is already running ({what} {path}); stop it with `vcam ctl quit`")


def _ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700 if missing; refuse one owned by someone else or writable by others."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as e:
        raise DeviceError(f"cannot create control directory {directory}: {e.strerror or e}") from None
    if os.name != "posix":
        return  # %LOCALAPPDATA% is the user's own; ACLs, not modes, guard it
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise DeviceError(f"control directory {directory} is not a directory (a symlink or file); remove it")
    if st.st_uid != os.geteuid():
        raise DeviceError(
            f"control directory {directory} is owned by uid {st.st_uid}, expected uid {os.geteuid()} (you); "
            "refusing to use it"
        )
    if st.st_mode & 0o022:
        raise DeviceError(
            f"control directory {directory} has mode {stat.S_IMODE(st.st_mode):04o}, expected no group/world "
            f"write permission; refusing to use it (chmod 700 {directory})"
        )


def _clear_stale_socket(path: Path) -> None:
    """Raise if a daemon answers at ``path``; otherwise remove the leftover socket file."""
    st = os.lstat(path)
    if not stat.S_ISSOCK(st.st_mode):
        raise DeviceError(f"{path} exists and is not a socket; expected a vcam control socket or nothing there")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale control socket %s", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as e:
        raise DeviceError(f"cannot check control socket {path}: {e.strerror or e}") from None
    finally:
        probe.close()
    raise _already_running(path)


def _tcp_daemon_answers(token_file: Path) -> bool:
    """Whether a daemon answers, with the right token, at the port in ``token_file``."""
    from vcam.app.control_client import ControlClient  # the client imports this module

    try:
        response = ControlClient(f"tcp:{token_file}", timeout_s=1.0).request({"command": "status"})
    except VcamError:
        return False
    return response.get("ok") is True


def _read_token_file(path: Path) -> tuple[int, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _not_running(path, "control file") from None
    except PermissionError:
        raise DeviceError(f"cannot read control file {path}: permission denied (is it another user's?)") from None
    except (OSError, ValueError) as e:
        raise DeviceError(f"cannot read control file {path}: {e}") from None
    port, token = (data.get("port"), data.get("token")) if isinstance(data, dict) else (None, None)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536 or not isinstance(token, str):
        raise DeviceError(f"control file {path} holds {_short(data)}, expected {{\"port\": N, \"token\": \"...\"}}")
    return port, token


def _write_private(path: Path, text: str) -> tuple[int, int]:
    """Atomically replace ``path`` with ``text``, readable by the user only; its (dev, inode)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if os.name == "posix":
            os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
