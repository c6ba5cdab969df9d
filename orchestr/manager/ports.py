"""A service's published ports (EndpointSpec.Ports), checked and allocated (pure).

As Swarm's: a port published in `ingress` mode (the default) is the cluster's — open on
every node, balanced over the service's tasks — so two services cannot publish the same
one; without a PublishedPort, one is given from 30000-32767 and kept across updates. A
port in `host` mode is opened on the node where a task runs, straight to that task, and
is the node's business (the scheduler's), not the cluster's.

`allocate` returns the Engine API's `Endpoint.Ports`: the spec's ports with their
published port filled in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from orchestr.api.swarm import Service

DYNAMIC = range(30000, 32768)  # swarmkit's dynamic port range
PROTOCOLS = ("tcp", "udp")
MODES = ("ingress", "host")

Port = dict[str, Any]


def check(endpoint: Any) -> list[Port]:
    """EndpointSpec.Ports, each with Protocol and PublishMode filled in; ValueError
    names the first that is wrong."""
    if endpoint is None:
        return []
    if not isinstance(endpoint, dict):
        raise ValueError("EndpointSpec: an object")
    ports = endpoint.get("Ports") or []
    if not isinstance(ports, list):
        raise ValueError("EndpointSpec.Ports: a list")
    out: list[Port] = []
    seen: dict[tuple[int, str], int] = {}
    for i, port in enumerate(ports):
        where = f"EndpointSpec.Ports[{i}]"
        if not isinstance(port, dict):
            raise ValueError(f"{where}: an object")
        protocol = str(port.get("Protocol") or "tcp").lower()
        if protocol == "sctp":
            raise ValueError(f"{where}.Protocol: sctp is not supported")
        if protocol not in PROTOCOLS:
            raise ValueError(f"{where}.Protocol: tcp or udp, not {protocol!r}")
        mode = str(port.get("PublishMode") or "ingress")
        if mode not in MODES:
            raise ValueError(f"{where}.PublishMode: ingress or host, not {mode!r}")
        target = port.get("TargetPort")
        if not _is_port(target) or target == 0:
            raise ValueError(f"{where}.TargetPort: a port (1-65535) is required")
        published = port.get("PublishedPort") or 0
        if not _is_port(published):
            raise ValueError(f"{where}.PublishedPort: a port (1-65535), or 0 to be given one")
        if published:
            if (published, protocol) in seen:
                raise ValueError(
                    f"{where}: port {published}/{protocol} is published twice"
                    f" (also by EndpointSpec.Ports[{seen[(published, protocol)]}])"
                )
            seen[(published, protocol)] = i
        out.append(
            {
                "Protocol": protocol,
                "TargetPort": target,
                "PublishedPort": published,
                "PublishMode": mode,
            }
        )
    if str(endpoint.get("Mode") or "vip") == "dnsrr" and any(
        p["PublishMode"] == "ingress" for p in out
    ):
        raise ValueError(
            "EndpointSpec: a port published in ingress mode cannot be used with endpoint"
            " mode dnsrr (publish it in host mode)"
        )
    return out


def allocate(
    service: Service,
    others: Iterable[Service],
    containers: Collection[tuple[int, str]] = (),
) -> list[Port]:
    """`service`'s Endpoint.Ports: its spec's ports, each ingress one with a published
    port that no other service holds, nor a container of the node (`containers`): one
    given from DYNAMIC when the spec has none, the one it had before when it had one.
    ValueError names a clash."""
    ports = check(service.spec.get("EndpointSpec"))
    for port in ports:
        key = (port["PublishedPort"], port["Protocol"])
        if port["PublishMode"] == "ingress" and key in containers:
            raise ValueError(
                f"port '{key[0]}/{key[1]}' is already published by a container on this node"
            )
    taken: dict[tuple[int, str], Service] = {}
    for other in others:
        if other.id == service.id:
            continue
        for port in other.ports:
            if port.get("PublishMode") == "ingress":
                taken[(int(port["PublishedPort"]), str(port["Protocol"]))] = other
    before = {
        (int(p["TargetPort"]), str(p["Protocol"])): int(p["PublishedPort"])
        for p in service.ports
        if p.get("PublishMode") == "ingress"
    }
    for port in ports:
        if port["PublishMode"] != "ingress":
            continue
        key = (int(port["PublishedPort"]), port["Protocol"])
        if port["PublishedPort"]:
            holder = taken.get(key)
            if holder is not None:
                raise ValueError(
                    f"port '{port['PublishedPort']}' is already in use by service"
                    f" '{holder.name}' ({holder.id}) as an ingress port"
                )
        else:
            kept = before.get((port["TargetPort"], port["Protocol"]))
            mine = {(int(p["PublishedPort"]), p["Protocol"]) for p in ports}
            mine |= set(containers)
            if kept and (kept, port["Protocol"]) not in taken.keys() | mine:
                port["PublishedPort"] = kept
            else:
                port["PublishedPort"] = _free(port["Protocol"], taken, mine)
        taken[(int(port["PublishedPort"]), port["Protocol"])] = service
    return ports


def _free(protocol: str, taken: dict[tuple[int, str], Service], mine: set[tuple[int, str]]) -> int:
    for candidate in DYNAMIC:
        key = (candidate, protocol)
        if key not in taken and key not in mine:
            return candidate
    raise ValueError(f"no free port left in {DYNAMIC.start}-{DYNAMIC.stop - 1}/{protocol}")


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535
