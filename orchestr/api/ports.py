"""Port specs as the docker CLI reads them: `docker run -p` values and port keys.

Shared by the client (orchestr run -p) and the daemon's allocator
(agent.network.ports): `parse_publish(specs)` reads `-p` values the way the docker CLI
28 does (go-connections' ParsePortSpecs behind the CLI's long-form conversion) into the
two Engine API maps, ExposedPorts `{"80/tcp": {}}` and PortBindings
`{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`. A binding's HostPort is a port,
empty (any free port) or a range `8000-8010` (the first free port in it). Errors use
the CLI's wording, e.g. `invalid containerPort: abc`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

ExposedPorts = dict[str, dict[str, object]]
PortBindings = dict[str, list[dict[str, str]]]

PROTOS = ("tcp", "udp", "sctp")


class PortError(ValueError):
    """A port spec that does not parse, or a host port that cannot be had."""


# -- parsing ------------------------------------------------------------------------


def parse_publish(specs: Sequence[str]) -> tuple[ExposedPorts, PortBindings]:
    """`docker run -p` values → (ExposedPorts, PortBindings), as the docker CLI makes them."""
    exposed: ExposedPorts = {}
    bindings: PortBindings = {}
    for spec in _standard_notation(specs):
        for port, binding in _parse_spec(spec):
            exposed.setdefault(port, {})
            bindings.setdefault(port, []).append(binding)
    return exposed, bindings


def _standard_notation(specs: Sequence[str]) -> list[str]:
    """The long form `published=8080,target=80,protocol=udp` as `8080:80/udp`."""
    out: list[str] = []
    for spec in specs:
        if "=" not in spec:
            out.append(spec)
            continue
        params = {"protocol": "tcp"}
        for param in spec.split(","):
            key, sep, value = param.partition("=")
            if not sep or not key:
                raise PortError(
                    f"invalid publish opts format (should be name=value but got '{param}')"
                )
            params[key] = value
        out.append(f"{params.get('published', '')}:{params.get('target', '')}/{params['protocol']}")
    return out


def _split_parts(raw: str) -> tuple[str, str, str]:
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def _split_proto(raw: str) -> tuple[str, str]:
    parts = raw.split("/")
    if not raw or not parts[0]:
        return "", ""
    if len(parts) == 1 or not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def _uint16(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise ValueError(text)
    return int(text)


def port_range(text: str) -> tuple[int, int]:
    """go-connections' ParsePortRange: `80` or `80-90` (only the first two parts count)."""
    if "-" not in text:
        port = _uint16(text)
        return port, port
    parts = text.split("-")
    start, end = _uint16(parts[0]), _uint16(parts[1])
    if end < start:
        raise ValueError(text)
    return start, end


def _unbracket(ip: str) -> str:
    """Go's net.SplitHostPort(ip + ":") on a bracketed address: its host, or its error."""
    hostport = ip + ":"
    end = hostport.find("]")
    why = ""
    if end < 0:
        why = "missing ']' in address"
    elif end + 1 != len(hostport) - 1:
        colon = hostport[end + 1] == ":"
        why = "too many colons in address" if colon else "missing port in address"
    elif "[" in hostport[1:]:
        why = "unexpected '[' in address"
    elif "]" in hostport[end + 1 :]:
        why = "unexpected ']' in address"
    if why:
        raise PortError(f"invalid IP address {ip}: address {hostport}: {why}")
    return hostport[1:end]


def valid_ip(ip: str) -> bool:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return "%" not in ip


def _parse_spec(raw: str) -> list[tuple[str, dict[str, str]]]:
    ip, host_port, container_port = _split_parts(raw)
    proto, container_port = _split_proto(container_port)
    if ip.startswith("["):
        ip = _unbracket(ip)
    if ip and not valid_ip(ip):
        raise PortError(f"invalid IP address: {ip}")
    if not container_port:
        raise PortError(f"no port specified: {raw}<empty>")
    try:
        start, end = port_range(container_port)
    except ValueError:
        raise PortError(f"invalid containerPort: {container_port}") from None
    host_start = host_end = 0
    if host_port:
        try:
            host_start, host_end = port_range(host_port)
        except ValueError:
            raise PortError(f"invalid hostPort: {host_port}") from None
        if end - start != host_end - host_start and end != start:
            raise PortError(
                "invalid ranges specified for container and host Ports: "
                f"{container_port} and {host_port}"
            )
    if proto.lower() not in PROTOS:
        raise PortError(f"invalid proto: {proto}")
    proto = proto.lower()
    out: list[tuple[str, dict[str, str]]] = []
    for i in range(end - start + 1):
        host = str(host_start + i) if host_port else ""
        if start == end and host_start != host_end:
            host = f"{host}-{host_end}"
        out.append((f"{start + i}/{proto}", {"HostIp": ip, "HostPort": host}))
    return out


def split_port_key(key: str) -> tuple[int, str]:
    """`"80/tcp"` (or `"80"`, tcp) → (80, "tcp")."""
    number, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    try:
        port = _uint16(number)
    except ValueError:
        raise PortError(f"invalid containerPort: {number}") from None
    if proto not in PROTOS:
        raise PortError(f"invalid proto: {proto}")
    return port, proto
