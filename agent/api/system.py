"""/_ping, /version, /info and /system/df: what `docker version`, `docker info` and
`docker system df` read, for this node."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time
from typing import Any

from agent.api.volumes import df_volumes
from agent.images.importer import platform_architecture
from agent.images.service import ImageService
from agent.volumes import VolumeStore
from orchestr.api.http import (
    API_VERSION,
    MIN_API_VERSION,
    Request,
    Response,
    Router,
    json_response,
)


def _mem_total() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


class SystemApi:
    def __init__(
        self,
        service: ImageService,
        *,
        node_id: str,
        exec_root: str,
        version: str,
        volumes: VolumeStore | None = None,
    ) -> None:
        self.service = service
        self.volumes = volumes
        self.server_version = version
        self.node_id = node_id
        self.exec_root = exec_root
        self.started = time.time()
        self.router = Router()
        self.router.route("GET", "/_ping")(self.ping)
        self.router.route("GET", "/version")(self.version)
        self.router.route("GET", "/info")(self.info)
        self.router.route("GET", "/system/df")(self.df)

    async def ping(self, request: Request) -> Response:
        return Response(
            200,
            b"OK",
            "text/plain; charset=utf-8",
            [
                ("Builder-Version", "1"),
                ("Swarm", "inactive"),
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
        uname = os.uname()
        doc: dict[str, Any] = {
            "ID": self.node_id,
            "Containers": 0,
            "ContainersRunning": 0,
            "ContainersPaused": 0,
            "ContainersStopped": 0,
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
            "Swarm": {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": False,
                "Error": "",
                "RemoteManagers": None,
            },
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
                "Containers": [],
                "Volumes": df_volumes(self.volumes) if self.volumes is not None else [],
                "BuildCache": [],
            }

        return json_response(await asyncio.to_thread(figures))


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"
