"""The Engine API's container endpoints over the container service.

Attach follows dockerd: a client may attach before the container starts (`docker
run` attaches, then waits, then starts); such clients are parked and connected to
the supervisor's output between the supervisor's create and start, so they miss
nothing. Wait answers its 200 at once (dockerd flushes the headers before the
container exits) and the status when the condition is met.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.containers import logs as container_logs
from agent.containers import observe
from agent.containers.records import ZERO_TIME, Record
from agent.containers.service import Conflict, ContainerService, NameConflict, NotFound
from agent.containers.spec import ContainerSpec, SpecError
from agent.images.store import ImageNotFound
from agent.network import NetworkError
from agent.network.ports import PortError, PortMapping, ports_for_inspect, ports_for_list
from orchestr.api.http import (
    HttpError,
    Request,
    Response,
    Router,
    in_thread,
    json_response,
    off_loop,
)
from orchestr.api.logstream import MULTIPLEXED, RAW, parse_since, render

_STATUSES = (
    (NotFound, 404),
    (ImageNotFound, 404),
    (NameConflict, 409),
    (Conflict, 409),
    (SpecError, 400),
)


class ContainersApi:
    def __init__(self, service: ContainerService) -> None:
        self.service = service
        # Clients attached before start: (go, connected) per client; start sets `go`, the
        # attach connects to the supervisor and sets `connected`, then start goes on.
        self._parked: dict[str, list[tuple[asyncio.Future[None], asyncio.Future[None]]]] = {}
        self._preparing: set[str] = set()  # containers whose start is preparing
        r = self.router = Router()
        r.route("POST", "/containers/create")(self.create)
        r.route("GET", "/containers/json")(self.list_containers)
        r.route("POST", "/containers/prune")(self.prune)
        r.route("GET", "/containers/{id}/json")(self.inspect)
        r.route("POST", "/containers/{id}/start")(self.start)
        r.route("POST", "/containers/{id}/stop")(self.stop)
        r.route("POST", "/containers/{id}/restart")(self.restart)
        r.route("POST", "/containers/{id}/kill")(self.kill)
        r.route("POST", "/containers/{id}/wait")(self.wait)
        r.route("POST", "/containers/{id}/attach")(self.attach)
        r.route("GET", "/containers/{id}/logs")(self.logs)
        r.route("POST", "/containers/{id}/rename")(self.rename)
        r.route("POST", "/containers/{id}/resize")(self.resize)
        r.route("DELETE", "/containers/{id}")(self.remove)
        r.route("POST", "/containers/{id}/pause")(self.pause)
        r.route("POST", "/containers/{id}/unpause")(self.unpause)
        r.route("GET", "/containers/{id}/top")(self.top)
        r.route("GET", "/containers/{id}/stats")(self.stats)
        r.route("POST", "/containers/{id}/exec")(self.exec_create)
        r.route("POST", "/exec/{id}/start")(self.exec_start)
        r.route("GET", "/exec/{id}/json")(self.exec_inspect)
        r.route("POST", "/exec/{id}/resize")(self.exec_resize)
        self._execs: dict[str, dict[str, Any]] = {}
        for method, path in (
            ("POST", "/containers/{id}/update"),
            ("GET", "/containers/{id}/changes"),
            ("GET", "/containers/{id}/export"),
            ("GET", "/containers/{id}/archive"),
            ("PUT", "/containers/{id}/archive"),
        ):
            r.route(method, path)(self.not_yet)

    # -- helpers

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await off_loop(_STATUSES, fn, *args, **kwargs)
        except (NetworkError, PortError) as e:  # a taken port or address is a conflict
            taken = "already allocated" in str(e) or "already in use" in str(e)
            raise HttpError(409 if taken else 400, str(e)) from None

    async def _record(self, request: Request) -> Record:
        record: Record = await self._call(self.service.get, request.params["id"])
        return record

    async def not_yet(self, request: Request) -> Response:
        raise HttpError(501, f"{request.method} {request.path}: not supported yet")

    # -- create, read

    async def create(self, request: Request) -> Response:
        body = await request.json()
        record, warnings = await self._call(self.service.create, body, request.arg("name"))
        return json_response({"Id": record.id, "Warnings": warnings}, 201)

    async def inspect(self, request: Request) -> Response:
        record = await self._record(request)
        return json_response(await asyncio.to_thread(self._inspect, record))

    def _inspect(self, record: Record) -> dict[str, Any]:
        spec = self.service.spec(record)
        directory = self.service.records.dir(record.id)
        try:
            image = self.service.images.find(record.image_id)
            image_inner = image.config.get("config") or {}
        except ImageNotFound:
            image_inner = {}
        entrypoint = (
            spec.entrypoint if spec.entrypoint is not None else image_inner.get("Entrypoint")
        )
        cmd = (
            spec.cmd
            if spec.cmd is not None
            else (image_inner.get("Cmd") if spec.entrypoint is None else None)
        )
        args = [*(entrypoint or []), *(cmd or [])]
        env = list(image_inner.get("Env") or [])
        for entry in spec.env:
            key = entry.partition("=")[0]
            env = [e for e in env if e.partition("=")[0] != key] + [entry]
        host = dict(record.body.get("HostConfig") or {})
        host.setdefault("NetworkMode", spec.network_mode)
        host.setdefault("RestartPolicy", {"Name": spec.restart.name, "MaximumRetryCount": 0})
        host.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        return {
            "Id": record.id,
            "Created": record.created,
            "Path": args[0] if args else "",
            "Args": args[1:],
            "State": _state(record),
            "Image": record.image_id,
            "ResolvConfPath": os.path.join(directory, "etc", "resolv.conf"),
            "HostnamePath": os.path.join(directory, "etc", "hostname"),
            "HostsPath": os.path.join(directory, "etc", "hosts"),
            "LogPath": record.log_path,
            "Name": "/" + record.name,
            "RestartCount": record.restart_count,
            "Driver": "overlay",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": host,
            "GraphDriver": {
                "Name": "overlay",
                "Data": {
                    "MergedDir": os.path.join(directory, "bundle", "rootfs"),
                    "UpperDir": os.path.join(directory, "upper"),
                    "WorkDir": os.path.join(directory, "work"),
                },
            },
            "Mounts": record.mounts,
            "Config": {
                "Hostname": record.hostname,
                "Domainname": "",
                "User": spec.user or image_inner.get("User", ""),
                "AttachStdin": bool(record.body.get("AttachStdin")),
                "AttachStdout": bool(record.body.get("AttachStdout")),
                "AttachStderr": bool(record.body.get("AttachStderr")),
                "ExposedPorts": {**(image_inner.get("ExposedPorts") or {}), **spec.exposed_ports}
                or None,
                "Tty": spec.tty,
                "OpenStdin": spec.open_stdin,
                "StdinOnce": spec.stdin_once,
                "Env": env,
                "Cmd": cmd,
                "Image": record.image,
                "Volumes": {**(image_inner.get("Volumes") or {}), **spec.volumes} or None,
                "WorkingDir": spec.working_dir or image_inner.get("WorkingDir", ""),
                "Entrypoint": entrypoint,
                "OnBuild": None,
                "Labels": {**(image_inner.get("Labels") or {}), **spec.labels},
                **({"StopSignal": spec.stop_signal} if spec.stop_signal else {}),
                **({"StopTimeout": spec.stop_timeout} if spec.stop_timeout is not None else {}),
                **(
                    {"Healthcheck": record.body["Healthcheck"]}
                    if record.body.get("Healthcheck")
                    else {}
                ),
            },
            "NetworkSettings": network_settings(record, spec, image_inner),
        }

    async def list_containers(self, request: Request) -> Response:
        show_all = request.flag("all")
        limit = request.int_arg("limit", -1) or -1
        filters = request.json_arg("filters") or {}
        if not isinstance(filters, dict):
            raise HttpError(400, "filters: expected a JSON object")
        for key in filters:
            if key not in ("id", "name", "label", "status", "ancestor", "exited", "health"):
                raise HttpError(400, f"invalid filter '{key}'")
        for value in _values(filters, "health"):
            if value not in _HEALTHS:
                raise HttpError(
                    400,
                    f"invalid filter 'health={value}': invalid value for health ({value}): "
                    f"must be one of {', '.join(_HEALTHS)}",
                )

        def summaries() -> list[dict[str, Any]]:
            out = []
            for record in self.service.records.all():
                if not show_all and not record.running and not filters.get("status"):
                    continue
                if not _matches(record, filters):
                    continue
                out.append(_summary(record, self.service))
            return out[:limit] if limit > 0 else out

        return json_response(await asyncio.to_thread(summaries))

    # -- lifecycle

    async def start(self, request: Request) -> Response:
        record = await self._record(request)
        if record.running:
            return Response(304, b"", None)
        self._preparing.add(record.id)
        try:
            prepared = await self._call(self.service.prepare_start, record.id)
        except BaseException as e:
            for go, _ in self._parked.pop(record.id, []):  # nothing to attach to: end them
                if not go.done():
                    go.set_exception(HttpError(409, f"the container did not start: {e}"))
            raise
        finally:
            self._preparing.discard(record.id)
        # From here on the supervisor has the container: a later attach connects at once.
        connected = []
        for go, ready in self._parked.pop(record.id, []):
            if not go.done():
                go.set_result(None)
                connected.append(ready)
        if connected:  # the output of the first instant must reach them too
            await asyncio.wait(connected, timeout=5)
        await self._call(self.service.finish_start, prepared)
        return Response(204, b"", None)

    async def stop(self, request: Request) -> Response:
        record = await self._record(request)
        stopped = await self._call(
            self.service.stop, record.id, request.int_arg("t"), request.arg("signal")
        )
        return Response(204 if stopped else 304, b"", None)

    async def restart(self, request: Request) -> Response:
        record = await self._record(request)
        await self._call(self.service.stop, record.id, request.int_arg("t"))
        await self._call(self.service.start, record.id)
        return Response(204, b"", None)

    async def kill(self, request: Request) -> Response:
        record = await self._record(request)
        await self._call(self.service.kill, record.id, request.arg("signal"))
        return Response(204, b"", None)

    async def remove(self, request: Request) -> Response:
        record = await self._record(request)
        await self._call(
            self.service.remove, record.id, force=request.flag("force"), volumes=request.flag("v")
        )
        for exec_id in [e for e, info in self._execs.items() if info["container"] == record.id]:
            del self._execs[exec_id]  # execs live as long as their container, as in Docker
        return Response(204, b"", None)

    async def pause(self, request: Request) -> Response:
        record = await self._record(request)
        await self._call(self.service.pause, record.id)
        return Response(204, b"", None)

    async def unpause(self, request: Request) -> Response:
        record = await self._record(request)
        await self._call(self.service.unpause, record.id)
        return Response(204, b"", None)

    async def top(self, request: Request) -> Response:
        record = await self._record(request)
        if record.status not in ("running", "paused"):
            raise HttpError(409, f"Container {record.id} is not running")
        try:
            answer = await asyncio.to_thread(
                observe.top, self.service.runtime, record.id, request.arg("ps_args") or "-ef"
            )
        except ValueError as e:
            raise HttpError(500, str(e)) from None
        return json_response(answer)

    async def stats(self, request: Request) -> Response | None:
        record = await self._record(request)
        stream = request.flag("stream", default=True)
        one_shot = request.flag("one-shot")

        def reading(previous: dict[str, Any] | None) -> dict[str, Any]:
            if record.status not in ("running", "paused"):  # stopped: zeros, as dockerd
                doc: dict[str, Any] = {
                    "read": "0001-01-01T00:00:00Z",
                    "pids_stats": {},
                    "cpu_stats": observe.EMPTY_CPU,
                    "memory_stats": {},
                }
            else:
                doc = observe.sample(self.service.runtime, record.id)
            doc["preread"] = previous["read"] if previous else "0001-01-01T00:00:00Z"
            doc["precpu_stats"] = previous["cpu_stats"] if previous else observe.EMPTY_CPU
            doc["name"] = "/" + record.name
            doc["id"] = record.id
            return doc

        await request.start_stream(200, "application/json")
        previous = None
        if not stream and not one_shot:  # dockerd takes two readings for a CPU percentage
            previous = await asyncio.to_thread(reading, None)
            await asyncio.sleep(1)
        gone = asyncio.ensure_future(request.client_gone())
        try:
            while True:
                doc = await asyncio.to_thread(reading, previous)
                await request.write_json(doc)
                if not stream or gone.done() or not record.running:
                    break
                previous = doc
                await asyncio.wait([gone], timeout=1)
                if gone.done():
                    break
        finally:
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
        await request.end()
        return None

    async def rename(self, request: Request) -> Response:
        name = request.arg("name")
        if not name:
            raise HttpError(400, "name is required")
        record = await self._record(request)
        await self._call(self.service.rename, record.id, name)
        return Response(204, b"", None)

    async def resize(self, request: Request) -> Response:
        record = await self._record(request)
        height, width = request.int_arg("h", 0) or 0, request.int_arg("w", 0) or 0
        if self.service.spec(record).tty and record.running:
            await self._call(self.service.supervisor.resize, record.id, height, width)
        return Response(200, b"", None)

    # -- exec

    async def exec_create(self, request: Request) -> Response:
        record = await self._record(request)
        body = await request.json()
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        cmd = body.get("Cmd")
        if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
            raise HttpError(400, "No exec command specified")
        if body.get("Privileged"):
            raise HttpError(400, "Privileged: privileged exec is not supported yet")
        if record.status != "running":
            raise HttpError(409, f"Container {record.id} is not running")
        exec_id = secrets.token_hex(32)
        process = await self._call(
            self.service.exec_process,
            record,
            cmd,
            env=list(body.get("Env") or []),
            user=body.get("User") or "",
            working_dir=body.get("WorkingDir") or "",
            tty=bool(body.get("Tty")),
        )
        tty = bool(body.get("Tty"))
        stdin = bool(body.get("AttachStdin"))
        await self._call(
            self.service.supervisor.exec_create, record.id, exec_id, process, stdin=stdin, tty=tty
        )
        self._execs[exec_id] = {
            "container": record.id,
            "tty": tty,
            "stdin": stdin,
            "stdout": bool(body.get("AttachStdout")),
            "stderr": bool(body.get("AttachStderr")),
            "cmd": cmd,
            "user": body.get("User") or "",
            "detach_keys": body.get("DetachKeys") or "",
        }
        self.service.events.publish(
            "container", f"exec_create: {' '.join(cmd)}", record.id, {"execID": exec_id}
        )
        return json_response({"Id": exec_id}, 201)

    async def exec_start(self, request: Request) -> Response | None:
        exec_id = request.params["id"]
        info = self._execs.get(exec_id)
        if info is None:
            raise HttpError(404, f"No such exec instance: {exec_id}")
        body = await request.json(required=False) or {}
        sup = self.service.supervisor
        if body.get("Detach"):
            await self._call(sup.exec_start, exec_id)
            return Response(200, b"", None)
        leftover, reader, writer = await request.hijack(RAW if info["tty"] else MULTIPLEXED)
        try:
            sock = await asyncio.to_thread(
                sup.exec_attach, exec_id, info["stdin"], info["stdout"], info["stderr"]
            )
            await asyncio.to_thread(sup.exec_start, exec_id)
            await _relay(sock, leftover, reader, writer, info["stdin"], tty=info["tty"])
        except Exception:
            pass  # the client left, or the exec could not start (its inspect says so)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        return None

    async def exec_inspect(self, request: Request) -> Response:
        exec_id = request.params["id"]
        info = self._execs.get(exec_id)
        if info is None:
            raise HttpError(404, f"No such exec instance: {exec_id}")
        try:
            state = await asyncio.to_thread(self.service.supervisor.exec_state, exec_id)
        except Exception:
            state = {"running": False, "exit_code": None, "pid": 0}
        return json_response(
            {
                "ID": exec_id,
                "Running": bool(state.get("running")),
                "ExitCode": state.get("exit_code"),
                "ProcessConfig": {
                    "tty": info["tty"],
                    "entrypoint": info["cmd"][0],
                    "arguments": info["cmd"][1:],
                    "privileged": False,
                    "user": info["user"],
                },
                "OpenStdin": info["stdin"],
                "OpenStderr": info["stderr"],
                "OpenStdout": info["stdout"],
                "CanRemove": False,
                "ContainerID": info["container"],
                "DetachKeys": info["detach_keys"],
                "Pid": int(state.get("pid") or 0),
            }
        )

    async def exec_resize(self, request: Request) -> Response:
        exec_id = request.params["id"]
        if exec_id not in self._execs:
            raise HttpError(404, f"No such exec instance: {exec_id}")
        height, width = request.int_arg("h", 0) or 0, request.int_arg("w", 0) or 0
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.service.supervisor.exec_resize, exec_id, height, width)
        return Response(201, b"", None)

    async def prune(self, request: Request) -> Response:
        def run() -> list[str]:
            removed = []
            for record in self.service.records.all():
                if not record.running and record.status != "restarting":
                    self.service.remove(record.id)
                    removed.append(record.id)
            return removed

        removed = await self._call(run)
        return json_response({"ContainersDeleted": removed or None, "SpaceReclaimed": 0})

    async def wait(self, request: Request) -> Response | None:
        condition = request.arg("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise HttpError(400, f"invalid condition: {condition}")
        record = await self._record(request)
        cancel = threading.Event()
        waiting = asyncio.ensure_future(self._call(self.service.wait, record.id, condition, cancel))
        await request.start_stream(200, "application/json")  # registered: say so at once
        gone = asyncio.ensure_future(request.client_gone())
        try:
            await asyncio.wait([waiting, gone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiting.done():
                cancel.set()  # the client hung up (`docker run -d` does): stop waiting
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)  # its read must end first
        if not waiting.done():
            with contextlib.suppress(BaseException):
                await waiting
            return None
        code, error = waiting.result()
        await request.write(
            json.dumps(
                {"StatusCode": code, "Error": {"Message": error} if error else None}
            ).encode()
            + b"\n"
        )
        await request.end()
        return None

    # -- output

    async def logs(self, request: Request) -> Response | None:
        record = await self._record(request)
        stdout, stderr = request.flag("stdout"), request.flag("stderr")
        if not stdout and not stderr:
            raise HttpError(400, "you must choose at least one stream")
        tail_arg = request.arg("tail") or "all"
        tail = None if tail_arg == "all" else _int(tail_arg, "tail")
        since = _since(request.arg("since"))
        until = _since(request.arg("until"))
        timestamps = request.flag("timestamps")
        follow = request.flag("follow")
        # --details: the attributes of log options (none here), then a space, as dockerd
        attrs = "" if request.flag("details") else None
        tty = self.service.spec(record).tty
        await request.start_stream(200, RAW if tty else MULTIPLEXED)

        def history() -> list[bytes]:
            entries = container_logs.select(
                container_logs.read(record.log_path),
                stdout=stdout,
                stderr=stderr,
                since=since,
                until=until,
                tail=tail,
            )
            return [render(e, timestamps=timestamps, tty=tty, attrs=attrs) for e in entries]

        for chunk in await asyncio.to_thread(history):
            await request.write(chunk)
        if follow and record.running:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[bytes | None] = asyncio.Queue()
            stop = threading.Event()
            gone = asyncio.ensure_future(request.client_gone())
            gone.add_done_callback(lambda _: stop.set())

            def tail_file() -> None:
                def more() -> bool:
                    return record.running and not stop.is_set()

                try:
                    for e in container_logs.follow(record.log_path, more):
                        if (e.stream == 1 and stdout) or (e.stream == 2 and stderr):
                            data = render(e, timestamps=timestamps, tty=tty, attrs=attrs)
                            loop.call_soon_threadsafe(queue.put_nowait, data)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, None)

            worker = in_thread(tail_file)  # as long as the client follows
            try:
                while (data := await queue.get()) is not None:
                    await request.write(data)
            finally:
                stop.set()  # also when the client left or the daemon stops
                gone.cancel()
                await asyncio.gather(gone, return_exceptions=True)
                await worker
        await request.end()
        return None

    async def attach(self, request: Request) -> Response | None:
        record = await self._record(request)
        spec = self.service.spec(record)
        want_stdin = request.flag("stdin") and spec.open_stdin
        want_stdout, want_stderr = request.flag("stdout"), request.flag("stderr")
        if request.flag("logs"):
            raise HttpError(501, "attach with logs=1 is not supported yet; use /logs")
        if not request.flag("stream"):
            raise HttpError(400, "attach without stream=1 is not supported")
        leftover, reader, writer = await request.hijack(RAW if spec.tty else MULTIPLEXED)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        try:
            # Park until start has the container in the supervisor: before any start, or
            # while one is preparing. (A start past that point has the container there.)
            if record.id in self._preparing or record.status in ("created", "exited"):
                go: asyncio.Future[None] = loop.create_future()
                self._parked.setdefault(record.id, []).append((go, ready))
                await go
            try:
                sock = await asyncio.to_thread(
                    self.service.supervisor.attach, record.id, want_stdin, want_stdout, want_stderr
                )
            finally:
                if not ready.done():
                    ready.set_result(None)
            await _relay(sock, leftover, reader, writer, want_stdin, tty=spec.tty)
        except Exception:
            pass  # the client left, or the container is gone: nothing to tell anyone
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        return None


async def _relay(
    sock: socket.socket,
    leftover: bytes,
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    stdin: bool,
    *,
    tty: bool = False,
) -> None:
    """Client <-> supervisor: stdin up (closed when the client half-closes), output down
    until the supervisor closes (the container exited and its output is drained)."""
    sock.setblocking(False)
    sup_reader, sup_writer = await asyncio.open_unix_connection(sock=sock)

    async def up() -> None:
        try:
            if leftover and stdin:
                sup_writer.write(leftover)
            while data := await client_reader.read(65536):
                if stdin:
                    sup_writer.write(data)
                    await sup_writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if stdin and not tty and sup_writer.can_write_eof():  # a tty is not closed
                with contextlib.suppress(OSError):
                    sup_writer.write_eof()

    uploader = asyncio.ensure_future(up())
    try:
        while data := await sup_reader.read(65536):
            client_writer.write(data)
            await client_writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        uploader.cancel()
        sup_writer.close()


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise HttpError(400, f"invalid value for {name}: {text!r}") from None


def _since(text: str | None) -> float:
    """Docker's since/until: UNIX seconds (with fractions) or RFC 3339; 0 = unset."""
    try:
        return parse_since(text)
    except ValueError as e:
        raise HttpError(400, str(e)) from None


def _shown_status(record: Record) -> str:
    """Docker has no "starting": a container being started shows as it was before, a
    restart as "restarting"."""
    if record.status != "starting":
        return record.status
    if record.restart_count and record.exits:
        return "restarting"
    return "exited" if record.exits else "created"


def _state(record: Record) -> dict[str, Any]:
    status = _shown_status(record)
    health = {"Health": record.health} if record.health is not None else {}
    return {
        "Status": status,
        "Running": record.status in ("running", "paused"),
        "Paused": record.status == "paused",
        "Restarting": status == "restarting",
        "OOMKilled": record.oom_killed,
        "Dead": record.status == "dead",
        "Pid": record.pid if record.status in ("running", "paused") else 0,
        "ExitCode": record.exit_code,
        "Error": record.error,
        "StartedAt": record.started_at,
        "FinishedAt": record.finished_at,
        **health,
    }


def _human(seconds: float) -> str:
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    if seconds < 3600:
        m = round(seconds / 60)
        return "About a minute" if m == 1 else f"{m} minutes"
    if seconds < 48 * 3600:
        h = round(seconds / 3600)
        return "About an hour" if h == 1 else f"{h} hours"
    return f"{int(seconds / 86400)} days"


def _status_line(record: Record) -> str:
    now = time.time()
    if record.status in ("running", "paused"):
        up = f"Up {_human(now - container_logs.parse_time(record.started_at))}"
        if record.status == "paused":
            return up + " (Paused)"
        if record.health is not None:  # dockerd's Health.String()
            status = record.health.get("Status") or "unhealthy"
            return f"{up} (health: starting)" if status == "starting" else f"{up} ({status})"
        return up
    if record.status == "restarting":
        return f"Restarting ({record.exit_code}) {_human(now - _t(record.finished_at))} ago"
    if record.status in ("exited", "starting") and record.finished_at != ZERO_TIME:
        return f"Exited ({record.exit_code}) {_human(now - _t(record.finished_at))} ago"
    if record.status == "removing":
        return "Removal In Progress"
    return "Created"


def _t(text: str) -> float:
    try:
        return container_logs.parse_time(text)
    except ValueError:
        return 0.0


def _summary(record: Record, service: ContainerService) -> dict[str, Any]:
    spec = service.spec(record)
    command = " ".join([*(spec.entrypoint or []), *(spec.cmd or [])])
    if not command:
        try:
            inner = service.images.find(record.image_id).config.get("config") or {}
            command = " ".join([*(inner.get("Entrypoint") or []), *(inner.get("Cmd") or [])])
        except ImageNotFound:
            command = ""
    state = _shown_status(record)
    return {
        "Id": record.id,
        "Names": ["/" + record.name],
        "Image": record.image,
        "ImageID": record.image_id,
        "Command": command,
        "Created": int(_t(record.created)),
        "Ports": ports_for_list(_mappings(record), spec.exposed_ports),
        "Labels": spec.labels,
        "State": state,
        "Status": _status_line(record),
        "HostConfig": {"NetworkMode": spec.network_mode},
        "NetworkSettings": {"Networks": {n: _endpoint(e) for n, e in record.networks.items()}},
        "Mounts": record.mounts,
    }


_ENDPOINT_KEYS = (
    "IPAMConfig",
    "Links",
    "Aliases",
    "NetworkID",
    "EndpointID",
    "Gateway",
    "IPAddress",
    "IPPrefixLen",
    "IPv6Gateway",
    "GlobalIPv6Address",
    "GlobalIPv6PrefixLen",
    "MacAddress",
    "DriverOpts",
)
_EMPTY_ENDPOINT: dict[str, Any] = {
    "IPAMConfig": None,
    "Links": None,
    "Aliases": None,
    "NetworkID": "",
    "EndpointID": "",
    "Gateway": "",
    "IPAddress": "",
    "IPPrefixLen": 0,
    "IPv6Gateway": "",
    "GlobalIPv6Address": "",
    "GlobalIPv6PrefixLen": 0,
    "MacAddress": "",
    "DriverOpts": None,
}


def _endpoint(settings: dict[str, Any]) -> dict[str, Any]:
    """Docker's EndpointSettings, with what is not set yet empty."""
    return {k: settings.get(k, _EMPTY_ENDPOINT[k]) or _EMPTY_ENDPOINT[k] for k in _ENDPOINT_KEYS}


def _mappings(record: Record) -> list[PortMapping]:
    return [PortMapping(str(h), int(p), int(c), str(t)) for h, p, c, t in record.ports]


def network_settings(
    record: Record, spec: ContainerSpec, image_inner: dict[str, Any]
) -> dict[str, Any]:
    """Inspect's NetworkSettings: the endpoints, the published ports, and (as Docker
    shows them) the default bridge's address at the top level."""
    exposed = [*(image_inner.get("ExposedPorts") or {}), *spec.exposed_ports]
    networks = {name: _endpoint(e) for name, e in record.networks.items()}
    top = networks.get("bridge", _EMPTY_ENDPOINT)
    return {
        "Bridge": "",
        "SandboxID": "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports_for_inspect(exposed, _mappings(record)) if record.running else {},
        "SandboxKey": "",
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": top["EndpointID"],
        "Gateway": top["Gateway"],
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": top["IPAddress"],
        "IPPrefixLen": top["IPPrefixLen"],
        "IPv6Gateway": "",
        "MacAddress": top["MacAddress"],
        "Networks": networks,
    }


_HEALTHS = ("none", "starting", "healthy", "unhealthy")


def _values(filters: dict[str, Any], key: str) -> list[str]:
    v = filters.get(key, [])
    return [k for k, on in v.items() if on] if isinstance(v, dict) else list(v)


def _health_status(record: Record) -> str:
    """What the health filter matches: none without a check (or before its start)."""
    if record.health is None:
        return "none"
    return str(record.health.get("Status") or "unhealthy")


def _matches(record: Record, filters: dict[str, Any]) -> bool:
    def values(key: str) -> list[str]:
        return _values(filters, key)

    if values("id") and not any(record.id.startswith(v) for v in values("id")):
        return False
    if values("name") and not any(v.lstrip("/") in record.name for v in values("name")):
        return False
    if values("status") and _shown_status(record) not in values("status"):
        return False
    if values("health") and _health_status(record) not in values("health"):
        return False
    if values("exited") and not (
        record.status == "exited" and str(record.exit_code) in values("exited")
    ):
        return False
    if values("ancestor") and not any(
        a in (record.image, record.image_id) or record.image_id.startswith("sha256:" + a)
        for a in values("ancestor")
    ):
        return False
    labels = record.body.get("Labels") or {}
    for want in values("label"):
        key, eq, value = want.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True
