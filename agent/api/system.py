"""/_ping, /version, /info and /system/df: what `docker version`, `docker info` and
`docker system df` read, for this node."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time
from collections.abc import Callable
from typing import Any

from agent.api.volumes import df_volumes
from agent.events import EventBus, matches
from agent.images.importer import platform_architecture
from agent.images.service import ImageService
from agent.volumes import VolumeStore
from orchestr.api.http import (
    API_VERSION,
    MIN_API_VERSION,
    HttpError,
    Request,
    Response,
    Router,
    json_response,
)


def _mem_total() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


INACTIVE: dict[str, Any] = {
    "NodeID": "",
    "NodeAddr": "",
    "LocalNodeState": "inactive",
    "ControlAvailable": False,
    "Error": "",
    "RemoteManagers": None,
}


class SystemApi:
    def __init__(
        self,
        service: ImageService,
        *,
        node_id: str,
        exec_root: str,
        version: str,
        volumes: VolumeStore | None = None,
        events: EventBus | None = None,
        containers: Any = None,
    ) -> None:
        self.service = service
        # Info.Swarm from the control plane (set by the daemon once its cluster runs)
        self.swarm: Callable[[], dict[str, Any]] | None = None
        self.volumes = volumes
        self.events = events or EventBus()
        self.containers = containers
        self.server_version = version
        self.node_id = node_id
        self.exec_root = exec_root
        self.started = time.time()
        self.router = Router()
        self.router.route("GET", "/_ping")(self.ping)
        self.router.route("GET", "/version")(self.version)
        self.router.route("GET", "/info")(self.info)
        self.router.route("GET", "/system/df")(self.df)
        self.router.route("GET", "/events")(self.stream_events)

    async def ping(self, request: Request) -> Response:
        return Response(
            200,
            b"OK",
            "text/plain; charset=utf-8",
            [
                ("Builder-Version", "1"),
                ("Swarm", "inactive" if self.swarm is None else "active/manager"),
                ("Cache-Control", "no-cache, no-store, must-revalidate"),
                ("Pragma", "no-cache"),
            ],
        )

    async def version(self, request: Request) -> Response:
        uname = os.uname()
        details = {
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux",
            "Arch": platform_architecture(),
            "KernelVersion": uname.release,
            "GitCommit": "",
            "GoVersion": f"python{platform.python_version()}",
            "BuildTime": "",
            "Experimental": "false",
        }
        return json_response(
            {
                "Platform": {"Name": "orchestr"},
                "Components": [
                    {"Name": "Engine", "Version": self.server_version, "Details": details}
                ],
                "Version": self.server_version,
                **details,
                "Experimental": False,
            }
        )

    async def info(self, request: Request) -> Response:
        images = await asyncio.to_thread(lambda: len(self.service.records()))
        swarm = INACTIVE if self.swarm is None else await asyncio.to_thread(self.swarm)
        records = self.containers.records.all() if self.containers is not None else []
        running = sum(1 for r in records if r.status in ("running", "restarting"))
        paused = sum(1 for r in records if r.status == "paused")
        uname = os.uname()
        doc: dict[str, Any] = {
            "ID": self.node_id,
            "Containers": len(records),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": len(records) - running - paused,
            "Images": images,
            "Driver": "overlay",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
            "Plugins": {
                "Volume": ["local"],
                "Network": ["host", "none"],
                "Authorization": None,
                "Log": ["json-file"],
            },
            "MemoryLimit": True,
            "SwapLimit": False,
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "CPUShares": True,
            "CPUSet": True,
            "PidsLimit": True,
            "OomKillDisable": False,
            "IPv4Forwarding": True,
            "BridgeNfIptables": False,
            "BridgeNfIp6tables": False,
            "Debug": False,
            "NFd": len(os.listdir("/proc/self/fd")),
            "NGoroutines": 0,
            "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": _cgroup_version(),
            "NEventsListener": 0,
            "KernelVersion": uname.release,
            "OperatingSystem": _os_name(),
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": uname.machine,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {
                "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
                "IndexConfigs": {},
                "Mirrors": [],
            },
            "NCPU": os.cpu_count() or 1,
            "MemTotal": _mem_total(),
            "GenericResources": None,
            "DockerRootDir": self.service.data_root,
            "HttpProxy": "",
            "HttpsProxy": "",
            "NoProxy": "",
            "Name": socket.gethostname(),
            "Labels": [],
            "ExperimentalBuild": False,
            "ServerVersion": self.server_version,
            "Runtimes": {"orchestr": {"path": "orchestr runtime"}},
            "DefaultRuntime": "orchestr",
            "Swarm": swarm,
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": "",
            "ContainerdCommit": {"ID": "", "Expected": ""},
            "RuncCommit": {"ID": "", "Expected": ""},
            "InitCommit": {"ID": "", "Expected": ""},
            "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
            "Warnings": [],
        }
        return json_response(doc)

    def _containers_df(self) -> list[dict[str, Any]]:
        if self.containers is None:
            return []
        from agent.api.containers import _summary
        from agent.snapshots.overlay import disk_usage

        out = []
        for record in self.containers.records.all():
            doc = _summary(record, self.containers)
            upper = os.path.join(self.containers.records.dir(record.id), "upper")
            size_rw = disk_usage(upper).size if os.path.isdir(upper) else 0
            try:
                image_size = self.service.size(self.service.find(record.image_id))
            except Exception:
                image_size = 0
            doc.update({"SizeRw": size_rw, "SizeRootFs": image_size + size_rw})
            out.append(doc)
        return out

    async def stream_events(self, request: Request) -> Response | None:
        """GET /events: past events from `since`, then live ones until `until` (or
        until the client leaves)."""
        since = _seconds(request.arg("since"))
        until = _seconds(request.arg("until"))
        filters = request.json_arg("filters") or {}
        if not isinstance(filters, dict):
            raise HttpError(400, "filters: expected a JSON object")
        wanted = {
            k: ([x for x, on in v.items() if on] if isinstance(v, dict) else list(v))
            for k, v in filters.items()
        }
        for key in wanted:
            if key not in ("type", "event", "container", "image", "volume", "label"):
                raise HttpError(400, f"invalid filter '{key}'")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def deliver(event: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        token = self.events.subscribe(deliver)
        try:
            await request.start_stream(200, "application/json")
            if since is not None:
                for event in self.events.recent(int(since * 1e9)):
                    if until is not None and event["timeNano"] > until * 1e9:
                        break
                    if matches(event, wanted):
                        await request.write_json(event)
            gone = asyncio.ensure_future(request.client_gone())
            try:
                while not gone.done():
                    timeout = None if until is None else max(0.0, until - time.time())
                    if timeout == 0.0:
                        break
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait(
                        [getter, gone], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        getter.cancel()
                        break
                    event = getter.result()
                    if since is not None and event["timeNano"] < since * 1e9:
                        continue
                    if matches(event, wanted):
                        await request.write_json(event)
            finally:
                gone.cancel()
                await asyncio.gather(gone, return_exceptions=True)
            await request.end()
        finally:
            self.events.unsubscribe(token)
        return None

    async def df(self, request: Request) -> Response:
        def figures() -> dict[str, Any]:
            usage = self.service.disk_usage()
            shared = {u.digest: u for u in usage.images}
            images = []
            for record in self.service.records():
                summary = self.service.summary(record)
                name_digests = {str(n.target.digest) for n in record.names}
                parts = [shared[d] for d in name_digests if d in shared]
                if parts:
                    summary["SharedSize"] = max(p.shared_size for p in parts)
                summary["Containers"] = 0
                images.append(summary)
            return {
                "LayersSize": usage.images_size,
                "Images": images,
                "Containers": self._containers_df(),
                "Volumes": df_volumes(self.volumes) if self.volumes is not None else [],
                "BuildCache": [],
            }

        return json_response(await asyncio.to_thread(figures))


def _seconds(text: str | None) -> float | None:
    """Docker's since/until: UNIX seconds (fractions allowed), or a duration back from now."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    import re

    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text)
    if m is None:
        raise HttpError(400, f"invalid time {text!r}")
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    return time.time() - float(m.group(1)) * scale


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"
