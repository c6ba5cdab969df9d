"""The drivers that make no kernel objects: `none` and `host`."""

from __future__ import annotations

import os

from agent.network.base import Endpoint, NetworkDriver, NetworkError

BRIDGE_NOT_YET = (
    "bridge networking is not supported yet: the container gets its own network namespace "
    "with only a loopback interface (use --network host to share the node's)"
)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _loopback_hosts(hostname: str) -> str:
    return (
        f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    )


class NoneDriver:
    """A new network namespace with only `lo` (Docker's `--network none`)."""

    name = "none"

    def __init__(self, warnings: tuple[str, ...] = ()) -> None:
        self.warnings = warnings

    def endpoint(self, container_id: str, hostname: str) -> Endpoint:
        return Endpoint(
            namespace="new",
            hostname=hostname,
            hosts=_loopback_hosts(hostname),
            resolv_conf=_read("/etc/resolv.conf"),
            warnings=self.warnings,
        )


class HostDriver:
    """The node's own network namespace, host name and name files."""

    name = "host"

    def endpoint(self, container_id: str, hostname: str) -> Endpoint:
        return Endpoint(
            namespace="host",
            hostname=os.uname().nodename,
            hosts=_read("/etc/hosts"),
            resolv_conf=_read("/etc/resolv.conf"),
            share_uts=True,
        )


def driver_for(mode: str) -> NetworkDriver:
    """The driver of a container's NetworkMode."""
    if mode == "host":
        return HostDriver()
    if mode == "none":
        return NoneDriver()
    if mode in ("default", "bridge"):
        return NoneDriver((BRIDGE_NOT_YET,))
    raise NetworkError(
        f"HostConfig.NetworkMode: {mode} networks are not supported yet (default, none and "
        "host are)"
    )
