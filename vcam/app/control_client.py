"""The client side of the daemon's control channel (:mod:`vcam.app.control`): one request line,
one response line, over the Unix socket or the token-guarded TCP port."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from vcam.app.control import MAX_RESPONSE_BYTES, _encode
from vcam.app.control_address import _not_running, _read_token_file, _short, parse_address
from vcam.runtime.errors import DeviceError, InputError



class ControlClient:
    """Talks to a running daemon: one connection per :meth:`request`.

    Raises ``DeviceError`` when no daemon runs at ``address`` or it does not answer within
    ``timeout_s``.
    """

    def __init__(self, address: str | None = None, *, timeout_s: float = 5.0) -> None:
        self.address = parse_address(address)
        self.timeout_s = timeout_s

    def request(self, obj: dict) -> dict:
        """Send one request object; the daemon's response object (``{"ok": ...}``)."""
        if not isinstance(obj, dict):
            raise InputError(f"a control request must be a dict, got {type(obj).__name__}")
        payload = dict(obj)
        if self.address.kind == "unix":
            sock = self._connect_unix(self.address.path)
        else:
            sock, token = self._connect_tcp(self.address.path)
            payload["token"] = token
        where = str(self.address)
        with sock:
            try:
                sock.sendall(_encode(payload))
                with sock.makefile("rb") as reader:
                    line = reader.readline(MAX_RESPONSE_BYTES + 1)
            except (TimeoutError, socket.timeout):
                raise DeviceError(f"vcam daemon at {where} did not answer within {self.timeout_s:g} s") from None
            except OSError as e:
                raise DeviceError(f"lost the connection to the vcam daemon at {where}: {e.strerror or e}") from None
        if not line:
            raise DeviceError(f"vcam daemon at {where} closed the connection without an answer")
        if len(line) > MAX_RESPONSE_BYTES:
            raise DeviceError(f"vcam daemon at {where} answered more than {MAX_RESPONSE_BYTES} bytes")
        try:
            response = json.loads(line.decode("utf-8"))
        except ValueError:
            raise DeviceError(f"vcam daemon at {where} answered {_short(line)}, expected a JSON object") from None
        if not isinstance(response, dict) or not isinstance(response.get("ok"), bool):
            raise DeviceError(f"vcam daemon at {where} answered {_short(response)}, expected {{\"ok\": ...}}")
        return response

    def send(self, obj: dict) -> dict:
        """:meth:`request`, raising ``InputError`` with the daemon's message when it says not ok."""
        response = self.request(obj)
        if not response["ok"]:
            raise InputError(f"vcam daemon refused {obj.get('command', 'the request')!r}: {response.get('error')}")
        return response

    def status(self) -> dict:
        """The daemon's status dict."""
        status = self.send({"command": "status"}).get("status")
        if not isinstance(status, dict):
            raise DeviceError(f"vcam daemon at {self.address} answered status {_short(status)}, expected an object")
        return status

    def _connect_unix(self, path: Path) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            sock.close()
            raise _not_running(path, "socket") from None
        except PermissionError:
            sock.close()
            raise DeviceError(f"cannot open control socket {path}: permission denied (is it another user's?)") from None
        except OSError as e:
            sock.close()
            raise DeviceError(f"cannot connect to control socket {path}: {e.strerror or e}") from None
        return sock

    def _connect_tcp(self, token_file: Path) -> tuple[socket.socket, str]:
        port, token = _read_token_file(token_file)
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=self.timeout_s)
        except ConnectionRefusedError:
            raise _not_running(token_file, "control file (stale)") from None
        except OSError as e:
            raise DeviceError(f"cannot connect to the vcam daemon on 127.0.0.1:{port}: {e.strerror or e}") from None
        return sock, token
