"""The nftables rules of bridge networks and published ports.

`ruleset(bridges, ports)` is pure: it returns one nft script that replaces orchestr's
table as a whole (`table inet orchestr {}`, `delete table inet orchestr`, then the full
table), so `apply(script)` changes everything in one atomic transaction, with one `nft`
process. orchestr owns that table alone and never touches anybody else's rules. One
`inet` table serves IPv4 and IPv6 (nat in the inet family needs Linux >= 5.2).

The table, chain by chain:

- `prerouting` (nat, priority dstnat) and `output` (nat, priority -100): traffic to one
  of the node's own addresses (`fib daddr type local`) jumps to `published`, where each
  published port is a DNAT rule to container_ip:container_port, limited to
  `ip daddr HOST_IP` when the port was published on one address. Prerouting catches
  traffic arriving from outside and from containers; output catches what the node sends
  itself, 127.0.0.1 included. No userland proxy is involved. A port a service publishes
  (Swarm's ingress mode) is one rule there too, to one of its running tasks picked per
  new connection (`numgen random mod N map {…} : TARGET_PORT`).
- `services` (jumped to first from prerouting): each service's virtual IP (an address
  of its network, held on the bridge so the node answers ARP for it) is DNATed to one of
  its running tasks, picked per new connection by `numgen random mod N map {…}` —
  kernel load balancing without IPVS, which this kernel lacks. The answer goes back
  through the node by the hairpin masquerade below, so the client sees the virtual IP.
  A service with no running task has no rule: the node itself refuses the connection.
- `postrouting` (nat, priority srcnat), per bridge:
  - loopback: `ip saddr 127.0.0.0/8 oifname BRIDGE masquerade`. A connection to
    127.0.0.1:PORT, once DNATed, leaves through the bridge with source 127.0.0.1, which
    the kernel drops as a martian unless `net.ipv4.conf.BRIDGE.route_localnet=1`. Whoever
    creates the bridge must set that sysctl; the masquerade then gives the packet the
    bridge's address so the container can answer. (IPv6 has no such knob: ::1 stays
    local.)
  - hairpin: `ct status dnat ip saddr SUBNET oifname BRIDGE masquerade`. A container
    reaching a published port of its own bridge is DNATed straight back out that
    bridge; without br_netfilter (absent on some kernels) the answer would go from
    container to container over the bridge, bypassing conntrack, and never be un-NATed.
    Masquerading makes the answer come back through the node. One case stays out of
    reach without br_netfilter: a container reaching *itself* through a published port
    (after DNAT the packet's source is its destination, and the kernel drops such a
    routed packet before the forward hook).
  - outbound: `ip saddr SUBNET oifname != BRIDGE masquerade` when the network has
    masquerade on and is not internal.
- `forward` (filter, priority filter, policy accept): established/related traffic passes;
  an `internal` bridge forwards nothing in or out; traffic routed back out the bridge it
  came from (hairpin) passes; DNATed traffic (a published port, reached through a node
  address) passes whichever bridge it came from; anything else from one orchestr bridge
  to another is dropped (isolation). Traffic between containers of one bridge is bridged,
  not routed, and never reaches this chain.

Ports published on an internal network are left out, as Docker does. This table accepts
what it does not drop, but a drop in another table (say an iptables FORWARD policy of
DROP) still applies: nftables verdicts of different tables do not override each other.
The node must forward (net.ipv4.ip_forward=1) for any of this to work.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.network.base import NetworkError

__all__ = [
    "BridgeRules",
    "IngressRule",
    "NftError",
    "PortRule",
    "VipRule",
    "apply",
    "check",
    "remove",
    "ruleset",
]

PROTOS = ("tcp", "udp", "sctp")
_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,30}$")
NFT_MISSING = "nftables (the nft command) is needed for bridge networks"


class NftError(NetworkError):
    """nft refused a script, is missing, or a rule cannot be written (message says why)."""


@dataclass(frozen=True)
class BridgeRules:
    """A bridge network as the firewall sees it."""

    name: str  # the bridge's interface name
    subnets: tuple[str, ...]  # IPv4 and/or IPv6 networks, "10.231.1.0/24"
    masquerade: bool = True
    internal: bool = False


@dataclass(frozen=True)
class PortRule:
    """One published port: host_ip:host_port/proto → container_ip:container_port."""

    host_ip: str | None  # None, "0.0.0.0" or "::": every node address of that family
    host_port: int
    proto: str
    container_ip: str
    container_port: int
    bridge: str


@dataclass(frozen=True)
class VipRule:
    """A service's virtual IP on a bridge network and the task addresses behind it."""

    vip: str  # an IPv4 address of the network, held on its bridge
    backends: tuple[str, ...]  # the addresses of its running (healthy) tasks


@dataclass(frozen=True)
class IngressRule:
    """A port a service publishes on the node (Swarm's ingress mode), balanced over the
    addresses of its running tasks."""

    port: int
    proto: str
    target_port: int
    backends: tuple[str, ...]  # IPv4 addresses


def _ingress(rule: IngressRule) -> list[str]:
    """Each new connection to the port goes to a task picked at random; no backends, no
    rule (the node's own port answers: connection refused)."""
    if rule.proto not in PROTOS:
        raise NftError(f"invalid proto: {rule.proto}")
    try:
        backends = [ipaddress.IPv4Address(b) for b in rule.backends]
    except ValueError as e:
        raise NftError(f"port {rule.port}/{rule.proto}: {e}") from None
    match = f"meta nfproto ipv4 {rule.proto} dport {_port(rule.port)}"
    return _balanced(match, backends, _port(rule.target_port))


def _vip(rule: VipRule) -> list[str]:
    """Kernel load balancing: each new connection (conntrack keeps it there) to a task
    picked at random; no backends, no rule (the node answers: connection refused)."""
    try:
        vip = ipaddress.IPv4Address(rule.vip)
        backends = [ipaddress.IPv4Address(b) for b in rule.backends]
    except ValueError as e:
        raise NftError(f"virtual IP {rule.vip}: {e}") from None
    return _balanced(f"ip daddr {vip}", backends)


def _balanced(match: str, backends: list[ipaddress.IPv4Address], port: int = 0) -> list[str]:
    """The DNAT rule for `match` over `backends` (none without backends)."""
    if not backends:
        return []
    return [f"{match} dnat ip to {_pick(backends, port)}"]


def _pick(backends: list[ipaddress.IPv4Address], port: int) -> str:
    if len(backends) == 1:
        return f"{backends[0]}:{port}" if port else str(backends[0])
    pairs = ", ".join(f"{i} : {b}" for i, b in enumerate(backends))
    chosen = f"numgen random mod {len(backends)} map {{ {pairs} }}"
    return f"{chosen} : {port}" if port else chosen


def _ifname(name: str) -> str:
    if not _IFNAME.match(name):
        raise NftError(f"invalid interface name for a bridge: {name!r}")
    return f'"{name}"'


def _port(port: int) -> int:
    if not 0 < port <= 65535:
        raise NftError(f"invalid port: {port}")
    return port


def _published(rule: PortRule) -> str:
    if rule.proto not in PROTOS:
        raise NftError(f"invalid proto: {rule.proto}")
    try:
        target = ipaddress.ip_address(rule.container_ip)
        host = ipaddress.ip_address(rule.host_ip) if rule.host_ip else None
    except ValueError as e:
        raise NftError(f"port {rule.host_port}/{rule.proto}: {e}") from None
    fam = "ip" if target.version == 4 else "ip6"
    if host is not None and host.version != target.version:
        raise NftError(
            f"cannot publish {rule.host_ip} port {rule.host_port}/{rule.proto} "
            f"to {rule.container_ip}: the addresses are of different IP versions"
        )
    if host is None or host.is_unspecified:
        match = f"meta nfproto ipv{target.version}"
    else:
        match = f"{fam} daddr {host}"
    to = f"{target}" if target.version == 4 else f"[{target}]"
    return (
        f"{match} {rule.proto} dport {_port(rule.host_port)} "
        f"dnat {fam} to {to}:{_port(rule.container_port)}"
    )


def _networks(bridge: BridgeRules) -> list[tuple[str, str]]:
    out = []
    for subnet in bridge.subnets:
        try:
            net = ipaddress.ip_network(subnet, strict=False)
        except ValueError as e:
            raise NftError(f"bridge {bridge.name}: {e}") from None
        out.append(("ip" if net.version == 4 else "ip6", str(net)))
    return out


def ruleset(
    bridges: Sequence[BridgeRules],
    ports: Iterable[PortRule],
    vips: Iterable[VipRule] = (),
    ingress: Iterable[IngressRule] = (),
    *,
    table: str = "orchestr",
) -> str:
    """The nft script that makes orchestr's table exactly this (see module docstring)."""
    if not _TABLE.match(table):
        raise NftError(f"invalid nftables table name: {table!r}")
    by_name = {b.name: b for b in bridges}
    if len(by_name) != len(bridges):
        raise NftError("a bridge is listed twice")

    published: list[str] = [line for rule in ingress for line in _ingress(rule)]
    for rule in ports:
        bridge = by_name.get(rule.bridge)
        if bridge is None:
            raise NftError(f"port {rule.host_port}/{rule.proto}: unknown bridge {rule.bridge}")
        if not bridge.internal:
            line = _published(rule)
            if line not in published:
                published.append(line)

    postrouting: list[str] = []
    forward = ["ct state established,related accept"]
    for b in bridges:
        name = _ifname(b.name)
        nets = _networks(b)
        if b.internal:
            forward.append(f"iifname {name} oifname != {name} drop")
            forward.append(f"oifname {name} iifname != {name} drop")
            continue
        if any(fam == "ip" for fam, _ in nets):
            postrouting.append(f"oifname {name} ip saddr 127.0.0.0/8 masquerade")
        for fam, net in nets:
            postrouting.append(f"oifname {name} {fam} saddr {net} ct status dnat masquerade")
        if b.masquerade:
            for fam, net in nets:
                postrouting.append(f"oifname != {name} {fam} saddr {net} masquerade")

    names = [_ifname(b.name) for b in bridges]
    if len(names) > 1:
        forward.extend(f"iifname {n} oifname {n} accept" for n in names)
        forward.append("ct status dnat accept")
        for n in names:
            others = ", ".join(o for o in names if o != n)
            forward.append(f"iifname {n} oifname {{ {others} }} drop")

    def chain(name: str, hook: str | None, rules: list[str]) -> list[str]:
        lines = [f"\tchain {name} {{"]
        if hook:
            lines.append(f"\t\t{hook}; policy accept;")
        lines.extend(f"\t\t{r}" for r in rules)
        lines.append("\t}")
        return lines

    balanced = [line for v in vips for line in _vip(v)]
    jump = ["fib daddr type local jump published"]
    return "\n".join(
        [
            f"table inet {table} {{}}",
            f"delete table inet {table}",
            f"table inet {table} {{",
            *chain("published", None, published),
            *chain("services", None, balanced),
            *chain(
                "prerouting",
                "type nat hook prerouting priority dstnat",
                ["jump services", *jump],
            ),
            *chain("output", "type nat hook output priority -100", jump),
            *chain("postrouting", "type nat hook postrouting priority srcnat", postrouting),
            *chain("forward", "type filter hook forward priority filter", forward),
            "}",
            "",
        ]
    )


def _nft(args: Sequence[str], script: str, netns: str | None) -> None:
    cmd = ["nft", *args, "-f", "-"]
    if netns is not None:
        cmd = ["nsenter", f"--net={netns}", *cmd]
    try:
        done = subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NftError(NFT_MISSING) from None
    if done.returncode == 127 and netns is not None:  # nsenter found no nft
        raise NftError(NFT_MISSING)
    if done.returncode != 0:
        raise NftError(f"nft refused orchestr's rules: {done.stderr.strip()}")


def apply(script: str, *, netns: str | None = None) -> None:
    """Run `nft -f -` on `script`: in this network namespace, or in the one at `netns`
    (a path such as /run/netns/NAME, joined with nsenter)."""
    _nft([], script, netns)


def check(script: str, *, netns: str | None = None) -> None:
    """`nft -c -f -`: would the kernel take `script`? Changes nothing (needs CAP_NET_ADMIN)."""
    _nft(["-c"], script, netns)


def remove(table: str = "orchestr", *, netns: str | None = None) -> None:
    """Delete orchestr's table if it is there (idempotent)."""
    if not _TABLE.match(table):
        raise NftError(f"invalid nftables table name: {table!r}")
    apply(f"table inet {table} {{}}\ndelete table inet {table}\n", netns=netns)
