"""A lean Engine API client over the daemon's unix socket (the standard library's
http.client), for commands where start-up time counts: `orchestr up` and the other
Compose commands. httpx, which the other commands use, costs ~0.18 s to import.

`UnixClient` offers the part of `orchestr.client.Client` those commands use —
`request`, `json`, `stream` (a response with `iter_bytes` / `iter_text`), `close`, a
context manager — with the same `ApiError` / `DaemonUnreachable` errors. It is safe to
share between threads: each thread keeps its own keep-alive connection.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from orchestr.errors import OrchestrError

__all__ = ["LeanResponse", "UnixClient"]

API_VERSION = "1.41"  # as orchestr.client's, which imports httpx


class _Connection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("docker", timeout=timeout)
        self.path = path
        self.used = False  # answered a request already: kept alive, maybe closed since

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class LeanResponse:
    """What the Compose commands read of an answer."""

    def __init__(self, raw: http.client.HTTPResponse, content: bytes | None) -> None:
        self.raw = raw
        self.status_code = raw.status
        self.headers = {k.lower(): v for k, v in raw.getheaders()}
        self._content = content

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = self.raw.read()
        return self._content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def iter_bytes(self) -> Iterator[bytes]:
        while True:
            chunk = self.raw.read1(65536)
            if not chunk:
                return
            yield chunk

    def iter_text(self) -> Iterator[str]:
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        for chunk in self.iter_bytes():
            text = decoder.decode(chunk)
            if text:
                yield text
        rest = decoder.decode(b"", final=True)
        if rest:
            yield rest


class UnixClient:
    """The daemon at `unix://path`."""

    tcp = None
    tls = None

    def __init__(self, host: str, *, timeout: float | None = 60.0) -> None:
        if not host.startswith("unix://"):
            raise OrchestrError(f"{host}: the lean client speaks only unix:// sockets")
        self.host = host
        self.socket = host[len("unix://") :]
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[_Connection] = []
        self._lock = threading.Lock()

    def __enter__(self) -> UnixClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def _connection(self, fresh: bool = False) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = _Connection(self.socket, self.timeout)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> LeanResponse:
        target = f"/v{API_VERSION}{path}"
        if params:
            target += "?" + urlencode(params, doseq=True)
        head = {"User-Agent": "orchestr-cli", **(headers or {})}
        body: Any = content
        if json is not None:
            body = _dumps(json)
            head["Content-Type"] = "application/json"
        elif body is None and method in ("POST", "PUT"):
            body = b""
        if body is not None and not isinstance(body, bytes | bytearray):
            head["Transfer-Encoding"] = "chunked"
        for attempt in (0, 1):
            conn = self._connection(fresh=attempt == 1 or stream)
            reused = conn.used
            try:
                conn.request(
                    method,
                    target,
                    body=body,
                    headers=head,
                    encode_chunked="Transfer-Encoding" in head,
                )
                raw = conn.getresponse()
                conn.used = True
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                replayable = body is None or isinstance(body, bytes | bytearray)
                if attempt == 0 and reused and replayable:
                    continue  # a kept-alive connection the daemon had closed: once more
                raise self._unreachable(e) from None
            except OSError as e:
                raise self._unreachable(e) from None
            if stream and raw.status < 400:
                self._local.conn = None  # the stream owns this connection now
                return LeanResponse(raw, None)
            response = LeanResponse(raw, raw.read())
            if response.status_code >= 400:
                raise _error(response)
            return response
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, **kwargs: Any) -> LeanResponse:
        return self._send(method, path, **kwargs)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else None

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[LeanResponse]:
        response = self._send(method, path, stream=True, **kwargs)
        try:
            yield response
        finally:
            response.raw.close()

    def _unreachable(self, e: Exception) -> OrchestrError:
        from orchestr.client import DaemonUnreachable, _reason

        return DaemonUnreachable(
            f"cannot reach the orchestr daemon at {self.host} ({_reason(e)}); "
            "is `orchestr daemon` running?"
        )


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _error(response: LeanResponse) -> OrchestrError:
    from orchestr.client import ApiError

    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    if not isinstance(message, str) or not message:
        message = response.text.strip() or response.raw.reason
    return ApiError(message, response.status_code)
