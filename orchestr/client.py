"""The CLI's side of the Engine API: httpx over the daemon's unix socket.

`Client(host)` sends requests under the `/v1.41` prefix and turns an error
answer (`{"message": ...}`) into an `ApiError` carrying the status and the
daemon's message. Progress streams (pull, push, build, load) are JSON
objects one after another; `json_stream` yields them and raises an
`ApiError` for an `{"error": ...}` object in the stream, as the docker CLI
does.

Autostart: when the default socket has no daemon and the user is root, the
CLI starts `orchestr daemon` in the background (its log and pid file under
the data root), says so in one line on stderr, and goes on
(`ORCHESTR_NO_AUTOSTART=1` turns that off).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from orchestr.errors import OrchestrError

if TYPE_CHECKING:  # imported when a Client is made: ~0.18 s the lean paths do not pay
    import httpx

API_VERSION = "1.41"
DEFAULT_SOCKET = "/run/orchestr/orchestr.sock"
DEFAULT_DATA_ROOT = "/var/lib/orchestr"
AUTOSTART_ENV = "ORCHESTR_NO_AUTOSTART"


class ApiError(OrchestrError):
    """The daemon refused a request; `status` is the HTTP status (0: none reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class DaemonUnreachable(ApiError):
    """No daemon answers at the address."""


def client_tls() -> Any:
    """Mutual TLS for tcp:// daemons, from $ORCHESTR_CERT_PATH (or $DOCKER_CERT_PATH, or
    ~/.docker): ca.pem, cert.pem and key.pem, as the docker CLI reads them."""
    import ssl

    directory = (
        os.environ.get("ORCHESTR_CERT_PATH")
        or os.environ.get("DOCKER_CERT_PATH")
        or os.path.expanduser("~/.docker")
    )
    try:
        context = ssl.create_default_context(cafile=os.path.join(directory, "ca.pem"))
        context.load_cert_chain(
            os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        )
    except (OSError, ssl.SSLError) as e:
        raise OrchestrError(
            f"TLS to a tcp:// daemon needs ca.pem, cert.pem and key.pem in {directory} "
            f"(set ORCHESTR_CERT_PATH): {e}"
        ) from None
    return context


class Client:
    """One daemon, by address (`unix:///path.sock`, or `tcp://host:port` with mutual TLS)."""

    def __init__(self, host: str, *, timeout: float | None = 60.0) -> None:
        import httpx

        self.host = host
        self.socket = ""
        self.tcp: tuple[str, int] | None = None
        self.tls: Any = None
        if host.startswith("unix://"):
            self.socket = host[len("unix://") :]
            # verify=False: a unix socket has no TLS, and loading the CA bundle would
            # cost ~100 ms on every command
            transport = httpx.HTTPTransport(uds=self.socket, verify=False)
            base_url = f"http://docker/v{API_VERSION}"
        elif host.startswith(("tcp://", "https://")):
            address = host.split("://", 1)[1].rstrip("/")
            name, _, port = address.rpartition(":")
            if not port.isdigit():
                raise OrchestrError(f"{host}: expected tcp://HOST:PORT")
            self.tcp = (name.strip("[]"), int(port))
            self.tls = client_tls()
            transport = httpx.HTTPTransport(verify=self.tls)
            base_url = f"https://{address}/v{API_VERSION}"
        else:
            raise OrchestrError(f"{host}: expected unix:///path.sock or tcp://HOST:PORT")
        self._http = httpx.Client(
            transport=transport,
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=5.0),
            headers={"User-Agent": "orchestr-cli"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.RemoteProtocolError) as e:
            raise self._unreachable(e) from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        import httpx

        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                yield response
        except (httpx.ConnectError, httpx.RemoteProtocolError) as e:
            raise self._unreachable(e) from None

    def _unreachable(self, e: Exception) -> DaemonUnreachable:
        return DaemonUnreachable(
            f"cannot reach the orchestr daemon at {self.host} ({_reason(e)}); "
            "is `orchestr daemon` running?"
        )


def _reason(e: Exception) -> str:
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, FileNotFoundError):
            return "no such socket"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, PermissionError):
            return "permission denied"
        cause = cause.__cause__ or cause.__context__
    return str(e) or type(e).__name__


def _error(response: httpx.Response) -> ApiError:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    if not isinstance(message, str) or not message:
        message = response.text.strip() or response.reason_phrase
    return ApiError(message, response.status_code)


class TextStream(Protocol):
    def iter_text(self) -> Iterator[str]: ...


def json_stream(response: TextStream) -> Iterator[dict[str, Any]]:
    """The JSON objects of a progress stream; an `error` object raises ApiError."""
    decoder = json.JSONDecoder()
    buffer = ""
    for chunk in response.iter_text():
        buffer += chunk
        while True:
            buffer = buffer.lstrip()
            if not buffer:
                break
            try:
                doc, end = decoder.raw_decode(buffer)
            except ValueError:
                break  # an object split across chunks: wait for the rest
            buffer = buffer[end:]
            if isinstance(doc, dict):
                if doc.get("error") or doc.get("errorDetail"):
                    detail = doc.get("errorDetail") or {}
                    raise ApiError(str(doc.get("error") or detail.get("message")), 0)
                yield doc
    if buffer.strip():
        raise ApiError(f"the daemon's stream ended in the middle of a message: {buffer[:80]!r}")


# -- autostart ---------------------------------------------------------------------------


def connect(host: str, default_host: str, *, timeout: float | None = 60.0) -> Client:
    """A client for `host`, starting a local daemon first when that is wanted:
    the default address, root, no daemon answering, and autostart not turned off."""
    client = Client(host, timeout=timeout)
    if host != default_host or os.geteuid() != 0 or os.environ.get(AUTOSTART_ENV) == "1":
        return client
    try:
        client.request("GET", "/_ping")
        return client
    except DaemonUnreachable:
        pass
    _start_daemon(client.socket)
    return client


def _start_daemon(socket_path: str, wait: float = 15.0) -> None:
    os.makedirs(DEFAULT_DATA_ROOT, mode=0o711, exist_ok=True)
    log_path = os.path.join(DEFAULT_DATA_ROOT, "daemon.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestr", "daemon", "--host", f"unix://{socket_path}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + wait
    probe = Client(f"unix://{socket_path}", timeout=2)
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise OrchestrError(
                    f"the orchestr daemon exited at start (status {proc.returncode}); "
                    f"see {log_path}"
                )
            try:
                probe.request("GET", "/_ping")
                print(
                    f"orchestr: started the daemon in the background (pid {proc.pid}, "
                    f"log {log_path})",
                    file=sys.stderr,
                )
                return
            except DaemonUnreachable:
                time.sleep(0.05)
    finally:
        probe.close()
    raise OrchestrError(f"the orchestr daemon did not answer within {wait:.0f} s; see {log_path}")


# -- hijacked connections (attach) ------------------------------------------------------


def hijack(
    client: Client, path: str, params: dict[str, str], body: object = None
) -> tuple[Any, bytes]:
    """Docker's upgrade: POST `path` with `Upgrade: tcp` on a socket of our own and return
    (the raw connection, bytes already read past the 101 answer)."""
    import socket
    from urllib.parse import urlencode

    try:
        if client.tcp is not None:
            raw = socket.create_connection(client.tcp, timeout=10)
            sock = client.tls.wrap_socket(raw, server_hostname=client.tcp[0])
            sock.settimeout(None)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(client.socket)
    except OSError as e:
        raise client._unreachable(e) from None
    query = urlencode(params)
    payload = json.dumps(body).encode() if body is not None else b""
    request = (
        f"POST /v{API_VERSION}{path}?{query} HTTP/1.1\r\n"
        "Host: docker\r\nUser-Agent: orchestr-cli\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    sock.sendall(request.encode() + payload)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            sock.close()
            raise ApiError("the daemon closed the connection before answering the attach")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if status != 101:
        body = rest
        try:
            message = json.loads(body.decode() or "{}").get("message", status_line)
        except ValueError:
            message = status_line
        sock.close()
        raise ApiError(str(message), status)
    return sock, rest
