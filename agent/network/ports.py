"""Published ports: parsing `-p`, allocating host ports, holding them, reporting them.

Four steps, each its own function, all pure but `reserve`:

1. `parse_publish(specs)` (orchestr.api.ports, re-exported here) reads `docker run -p`
   values as the docker CLI does into ExposedPorts and PortBindings.
2. `PortAllocator` turns bindings into `PortMapping`s. It is plain state: the
   (host ip, port, proto) triples taken. An empty HostIp means 0.0.0.0; a wildcard
   address (0.0.0.0 or ::) clashes with every address of its family on the same port
   and proto, and a specific address with the wildcard of its family. An empty or "0"
   HostPort takes a free port from the ephemeral range 49153-65535 (Docker's, handed out
   round-robin per proto). `allocate` is all-or-nothing: on a clash it raises PortError
   ("Bind for 0.0.0.0:8080 failed: port is already allocated") and takes nothing.
3. `reserve(mapping)` binds (without listening) a socket on the mapping's host address,
   in the caller's network namespace, as Docker does to hold a published port: nothing
   else can take it while the socket is open, and a port some other process already
   uses is found out here (EADDRINUSE, the same PortError). Close the socket to release.
4. `ports_for_inspect` and `ports_for_list` give the Engine API's two views:
   NetworkSettings.Ports (inspect) and the `Ports` list of `GET /containers/json`.

Forwarding the traffic is nftables' job (agent.network.nft), not a proxy's.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestr.api.ports import (
    PROTOS,
    ExposedPorts,
    PortBindings,
    PortError,
    parse_publish,
    port_range,
    split_port_key,
    valid_ip,
)

__all__ = [
    "EPHEMERAL_END",
    "EPHEMERAL_START",
    "PROTOS",
    "ExposedPorts",
    "PortAllocator",
    "PortBindings",
    "PortError",
    "PortMapping",
    "parse_publish",
    "ports_for_inspect",
    "ports_for_list",
    "reserve",
    "split_port_key",
]


EPHEMERAL_START = 49153
EPHEMERAL_END = 65535


# Parsing `-p` is the client's (orchestr.api.ports: the docker CLI's rules); what the
# allocator shares with it is imported from there.


# -- allocation -----------------------------------------------------------------------


@dataclass(frozen=True)
class PortMapping:
    """One published port: host_ip:host_port/proto → the container's container_port."""

    host_ip: str
    host_port: int
    container_port: int
    proto: str

    def host_address(self) -> str:
        """`0.0.0.0:8080`, `[::1]:8080`: as messages name it."""
        return _address(self.host_ip, self.host_port)


def _address(ip: str, port: int | str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _already_allocated(ip: str, port: int | str) -> PortError:
    return PortError(f"Bind for {_address(ip, port)} failed: port is already allocated")


Key = tuple[str, int, str]


def _clashes(key: Key, taken: set[Key]) -> bool:
    ip, port, proto = key
    if key in taken:
        return True
    addr = ipaddress.ip_address(ip)
    wildcard = "0.0.0.0" if addr.version == 4 else "::"
    if ip == wildcard:
        return any(
            p == port and pr == proto and ipaddress.ip_address(i).version == addr.version
            for i, p, pr in taken
        )
    return (wildcard, port, proto) in taken


class PortAllocator:
    """Which host (ip, port, proto) are taken; hands out the rest (see module docstring)."""

    def __init__(self, start: int = EPHEMERAL_START, end: int = EPHEMERAL_END) -> None:
        if not 0 < start <= end <= 65535:
            raise PortError(f"invalid ephemeral port range: {start}-{end}")
        self.start, self.end = start, end
        self._taken: set[Key] = set()
        self._last: dict[str, int] = {}

    def taken(self) -> frozenset[Key]:
        return frozenset(self._taken)

    def release(self, mappings: Iterable[PortMapping]) -> None:
        for m in mappings:
            self._taken.discard((m.host_ip, m.host_port, m.proto))

    def hold(self, mappings: Iterable[PortMapping]) -> None:
        """Take these again (what was released for a change that failed)."""
        for m in mappings:
            self._taken.add((m.host_ip, m.host_port, m.proto))

    def allocate(
        self,
        bindings: Mapping[str, Sequence[Mapping[str, str]] | None],
        publish_all_exposed: Iterable[str] = (),
    ) -> list[PortMapping]:
        """Host ports for `bindings` (and an ephemeral one for each port in
        `publish_all_exposed` that has no binding: `docker run -P`). All or nothing."""
        requests: list[tuple[int, str, str, int, int]] = []  # cport, proto, ip, lo, hi
        wanted: dict[str, Sequence[Mapping[str, str]]] = {k: v for k, v in bindings.items() if v}
        for key in publish_all_exposed:
            if not wanted.get(key):
                wanted[key] = [{"HostIp": "", "HostPort": ""}]
        for key, items in wanted.items():
            cport, proto = split_port_key(key)
            for item in items:
                requests.append((cport, proto, *self._request(item)))

        taken = set(self._taken)
        chosen: dict[int, int] = {}

        # Fixed ports first, then ranges, then any port: a pick cannot steal a port that a
        # later request asks for by number.
        def rank(i: int) -> int:
            lo, hi = requests[i][3:]
            return 2 if lo == 0 else int(lo != hi)

        order = sorted(range(len(requests)), key=rank)
        last = dict(self._last)
        for i in order:
            _, proto, ip, lo, hi = requests[i]
            if lo == 0:
                port = self._ephemeral(ip, proto, taken, last)
            elif lo == hi:
                if _clashes((ip, lo, proto), taken):
                    raise _already_allocated(ip, lo)
                port = lo
            else:
                port = next(
                    (p for p in range(lo, hi + 1) if not _clashes((ip, p, proto), taken)), 0
                )
                if not port:
                    raise _already_allocated(ip, f"{lo}-{hi}")
            taken.add((ip, port, proto))
            chosen[i] = port
        self._taken = taken
        self._last = last
        return [
            PortMapping(ip, chosen[i], cport, proto)
            for i, (cport, proto, ip, _, _) in enumerate(requests)
        ]

    @staticmethod
    def _request(item: Mapping[str, str]) -> tuple[str, int, int]:
        raw_ip = item.get("HostIp") or ""
        ip = raw_ip[1:-1] if raw_ip.startswith("[") and raw_ip.endswith("]") else raw_ip
        if not ip:
            ip = "0.0.0.0"
        if not valid_ip(ip):
            raise PortError(f"invalid IP address: {raw_ip}")
        ip = str(ipaddress.ip_address(ip))
        host_port = item.get("HostPort") or ""
        if not host_port:
            return ip, 0, 0
        try:
            lo, hi = port_range(host_port)
        except ValueError:
            raise PortError(f"invalid hostPort: {host_port}") from None
        return ip, lo, hi

    def _ephemeral(self, ip: str, proto: str, taken: set[Key], last: dict[str, int]) -> int:
        size = self.end - self.start + 1
        first = last.get(proto, self.end) + 1
        for n in range(size):
            port = self.start + (first - self.start + n) % size
            if not _clashes((ip, port, proto), taken):
                last[proto] = port
                return port
        raise PortError("all ports are allocated")


# -- holding a port -------------------------------------------------------------------


def reserve(mapping: PortMapping) -> socket.socket:
    """Bind (no listen) a socket on the mapping's host address in this network namespace.

    The caller keeps the socket open as long as the port is published."""
    ip = mapping.host_ip or "0.0.0.0"
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    if mapping.proto == "udp":
        kind, proto = socket.SOCK_DGRAM, socket.IPPROTO_UDP
    elif mapping.proto == "sctp":
        kind, proto = socket.SOCK_STREAM, socket.IPPROTO_SCTP
    else:
        kind, proto = socket.SOCK_STREAM, socket.IPPROTO_TCP
    try:
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise PortError(
            f"Bind for {mapping.host_address()} failed: {mapping.proto}: {e.strerror}"
        ) from e
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((ip, mapping.host_port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise _already_allocated(ip, mapping.host_port) from e
        raise PortError(f"Bind for {mapping.host_address()} failed: {e.strerror}") from e
    return sock


# -- API views ------------------------------------------------------------------------


def _key(port: int, proto: str) -> str:
    return f"{port}/{proto}"


def ports_for_inspect(
    exposed: Iterable[str], mappings: Iterable[PortMapping]
) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports: every exposed or published port; None when not published.
    Keys in Go's JSON order (sorted as strings)."""
    ports: dict[str, list[dict[str, str]] | None] = {}
    for key in exposed:
        ports.setdefault(_key(*split_port_key(key)), None)
    for m in mappings:
        entry = ports.get(_key(m.container_port, m.proto)) or []
        entry.append({"HostIp": m.host_ip, "HostPort": str(m.host_port)})
        ports[_key(m.container_port, m.proto)] = entry
    return {k: ports[k] for k in sorted(ports)}


def ports_for_list(
    mappings: Iterable[PortMapping], exposed: Iterable[str] = ()
) -> list[dict[str, object]]:
    """The `Ports` of a container in `GET /containers/json`: one entry per published
    mapping, one without IP/PublicPort per exposed port left unpublished."""
    entries: list[tuple[int, str, dict[str, object]]] = []
    seen: set[tuple[int, str]] = set()
    for m in mappings:
        seen.add((m.container_port, m.proto))
        entry: dict[str, object] = {"IP": m.host_ip, "PrivatePort": m.container_port}
        entry.update(PublicPort=m.host_port, Type=m.proto)
        entries.append((m.container_port, m.proto, entry))
    for key in exposed:
        port, proto = split_port_key(key)
        if (port, proto) not in seen:
            seen.add((port, proto))
            entries.append((port, proto, {"PrivatePort": port, "Type": proto}))
    entries.sort(key=lambda e: (e[0], e[1]))
    return [entry for _, _, entry in entries]
