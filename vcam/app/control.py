"""The daemon's local control channel: ``vcam ctl`` (and anything else local) talks to it.

Protocol: one request per line, a UTF-8 JSON object; one JSON response line per request.

* ``{"command": "status"}`` -> ``{"ok": true, "status": {...}}`` (whatever ``status_fn`` returns);
* any command of :mod:`vcam.app.commands` (its :func:`~vcam.app.commands.to_json` form) -> validated,
  posted to the daemon's :class:`~vcam.app.commands.CommandInbox` -> ``{"ok": true}``;
* anything else -> ``{"ok": false, "error": "one line saying what was expected and what came"}``.

Transports (chosen by the ``address`` string, see :func:`parse_address`):

* ``unix`` (the default on POSIX): a Unix socket, by default ``$XDG_RUNTIME_DIR/vcam/control.sock``
  or ``/tmp/vcam-<uid>/control.sock``, in a directory only the user can enter, mode 0600. Who may
  connect is decided by the file system.
* ``tcp`` (the default on Windows, selectable everywhere): a server on 127.0.0.1 at a port the OS
  picks, and a random token. Port and token are written to a JSON file only the user can read
  (``%LOCALAPPDATA%\\vcam\\control.json`` on Windows); every request must carry ``"token"``.

Nothing happens at import time; :class:`ControlServer` starts a daemon thread when built and
stops it on :meth:`ControlServer.close`.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import logging
import os
import secrets
import selectors
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vcam.runtime.errors import DeviceError, VcamError
from vcam.app.commands import CommandInbox, from_json
from vcam.app.control_address import (  # noqa: F401 - Address, default_*: part of this module's API
    Address,
    _already_running,
    _clear_stale_socket,
    _ensure_private_dir,
    _short,
    _tcp_daemon_answers,
    _umask_lock,
    _write_private,
    default_address,
    default_dir,
    parse_address,
)

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
"""A request line longer than this is refused and its connection closed."""
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""The client refuses a response line longer than this."""
CLIENT_IDLE_TIMEOUT_S = 5.0
"""The server drops a connection that sends nothing (or half a line) for this long."""
MAX_CONNECTIONS = 16
"""Connections served at once; more are answered with an error and closed."""



# -- server --


class ControlServer:
    """Serves the control protocol on a daemon thread until :meth:`close`.

    ``status_fn`` is called (on the server's threads) for each ``status`` request and must
    return a JSON-serialisable dict; commands are validated and posted to ``inbox``.
    Raises ``DeviceError`` when another daemon already answers at ``address``, or when the
    socket's directory is unsafe (owned by someone else, or group/world-writable).
    """

    def __init__(
        self,
        inbox: CommandInbox,
        status_fn: Callable[[], dict],
        *,
        address: str | None = None,
    ) -> None:
        self.inbox = inbox
        self.status_fn = status_fn
        self.address = parse_address(address)
        self.token: str | None = None
        self.port: int | None = None
        self._owned_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we made
        self._closed = False
        self._close_lock = threading.Lock()
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._answering = 0  # requests read and not yet answered (guarded by _answered)
        self._answered = threading.Condition(self._conns_lock)
        if self.address.kind == "unix":
            self._listener = self._bind_unix(self.address.path)
        else:
            self._listener = self._bind_tcp(self.address.path)
        self._listener.setblocking(False)  # the selector says when; a vanished client must not block accept
        try:
            self._wake_r, self._wake_w = socket.socketpair()  # close() wakes the selector through it
        except OSError:
            self._listener.close()
            self._remove_if_ours()
            raise
        self._thread = threading.Thread(target=self._serve, name="vcam-control", daemon=True)
        self._thread.start()
        log.info("control channel listening at %s", self.address)

    # context manager

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and remove the socket / token file if still ours. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
        with self._conns_lock:  # let answers being written go out (`vcam ctl quit` gets its "ok") ...
            self._answered.wait_for(lambda: self._answering == 0, timeout=1.0)
            # ... then wake connection threads blocked in a read
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for s in (self._listener, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()
        self._remove_if_ours()
        log.info("control channel at %s closed", self.address)

    @property
    def closed(self) -> bool:
        return self._closed

    # binding

    def _bind_unix(self, path: Path) -> socket.socket:
        _ensure_private_dir(path.parent)
        if os.path.lexists(path):
            _clear_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _umask_lock:  # process-wide; bind creates the file, so no moment is it wider
                old = os.umask(0o177)
                try:
                    sock.bind(str(path))
                finally:
                    os.umask(old)
            os.chmod(path, 0o600)
            st = os.lstat(path)
            self._owned_id = (st.st_dev, st.st_ino)
            sock.listen(8)
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                raise _already_running(path) from None
            if len(os.fsencode(path)) >= 104:  # sun_path is 104..108 bytes
                raise DeviceError(
                    f"cannot create control socket {path}: the path is {len(os.fsencode(path))} bytes, "
                    "expected fewer than 104 (set XDG_RUNTIME_DIR to a shorter directory)"
                ) from None
            raise DeviceError(f"cannot create control socket {path}: {e.strerror or e}") from None
        return sock

    def _bind_tcp(self, token_file: Path) -> socket.socket:
        _ensure_private_dir(token_file.parent)
        if token_file.exists() and _tcp_daemon_answers(token_file):
            raise _already_running(token_file, "control file")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if os.name == "nt":  # no other process may bind the same port under us
                sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_EXCLUSIVEADDRUSE", 0), 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(8)
        except OSError as e:
            sock.close()
            raise DeviceError(f"cannot listen on 127.0.0.1 for the control channel: {e.strerror or e}") from None
        self.port = sock.getsockname()[1]
        self.token = secrets.token_urlsafe(32)
        data = json.dumps({"port": self.port, "token": self.token, "pid": os.getpid()})
        try:
            self._owned_id = _write_private(token_file, data)
        except OSError as e:
            sock.close()
            raise DeviceError(f"cannot write control token file {token_file}: {e.strerror or e}") from None
        return sock

    def _remove_if_ours(self) -> None:
        if self._owned_id is None:
            return
        path = self.address.path
        try:
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == self._owned_id:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("could not remove %s: %s", path, e)

    # serving

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stop.is_set():
                try:
                    events = sel.select(timeout=1.0)
                except OSError:
                    if self._stop.is_set():
                        break
                    raise
                for key, _ in events:
                    if key.fileobj is self._wake_r or self._stop.is_set():
                        continue
                    try:
                        conn, _ = self._listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:  # e.g. out of file descriptors: keep serving
                        log.warning("control channel: accept failed: %s", e)
                        self._stop.wait(0.05)
                        continue
                    self._start_connection(conn)
        except Exception:  # noqa: BLE001 - log, never take the daemon down with it
            log.exception("control channel stopped unexpectedly")
        finally:
            sel.close()

    def _start_connection(self, conn: socket.socket) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                conn.settimeout(0.5)
                conn.sendall(_encode({"ok": False, "error": f"busy: more than {MAX_CONNECTIONS} connections"}))
            conn.close()
            return
        thread = threading.Thread(target=self._connection, args=(conn,), name="vcam-control-conn", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            self._slots.release()
            conn.close()

    def _connection(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.add(conn)
        try:
            conn.settimeout(CLIENT_IDLE_TIMEOUT_S)
            with conn, conn.makefile("rb") as reader:
                while not self._stop.is_set():
                    line = reader.readline(MAX_REQUEST_BYTES + 1)
                    if not line:
                        return  # client closed
                    if len(line) > MAX_REQUEST_BYTES:
                        conn.sendall(_encode(_fail(f"request too large: expected at most {MAX_REQUEST_BYTES} bytes")))
                        _discard_rest(conn)
                        return
                    with self._conns_lock:
                        self._answering += 1
                    try:
                        response, keep = self.handle(line)
                        conn.sendall(_encode(response))
                    finally:
                        with self._conns_lock:
                            self._answering -= 1
                            self._answered.notify_all()
                    if not keep:
                        return
        except (TimeoutError, socket.timeout):
            log.debug("control channel: client idle for %.0f s, dropped", CLIENT_IDLE_TIMEOUT_S)
        except OSError as e:
            log.debug("control channel: connection error: %s", e)
        except Exception:  # noqa: BLE001 - a bad request must never kill the server
            log.exception("control channel: request handler failed")
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            self._slots.release()

    def handle(self, line: bytes) -> tuple[dict[str, Any], bool]:
        """The response to one request line, and whether to keep the connection open."""
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            return _fail("request is not UTF-8 text"), True
        if not text:
            return _fail('empty request: expected a JSON object like {"command": "status"}'), True
        try:
            request = json.loads(text)
        except ValueError as e:
            return _fail(f"request is not JSON ({e}): expected an object like {{\"command\": \"status\"}}"), True
        if not isinstance(request, dict):
            return _fail(f"expected a JSON object like {{\"command\": \"status\"}}, got {_short(request)}"), True
        token = request.pop("token", None)
        if self.token is not None:
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token.encode()):
                log.warning("control channel: request with a %s token refused", "wrong" if token else "missing")
                return _fail("bad or missing token: read it from " + str(self.address.path)), False
        if request.get("command") == "status" and len(request) == 1:
            try:
                status = _jsonable(self.status_fn())
            except Exception as e:  # noqa: BLE001 - the daemon's bug, reported to the client
                log.warning("control channel: status failed", exc_info=True)
                return _fail(f"status failed: {type(e).__name__}: {e}"), True
            return {"ok": True, "status": status}, True
        try:
            command = from_json(request)
        except VcamError as e:
            if request.get("command") == "status":
                return _fail(f"command 'status' takes no arguments, got {_short(sorted(k for k in request if k != 'command'))}"), True
            message = str(e)
            if message.startswith("unknown command"):
                message += "; or 'status'"
            return _fail(message), True
        self.inbox.post(command)
        log.debug("control channel: posted %r", command)
        return {"ok": True}, True


# -- helpers --


def _discard_rest(conn: socket.socket, limit: int = 1024 * 1024, timeout_s: float = 0.2) -> None:
    """Read and drop what the client still sends (a little), so closing does not reset the
    connection before it has read our answer."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(timeout_s)
        while limit > 0:
            chunk = conn.recv(65536)
            if not chunk:
                return
            limit -= len(chunk)


def _jsonable(value: Any) -> Any:
    """``value`` itself when JSON can carry it, else a copy with odd leaves as strings."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


def _fail(message: str) -> dict[str, Any]:
    return {"ok": False, "error": " ".join(message.split())}


def _encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), default=str) + "\n").encode("utf-8")





__all__ = [
    "MAX_REQUEST_BYTES",
    "Address",
    "ControlServer",
    "default_address",
    "default_dir",
    "parse_address",
]
