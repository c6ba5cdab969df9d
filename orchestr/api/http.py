"""The daemon's HTTP/1.1 server: h11 over asyncio streams, on a unix socket.

Why this and not a web framework: the Engine API needs three things that
frameworks make awkward — request bodies streamed in (image archives, build
contexts), responses streamed out chunk by chunk (progress, logs, events),
and Docker's connection hijack (`Upgrade: tcp`, `101 UPGRADED`, then a raw
byte stream both ways with half-close) for attach and exec. h11 is a small,
well-kept HTTP/1.1 state machine that httpx already brings; with it each of
the three is a few lines (`Request.stream`, `Request.start_stream`,
`Request.hijack`), and nothing else is installed.

Routing: `Router.route(method, pattern)` with `{name}` (one path segment) or
`{name:path}` (anything, for image names with slashes) placeholders. Every
path is served with and without the `/v1.xx` prefix; a version above
`API_VERSION` or below `MIN_API_VERSION` is refused with 400, as dockerd does.

Errors: a handler raises `HttpError(status, message)` and the client gets
`{"message": message}` with that status. Anything else is a 500 with a
one-line message, logged with its traceback on the daemon's side; the
connection and the daemon carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import ssl
import stat
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

import h11

T = TypeVar("T")

__all__ = [
    "API_VERSION",
    "MIN_API_VERSION",
    "HttpError",
    "Request",
    "Response",
    "Router",
    "Server",
    "json_response",
]

API_VERSION = "1.41"
MIN_API_VERSION = "1.12"
SERVER_NAME = "orchestr"
_READ_SIZE = 65536
_VERSION_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
_TRUE = frozenset({"1", "true", "True", "TRUE", "yes"})

log = logging.getLogger("orchestr.api")


class HttpError(Exception):
    """An answer other than success: the status and the message the client sees."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def off_loop(
    statuses: Sequence[tuple[type[BaseException], int]],
    fn: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Run blocking service code in a worker thread; an error of a listed kind (the
    first that matches) becomes the answer with its status and message."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except Exception as e:
        for kind, status in statuses:
            if isinstance(e, kind):
                raise HttpError(status, str(e)) from None
        raise


def in_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run `fn` in a thread of its own; its result as a future of the running loop.

    For work that lasts as long as a client watches (following logs, events), which
    would hold a thread of the loop's executor for as long and starve every other
    request that needs one."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as e:  # handed to the awaiting side
            loop.call_soon_threadsafe(settle, None, e)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name=getattr(fn, "__name__", "stream"), daemon=True).start()
    return future


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(doc: object, status: int = 200) -> Response:
    return Response(status, json.dumps(doc).encode() + b"\n")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


class Request:
    """One request. The body is read by `body()`, `json()` or `stream()` (once)."""

    def __init__(
        self,
        conn: _Connection,
        method: str,
        target: str,
        headers: dict[str, str],
    ) -> None:
        self._conn = conn
        self.method = method
        raw_path, _, query = target.partition("?")
        self.path = unquote(raw_path)
        self.version: str | None = None
        m = _VERSION_PREFIX.match(self.path)
        if m is not None:
            self.version = f"{m.group(1)}.{m.group(2)}"
            self.path = m.group(3)
        self.query = parse_qs(query, keep_blank_values=True)
        self.headers = headers
        self.params: dict[str, str] = {}
        self._body_done = False
        self.answered = False  # a response, a stream or a hijack has been sent

    # -- query

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return list(self.query.get(name, []))

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.arg(name)
        return default if value is None else value in _TRUE

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise HttpError(400, f"invalid value for {name}: {value!r} is not an integer") from None

    def json_arg(self, name: str) -> Any:
        value = self.arg(name)
        if value is None or value == "":
            return None
        try:
            return json.loads(value)
        except ValueError as e:
            raise HttpError(400, f"invalid JSON in the {name} parameter: {e}") from None

    # -- body

    async def stream(self) -> AsyncIterator[bytes]:
        """The request body as it arrives, never held whole in memory."""
        if self._body_done:
            return
        async for chunk in self._conn.body():
            yield chunk
        self._body_done = True

    async def body(self, limit: int = 64 << 20) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"request body larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def json(self, *, required: bool = True) -> Any:
        data = await self.body()
        if not data.strip():
            if required:
                raise HttpError(400, "the request needs a JSON body")
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise HttpError(400, f"invalid JSON in the request body: {e}") from None

    async def client_gone(self) -> None:
        """Returns when the client closes its side (for long waits: stop waiting)."""
        while await self._conn.reader.read(_READ_SIZE):
            pass

    async def discard_body(self) -> None:
        async for _ in self.stream():
            pass

    # -- streamed and hijacked answers

    async def start_stream(self, status: int = 200, content_type: str = "application/json") -> None:
        """Start a chunked answer; then `write()` chunks and `end()` it."""
        await self.discard_body()
        self.answered = True
        await self._conn.send(
            h11.Response(
                status_code=status, headers=self._conn.headers(content_type), reason=_reason(status)
            )
        )

    async def write(self, chunk: bytes) -> None:
        if chunk:
            await self._conn.send(h11.Data(data=chunk))

    async def write_json(self, doc: object) -> None:
        await self.write(json.dumps(doc).encode() + b"\r\n")

    async def end(self) -> None:
        await self._conn.send(h11.EndOfMessage())

    async def hijack(
        self, content_type: str = "application/vnd.docker.raw-stream"
    ) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
        """Docker's upgrade: answer `101 UPGRADED` and hand over the raw connection.

        Returns the bytes the client already sent past the request, and the
        reader and writer; the client half-closes its side at the end of its
        input, so keep writing until the output ends, then close the writer.
        """
        if self.headers.get("upgrade", "").lower() != "tcp":
            raise HttpError(400, "this endpoint needs a hijacked connection (Upgrade: tcp)")
        await self.discard_body()
        self.answered = True
        return await self._conn.upgrade(content_type)


Handler = Callable[[Request], Awaitable[Response | None]]


class Router:
    """Method + path pattern -> handler, first match wins."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        regex = re.compile(
            "^"
            + re.sub(
                r"\{(\w+)(:path)?\}",
                lambda m: f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})",
                pattern,
            )
            + "$"
        )

        def register(handler: Handler) -> Handler:
            self._routes.append((method, regex, handler))
            return handler

        return register

    def include(self, other: Router) -> None:
        self._routes.extend(other._routes)

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        if method == "HEAD":
            method = "GET"  # dockerd answers HEAD where it answers GET (/_ping)
        for route_method, regex, handler in self._routes:
            if route_method == method:
                m = regex.match(path)
                if m is not None:
                    return handler, m.groupdict()
        return None


class _Connection:
    """One client connection: h11's state machine over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h = h11.Connection(h11.SERVER, max_incomplete_event_size=256 * 1024)

    async def next_event(self) -> Any:
        while True:
            event = self.h.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.h.they_are_waiting_for_100_continue:
                await self.send(h11.InformationalResponse(status_code=100, headers=[]))
            self.h.receive_data(await self.reader.read(_READ_SIZE))

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise HttpError(400, "the client closed the connection in the middle of its body")

    def headers(
        self, content_type: str | None, extra: tuple[tuple[str, str], ...] = ()
    ) -> list[Any]:
        out = [
            (b"Server", SERVER_NAME.encode()),
            (b"Api-Version", API_VERSION.encode()),
            (b"Ostype", b"linux"),
            (b"Docker-Experimental", b"false"),
        ]
        if content_type:
            out.append((b"Content-Type", content_type.encode()))
        out += [(k.encode(), v.encode()) for k, v in extra]
        return out

    async def send(self, event: Any) -> None:
        data = self.h.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def respond(self, request: Request | None, response: Response) -> None:
        head = request is not None and request.method == "HEAD"
        headers = self.headers(
            response.content_type if response.body or head else None,
            (("Content-Length", str(len(response.body))), *response.headers),
        )
        await self.send(
            h11.Response(
                status_code=response.status, headers=headers, reason=_reason(response.status)
            )
        )
        if response.body and not head:
            await self.send(h11.Data(data=response.body))
        await self.send(h11.EndOfMessage())

    async def upgrade(
        self, content_type: str
    ) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
        await self.send(
            h11.InformationalResponse(
                status_code=101,
                reason=b"UPGRADED",
                headers=[
                    (b"Content-Type", content_type.encode()),
                    (b"Connection", b"Upgrade"),
                    (b"Upgrade", b"tcp"),
                ],
            )
        )
        leftover, _ = self.h.trailing_data
        return bytes(leftover), self.reader, self.writer


class Server:
    """Serves a Router on unix sockets (root-only: mode 0660, as dockerd's)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._servers: list[asyncio.AbstractServer] = []
        self._proxies: list[_TlsProxy] = []
        self._connections: set[asyncio.Task[None]] = set()

    async def listen_unix(self, path: str, mode: int = 0o660) -> None:
        if len(os.fsencode(path)) > 107:  # sun_path holds 108 bytes with the NUL
            raise ValueError(
                f"{path}: a unix socket path can have at most 107 bytes; choose a shorter directory"
            )
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if _is_socket(path):
                os.unlink(path)
        old = os.umask(0o177)  # never world-reachable, not even for an instant
        try:
            server = await asyncio.start_unix_server(self._serve, path, limit=_READ_SIZE)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        self._servers.append(server)

    async def listen_tcp(self, host: str, port: int, tls: ssl.SSLContext, backend: str) -> None:
        """A TCP listener, only with mutual TLS (clients must show a certificate the CA
        signed), as dockerd's --tlsverify. TLS ends in a small proxy in front of the
        unix socket `backend`: Python's asyncio TLS cannot half-close (a client's
        close_notify ends the whole connection), and attach and exec need the server
        to go on writing after the client has closed its side."""
        if tls.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("a TCP listener needs client certificates (mutual TLS)")
        proxy = _TlsProxy(host, port, tls, backend)
        proxy.start()
        self._proxies.append(proxy)

    async def close(self) -> None:
        for proxy in self._proxies:
            proxy.stop()
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = _Connection(reader, writer)
        hijacked = False
        try:
            hijacked = await self._requests(conn)
        except (ConnectionError, asyncio.IncompleteReadError, h11.RemoteProtocolError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("connection failed")
        finally:
            self._connections.discard(task)
            if not hijacked:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _requests(self, conn: _Connection) -> bool:
        """Serve requests until the client leaves; True when the connection was hijacked."""
        while True:
            event = await conn.next_event()
            if isinstance(event, h11.ConnectionClosed):
                return False
            if not isinstance(event, h11.Request):
                return False
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            request = Request(conn, event.method.decode(), event.target.decode(), headers)
            await self._dispatch(conn, request)
            if conn.h.our_state is h11.SWITCHED_PROTOCOL:
                return True
            if conn.h.our_state is h11.MUST_CLOSE or conn.h.their_state is h11.MUST_CLOSE:
                return False
            if conn.h.their_state is not h11.DONE:
                await request.discard_body()
            if conn.h.our_state is not h11.DONE or conn.h.their_state is not h11.DONE:
                return False
            conn.h.start_next_cycle()

    async def _dispatch(self, conn: _Connection, request: Request) -> None:
        failure: str | None = None
        try:
            response = await self._handle(request)
        except HttpError as e:
            failure = e.message
            response = json_response({"message": e.message}, e.status)
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client left; nobody to answer
        except Exception as e:
            log.exception("%s %s failed", request.method, request.path)
            failure = f"internal error: {e}"
            response = json_response({"message": failure}, 500)
        if request.answered:
            if conn.h.our_state is h11.SEND_BODY:  # a stream the handler did not end
                if failure is not None:  # said in the stream, as dockerd does
                    error = {"errorDetail": {"message": failure}, "error": failure}
                    await request.write_json(error)
                await request.end()
            return
        if response is None:
            response = Response(204, b"", None)
        if conn.h.their_state is h11.SEND_BODY:
            with contextlib.suppress(HttpError):
                await request.discard_body()
        await conn.respond(request, response)

    async def _handle(self, request: Request) -> Response | None:
        if request.version is not None:
            version = _version_tuple(request.version)
            if version > _version_tuple(API_VERSION):
                raise HttpError(
                    400,
                    f"client version {request.version} is too new. Maximum supported API "
                    f"version is {API_VERSION}",
                )
            if version < _version_tuple(MIN_API_VERSION):
                raise HttpError(
                    400,
                    f"client version {request.version} is too old. Minimum supported API "
                    f"version is {MIN_API_VERSION}, please upgrade your client to a newer "
                    "version",
                )
        found = self.router.match(request.method, request.path)
        if found is None:
            raise HttpError(404, "page not found")
        handler, params = found
        request.params = params
        return await handler(request)


class _TlsProxy:
    """Mutual-TLS TCP in front of the daemon's unix socket: a thread accepts, and each
    connection gets two pumps. A client's half-close (close_notify) becomes a
    shutdown(SHUT_WR) toward the daemon, and the answer keeps flowing back."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext, backend: str) -> None:
        import socket
        import threading

        self.tls = tls
        self.backend = backend
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.listener.settimeout(0.5)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tls-proxy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self.listener.close()

    def _accept(self) -> None:
        import threading

        while not self._stopped.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: object) -> None:
        import socket
        import threading

        assert isinstance(raw, socket.socket)
        try:
            raw.settimeout(10)
            client = self.tls.wrap_socket(raw, server_side=True)
            client.settimeout(None)
        except (OSError, ssl.SSLError):
            raw.close()  # no certificate, or not one our CA signed
            return
        backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            backend.connect(self.backend)
        except OSError:
            client.close()
            backend.close()
            return

        def up() -> None:
            try:
                while data := client.recv(65536):
                    backend.sendall(data)
            except (OSError, ssl.SSLError):
                pass
            with contextlib.suppress(OSError):
                backend.shutdown(socket.SHUT_WR)

        pump = threading.Thread(target=up, daemon=True)
        pump.start()
        try:
            while data := backend.recv(65536):
                client.sendall(data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError, ssl.SSLError):
                client.unwrap()
            client.close()
            backend.close()


def server_tls(ca: str, cert: str, key: str) -> ssl.SSLContext:
    """Mutual TLS for the daemon: our certificate, and clients' checked against the CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


async def stream_from_thread(
    request: Request,
    work: Callable[[Callable[[object], None]], Any],
    *,
    content_type: str = "application/json",
) -> Any:
    """Run blocking `work(emit)` in a thread, streaming each `emit(doc)` to the client
    as one JSON object per line; returns what `work` returned.

    The answer starts with the first object: a `work` that fails before emitting
    anything fails the request with its status (an HttpError's, or 500), as
    dockerd answers `404` for an unknown image before any progress. A failure
    after that is written into the stream as an error object.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    done = object()

    def emit(doc: object) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, doc)

    def run() -> Any:
        try:
            return work(emit)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, done)

    future = in_thread(run)  # a pull or a build may take minutes
    started = False
    while (doc := await queue.get()) is not done:
        if not started:
            await request.start_stream(200, content_type)
            started = True
        await request.write_json(doc)
    result = await future
    if not started:
        await request.start_stream(200, content_type)
    return result
