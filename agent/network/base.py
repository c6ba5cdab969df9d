"""The network driver interface (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class NetworkError(ValueError):
    """A network request a driver cannot honour (the message says why)."""


@dataclass(frozen=True)
class Endpoint:
    """What a container's network is, as a driver describes it."""

    namespace: str  # "new" | "host" | a path to a network namespace to join
    hostname: str  # what /etc/hostname says
    hosts: str  # the content of /etc/hosts
    resolv_conf: str  # the content of /etc/resolv.conf
    warnings: tuple[str, ...] = field(default_factory=tuple)
    share_uts: bool = False  # the node's hostname too (host networking)


class NetworkDriver(Protocol):
    """One kind of network. `endpoint` is pure: it reads at most the node's own
    name files, and makes nothing."""

    name: str

    def endpoint(self, container_id: str, hostname: str) -> Endpoint: ...
