"""The lean Engine API client over a unix socket, against a small HTTP/1.1 server."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from orchestr.client import ApiError, DaemonUnreachable
from orchestr.unixclient import UnixClient


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[int] = set()

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, doc: object) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        _Handler.connections.add(id(self.connection))
        if self.path.startswith("/v1.41/ok"):
            self._send(200, {"path": self.path})
        elif self.path == "/v1.41/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'{"a": 1}', b'{"b": 2}'):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._send(404, {"message": "no such thing"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        self._send(201, {"got": body})


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "d.sock")
    srv = _Server(path, _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_requests_answers_and_keep_alive(server: str) -> None:
    _Handler.connections.clear()
    with UnixClient(server) as client:
        assert client.json("GET", "/ok", params={"all": 1, "f": ["a", "b"]}) == {
            "path": "/v1.41/ok?all=1&f=a&f=b"
        }
        assert client.json("POST", "/create", json={"Image": "x"}) == {"got": {"Image": "x"}}
        client.json("GET", "/ok")
    assert len(_Handler.connections) == 1  # one kept-alive connection for the thread


def test_errors_carry_the_daemons_message(server: str) -> None:
    with UnixClient(server) as client, pytest.raises(ApiError) as caught:
        client.json("GET", "/missing")
    assert caught.value.status == 404 and str(caught.value) == "no such thing"


def test_streams(server: str) -> None:
    with UnixClient(server) as client, client.stream("GET", "/stream") as response:
        assert "".join(response.iter_text()) == '{"a": 1}{"b": 2}'


def test_no_daemon(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnreachable, match="no such socket"):
        UnixClient(f"unix://{tmp_path}/none.sock").json("GET", "/ok")
