"""The fast path of `orchestr run`: the whole command without click, httpx or
pydantic, on a raw unix socket.

The full CLI costs ~350 ms of interpreter start-up and imports before its first
request; a container that runs `true` takes ~60 ms. So `run` is tried here
first (from orchestr/__main__.py, before anything else loads), with the same
option table (runspec.RUN_OPTIONS) and the same create body as the click
command. What this path does not do exactly like the click command it hands
back, before any side effect, by returning None: an option it does not know or
cannot read, `-i`/`-t` (terminal handling lives in one place), a host that is
not a unix socket, a daemon that does not answer (the click path starts one),
and an image that is not here (the click path pulls it).

Requests are HTTP/1.1 with a Content-Length; answers are read by
Content-Length or chunked encoding. `attach` upgrades its connection (Docker's
`Upgrade: tcp`) and carries the multiplexed frames that FrameSplitter parses.
"""

from __future__ import annotations

import _socket
import os

from agent.runtime.fastjson import dumps, loads
from orchestr.cli.runspec import RUN_OPTIONS, Option, create_body, defaults
from orchestr.errors import OrchestrError

TYPE_CHECKING = False  # typing costs ~10 ms of start-up; mypy sees the block
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

API_PREFIX = "/v1.41"
DEFAULT_HOST = "unix:///run/orchestr/orchestr.sock"
HOST_ENV = "ORCHESTR_HOST"
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class FrameSplitter:
    """Docker's multiplexed stream: frames of (stream byte, 3 zero bytes, big-endian
    length, data), handed to `write(stream, data)` as they complete."""

    def __init__(self, write: Callable[[int, bytes], None]) -> None:
        self.write = write
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 8:
            length = int.from_bytes(self.buffer[4:8], "big")
            if len(self.buffer) < 8 + length:
                return
            self.write(self.buffer[0], self.buffer[8 : 8 + length])
            self.buffer = self.buffer[8 + length :]


def parse_run(args: list[str]) -> tuple[dict[str, Any], str, list[str]] | None:
    """`run`'s arguments as the click command reads them: (options, image, command),
    or None for anything this parser does not handle exactly as click would."""
    by_name = {name: o for o in RUN_OPTIONS for name in o.names}
    values = defaults()
    many: dict[str, list[object]] = {}

    def take(dest: str, kind: str, convert: Callable[[str], object], text: str) -> bool:
        try:
            value = convert(text)
        except ValueError:
            return False  # click says what is wrong with it
        if kind == "many":
            many.setdefault(dest, []).append(value)
        else:
            values[dest] = value
        return True

    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        arg = args[i]
        i += 1
        # (option, its value when written in the same word) for each option in `arg`
        uses: list[tuple[Option | None, str | None]] = []
        if arg.startswith("--"):
            name, eq, text = arg.partition("=")
            uses.append((by_name.get(name), text if eq else None))
        else:  # -d, -dit, -eK=V, -e K=V
            for j in range(1, len(arg)):
                opt = by_name.get("-" + arg[j])
                if opt is None or opt.kind == "flag":
                    uses.append((opt, None))
                    continue
                uses.append((opt, arg[j + 1 :] or None))
                break
        for opt, given in uses:
            if opt is None:
                return None
            if opt.kind == "flag":
                if given is not None:
                    return None
                values[opt.dest] = True
                continue
            if given is None:
                if i >= len(args):
                    return None
                given = args[i]
                i += 1
            if not take(opt.dest, opt.kind, opt.type, given):
                return None
    if i >= len(args):
        return None
    values.update({dest: tuple(v) for dest, v in many.items()})
    return values, args[i], args[i + 1 :]


class Connection:
    """One HTTP/1.1 connection to the daemon's unix socket."""

    def __init__(self, path: str) -> None:
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.pending = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, method: str, target: str, body: object = None, upgrade: bool = False) -> None:
        payload = dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {API_PREFIX}{target} HTTP/1.1\r\nHost: docker\r\n"
            f"User-Agent: orchestr-cli\r\nContent-Length: {len(payload)}\r\n"
        )
        if body is not None:
            head += "Content-Type: application/json\r\n"
        if upgrade:
            head += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + payload)

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise OrchestrError("the daemon closed the connection in the middle of an answer")
        self.pending += data

    def head(self) -> tuple[int, dict[str, str]]:
        """The status and headers (names in lower case) of the next answer."""
        while b"\r\n\r\n" not in self.pending:
            self._more()
        raw, _, self.pending = self.pending.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def body(self, status: int, headers: dict[str, str]) -> bytes:
        if status in (204, 304) or 100 <= status < 200:
            return b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                while b"\r\n" not in self.pending:
                    self._more()
                size_line, _, self.pending = self.pending.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(self.pending) < size + 2:
                    self._more()
                out += self.pending[:size]
                self.pending = self.pending[size + 2 :]
                if size == 0:
                    return out
        length = int(headers.get("content-length", "0"))
        while len(self.pending) < length:
            self._more()
        out, self.pending = self.pending[:length], self.pending[length:]
        return out

    def request(self, method: str, target: str, body: object = None) -> tuple[int, Any]:
        """(status, the answer's JSON or None)."""
        self.send(method, target, body)
        status, headers = self.head()
        data = self.body(status, headers)
        return status, loads(data) if data else None


def _message(status: int, doc: object) -> str:
    if isinstance(doc, dict) and isinstance(doc.get("message"), str) and doc["message"]:
        return str(doc["message"])
    return f"the daemon answered {status}"


def _quote(text: str) -> str:
    return "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _socket_path(host_flag: str | None) -> str | None:
    host = host_flag or os.environ.get(HOST_ENV) or DEFAULT_HOST
    if host.startswith("/"):
        return host
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return None


def run(args: list[str], host_flag: str | None = None) -> int | None:
    """`orchestr run ARGS` done here, or None to let the click command do it."""
    parsed = parse_run(args)
    path = _socket_path(host_flag)
    if parsed is None or path is None:
        return None
    o, image, command = parsed
    if o["interactive"] or o["tty"]:
        return None
    try:
        body = create_body(image, command, o)
    except OrchestrError:
        return None  # the click command reports it
    try:
        conn = Connection(path)
    except OSError:
        return None  # the click command starts a daemon, or says none answers
    try:
        return _run(conn, path, body, o)
    except _HandBack:
        return None
    except OSError as e:
        os.write(2, f"orchestr: the connection to the daemon failed: {e}\n".encode())
        return 1
    except OrchestrError as e:
        os.write(2, f"orchestr: {e}\n".encode())
        return 1
    finally:
        conn.close()


class _HandBack(Exception):
    """Nothing was done: the click command takes over."""


def _run(conn: Connection, path: str, body: dict[str, Any], o: dict[str, Any]) -> int:
    query = f"?name={_quote(o['name'])}" if o["name"] else ""
    status, doc = conn.request("POST", "/containers/create" + query, body)
    if status == 404 and "No such image" in _message(status, doc):
        raise _HandBack  # the click command pulls it
    if status >= 400 or not isinstance(doc, dict):
        raise OrchestrError(_message(status, doc))
    for warning in doc.get("Warnings") or []:
        os.write(2, f"WARNING: {warning}\n".encode())
    cid = str(doc["Id"])
    if o["detach"]:
        status, doc = conn.request("POST", f"/containers/{cid}/start")
        if status >= 400:
            raise OrchestrError(_message(status, doc))
        _write_all(1, cid.encode() + b"\n")
        return 0
    attach = Connection(path)
    waiter = Connection(path)
    try:
        attach.send("POST", f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1", upgrade=True)
        status, headers = attach.head()
        if status != 101:
            raise OrchestrError(_message(status, _json_or_none(attach.body(status, headers))))
        condition = "removed" if o["remove"] else "next-exit"
        waiter.send("POST", f"/containers/{cid}/wait?condition={condition}")
        wait_status, wait_headers = waiter.head()  # answered at once: the wait is in place
        status, doc = conn.request("POST", f"/containers/{cid}/start")
        if status >= 400:
            if o["remove"]:
                conn.request("DELETE", f"/containers/{cid}?force=1")
            raise OrchestrError(_message(status, doc))
        frames = FrameSplitter(lambda stream, data: _write_all(2 if stream == 2 else 1, data))
        frames.feed(attach.pending)
        while True:
            data = attach.sock.recv(65536)
            if not data:
                break
            frames.feed(data)
        result = _json_or_none(waiter.body(wait_status, wait_headers))
    finally:
        attach.close()
        waiter.close()
    if wait_status >= 400 or not isinstance(result, dict):
        raise OrchestrError(_message(wait_status, result))
    error = result.get("Error")
    if isinstance(error, dict) and error.get("Message"):
        os.write(2, f"orchestr: {error['Message']}\n".encode())
    return int(result.get("StatusCode", 0))


def _json_or_none(data: bytes) -> object:
    try:
        return loads(data) if data else None
    except ValueError:
        return None
