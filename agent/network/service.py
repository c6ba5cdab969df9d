"""The node's networks: records, IPAM, bridges, container endpoints, DNS and ports.

`NetworkService` owns every network of a node (Docker's predefined `bridge`,
`host` and `none`, and user-defined bridge networks) and wires containers to
them. Its pieces, each in its own module: `ipam` (subnets and addresses),
`links` and `netns` (the kernel objects, through netlink), `dns` (the embedded
resolver at 127.0.0.11), `ports` (published ports) and `nft` (the DNAT,
masquerade and isolation rules, replaced atomically as one ruleset).

A container's network namespace is a file made before the container starts
(`<exec-root>/netns/<id>`), wired completely (veth per network, addresses,
routes, DNS sockets, port reservations) and then joined by the runtime; it
goes when the container stops, and the kernel deletes its veths with it.
`container:<name>` joins another running container's file (the container service
resolves it; nothing is made here).

Records: one JSON file per network under `<data-root>/networks/`. What a
container holds on its networks (address, aliases, MAC) is kept in the
container's record (`Record.networks`, Docker's EndpointSettings); IPAM state
is rebuilt from both at start, so nothing is kept twice. Addresses are taken
when a container starts and given back when it stops, as Docker does; a
static `--ip` is kept across restarts.

Locking: one lock around the state; kernel work for one container happens
under it too (it is a few milliseconds), so attach/detach never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.network import links, netns, nft
from agent.network.base import Endpoint, NetworkError
from agent.network.dns import (
    DnsServer,
    DnsTable,
    container_resolv_conf,
    upstreams_from_resolv_conf,
)
from agent.network.ipam import DEFAULT_POOLS, Ipam, Pool
from agent.network.ports import PortAllocator, PortMapping, reserve

log = logging.getLogger("orchestr.network")

DEFAULT_BRIDGE = "orchestr0"  # Docker's docker0
PREDEFINED = ("bridge", "host", "none")
DEFAULT_MTU = 1500
BRIDGE_OPTION = "com.docker.network.bridge.name"
MTU_OPTION = "com.docker.network.driver.mtu"
MASQ_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
KNOWN_OPTIONS = (BRIDGE_OPTION, MTU_OPTION, MASQ_OPTION, ICC_OPTION)


class NotFound(LookupError):
    pass


class Conflict(Exception):
    pass


@dataclass
class Network:
    """One network's record (what `docker network inspect` shows, and how it is made)."""

    id: str
    name: str
    driver: str  # bridge | host | null
    created: str
    subnet: str | None = None
    gateway: str | None = None
    ip_range: str | None = None
    aux_addresses: dict[str, str] = field(default_factory=dict)
    subnet6: str | None = None
    gateway6: str | None = None
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    bridge: str = ""  # the Linux bridge's name
    mtu: int = DEFAULT_MTU
    masquerade: bool = True
    user_subnet: bool = False  # the subnet was asked for (so --ip may be used on it)

    @property
    def predefined(self) -> bool:
        return self.name in PREDEFINED

    @property
    def has_dns(self) -> bool:
        """User-defined bridge networks get the embedded DNS; the default one does not."""
        return self.driver == "bridge" and self.name != "bridge"


@dataclass
class Attachment:
    """A running container's place on the node's networks."""

    netns: str  # its namespace file
    names: dict[str, list[str]]  # network id -> the names it answers to there
    ips: dict[str, str] = field(default_factory=dict)  # network id -> its IPv4 address
    ifnames: dict[str, str] = field(default_factory=dict)  # network id -> eth0, eth1, ...
    scopes: list[str] = field(default_factory=list)  # the networks its DNS answers from
    dns: bool = False  # the embedded DNS listens in its namespace
    ports: list[PortMapping] = field(default_factory=list)
    holders: list[socket.socket] = field(default_factory=list)  # port reservations


@dataclass
class PublishedService:
    """The ports a service publishes on the node (Swarm's ingress mode), each balanced
    over its running tasks' containers."""

    ports: tuple[tuple[int, str, int], ...]  # (published port, protocol, target port)
    backends: tuple[str, ...]  # container IDs
    mappings: list[PortMapping] = field(default_factory=list)  # held in the allocator
    holders: list[socket.socket] = field(default_factory=list)


@dataclass(frozen=True)
class ServiceEndpoint:
    """A service's names on one network: its virtual IP (endpoint mode vip), the
    addresses of its running tasks behind it, and the DNS records that say so."""

    names: tuple[str, ...]  # the service's name and aliases
    mode: str  # vip | dnsrr
    backends: tuple[str, ...]
    vip: str | None = None
    dns_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """The daemon's networking flags (dockerd's names)."""

    pools: tuple[Pool, ...] = DEFAULT_POOLS
    bridge: bool = True  # --bridge none: no default bridge network
    ip_masq: bool = True
    ip_forward: bool = True
    dns: tuple[str, ...] = ()  # upstream resolvers; default: the node's resolv.conf
    mtu: int = DEFAULT_MTU


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000000Z"


def _new_id() -> str:
    return secrets.token_hex(32)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


class NetworkService:
    def __init__(self, data_root: str, exec_root: str, config: Config = Config()) -> None:
        self.root = os.path.join(data_root, "networks")
        self.netns_dir = os.path.join(exec_root, "netns")
        self.config = config
        self.lock = threading.RLock()
        self.networks: dict[str, Network] = {}
        self.ipam = Ipam(config.pools)
        self.dns_table = DnsTable()
        self.dns: DnsServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ports = PortAllocator()
        self.attached: dict[str, Attachment] = {}  # container id -> attachment
        # (network id, service key) -> its endpoint: set by the node agent's worker
        self.services: dict[tuple[str, str], ServiceEndpoint] = {}
        # service key -> the ports it publishes on the node: set by the worker too
        self.published: dict[str, PublishedService] = {}
        self._ruleset: str | None = None  # the nft script last applied
        self._kernel = False  # netlink loaded and the netns directory prepared
        self.resolv_conf = _read("/etc/resolv.conf")

    # -- start and stop of the daemon ------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Load the records, make the predefined networks and every bridge, remove
        stale links of ours; the embedded DNS serves on `loop`."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.makedirs(self.netns_dir, mode=0o700, exist_ok=True)
        self.loop = loop
        if loop is not None:
            self.dns = DnsServer(self.dns_table, self.upstreams())
        for name in sorted(os.listdir(self.root)):
            if name.endswith(".json"):
                try:
                    with open(os.path.join(self.root, name)) as f:
                        network = Network(**json.load(f))
                except (OSError, ValueError, TypeError) as e:
                    log.warning("network record %s unreadable, skipped: %s", name, e)
                    continue
                self.networks[network.id] = network
        self._predefined()
        if not any(n.driver == "bridge" for n in self.networks.values()):
            return  # no kernel work at all (--bridge none and no user networks)
        self._kernel_ready()
        wanted = set()
        for network in list(self.networks.values()):
            if network.driver != "bridge":
                continue
            try:
                self._pool(network)
                self._bridge_up(network)
                wanted.add(network.bridge)
            except NetworkError as e:
                log.warning("network %s: %s", network.name, e)
        for name, _alias in links.owned_links("orchestr"):
            if name not in wanted and not name.startswith("veth"):
                with contextlib.suppress(NetworkError):
                    links.delete_link(name)
        if any(n.driver == "bridge" for n in self.networks.values()) and self.config.ip_forward:
            with contextlib.suppress(NetworkError):
                links.set_sysctl("net.ipv4.ip_forward", 1)
        self._apply_rules()

    def _kernel_ready(self) -> None:
        """Before the first bridge: netlink loaded, the namespace files' directory a
        private mount (containers never see them)."""
        if not self._kernel:
            links.preload()
            netns.prepare_dir(self.netns_dir)
            self._kernel = True

    def upstreams(self) -> list[str]:
        """Where the embedded DNS sends names it does not know: --dns, or the node's
        resolvers (loopback ones too: the daemon forwards from the node)."""
        if self.config.dns:
            return list(self.config.dns)
        return upstreams_from_resolv_conf(self.resolv_conf, loopback=True)

    def stop(self, *, keep_running: bool) -> None:
        """At daemon exit: the DNS sockets go; the kernel state stays for the containers
        that keep running (live restore), else the rules go too."""
        if self.dns is not None and self.loop is not None and self.loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.dns.close(), self.loop).result(5)
        for holder in [
            *(h for a in self.attached.values() for h in a.holders),
            *(h for p in self.published.values() for h in p.holders),
        ]:
            holder.close()
        if self._kernel:
            links.close_all()
            if not keep_running:
                with contextlib.suppress(NetworkError):
                    nft.remove()
                netns.release_dir(self.netns_dir)

    def _predefined(self) -> None:
        have = {n.name for n in self.networks.values()}
        if "none" not in have:
            self._save(Network(_new_id(), "none", "null", _now()))
        if "host" not in have:
            self._save(Network(_new_id(), "host", "host", _now()))
        if self.config.bridge and "bridge" not in have:
            self._save(
                Network(
                    _new_id(),
                    "bridge",
                    "bridge",
                    _now(),
                    bridge=DEFAULT_BRIDGE,
                    mtu=self.config.mtu,
                    masquerade=self.config.ip_masq,
                    options={BRIDGE_OPTION: DEFAULT_BRIDGE},
                )
            )
        if not self.config.bridge:
            for network in list(self.networks.values()):
                if network.name == "bridge":
                    self.networks.pop(network.id)

    def _save(self, network: Network) -> None:
        path = os.path.join(self.root, f"{network.id}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(network), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self.networks[network.id] = network

    def _pool(self, network: Network) -> None:
        """Give the network its subnet in IPAM (the recorded one, or a new one)."""
        if self.ipam.allocation(network.id) is None:
            pool = self.ipam.request_pool(
                network.id,
                subnet=network.subnet,
                ip_range=network.ip_range,
                gateway=network.gateway,
                aux_addresses=network.aux_addresses,
                avoid=self._taken_subnets(network.id),
            )
            network.subnet, network.gateway = str(pool.subnet), str(pool.gateway)
        v6 = network.enable_ipv6 and network.subnet6
        if v6 and self.ipam.allocation(network.id, ipv6=True) is None:
            pool6 = self.ipam.request_pool(
                network.id, subnet=network.subnet6, gateway=network.gateway6, ipv6=True
            )
            network.subnet6, network.gateway6 = str(pool6.subnet), str(pool6.gateway)

    def _taken_subnets(self, network_id: str) -> list[str]:
        return [n.subnet for n in self.networks.values() if n.subnet and n.id != network_id]

    def _bridge_up(self, network: Network) -> None:
        addresses = [f"{network.gateway}/{ipaddress.ip_network(network.subnet or '').prefixlen}"]
        # Services' virtual IPs live on the bridge: the node answers ARP for them.
        addresses += sorted(
            f"{ep.vip}/32"
            for (network_id, _), ep in self.services.items()
            if network_id == network.id and ep.vip
        )
        if network.subnet6 and network.gateway6:
            addresses.append(
                f"{network.gateway6}/{ipaddress.ip_network(network.subnet6).prefixlen}"
            )
        links.ensure_bridge(
            network.bridge, addresses, network.mtu, alias=f"orchestr:{network.id[:12]}"
        )

    # -- networks --------------------------------------------------------------------------

    def get(self, ref: str) -> Network:
        """By full ID, name, or unique ID prefix (Docker's order)."""
        with self.lock:
            if ref in self.networks:
                return self.networks[ref]
            for n in self.networks.values():
                if n.name == ref:
                    return n
            hits = [n for n in self.networks.values() if n.id.startswith(ref)] if ref else []
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise NotFound(f"network {ref} is ambiguous ({len(hits)} matches found)")
            raise NotFound(f"network {ref} not found")

    def all(self) -> list[Network]:
        with self.lock:
            return sorted(self.networks.values(), key=lambda n: n.created)

    def create(
        self,
        name: str,
        *,
        driver: str = "bridge",
        subnet: str | None = None,
        gateway: str | None = None,
        ip_range: str | None = None,
        aux_addresses: Mapping[str, str] | None = None,
        subnet6: str | None = None,
        gateway6: str | None = None,
        enable_ipv6: bool = False,
        internal: bool = False,
        attachable: bool = False,
        labels: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
    ) -> Network:
        if driver != "bridge":
            raise NetworkError(
                f"the {driver} driver is not supported: only bridge networks can be created "
                "(the overlay driver comes with clusters)"
                if driver != "overlay"
                else "overlay networks are not supported yet: they come with clusters"
            )
        opts = dict(options or {})
        unknown = sorted(set(opts) - set(KNOWN_OPTIONS))
        if unknown:
            raise NetworkError(f"network options not supported: {', '.join(unknown)}")
        if not _flag(opts.get(ICC_OPTION), True):
            raise NetworkError(
                f"{ICC_OPTION}=false is not supported: traffic between the containers of "
                "one bridge is bridged, not routed, and this kernel has no br_netfilter"
            )
        with self.lock:
            if any(n.name == name for n in self.networks.values()):
                raise Conflict(f"network with name {name} already exists")
            if name in PREDEFINED:
                raise Conflict(f"{name} is a pre-defined network and cannot be created")
            network = Network(
                _new_id(),
                name,
                "bridge",
                _now(),
                subnet=subnet,
                gateway=gateway,
                ip_range=ip_range,
                aux_addresses=dict(aux_addresses or {}),
                user_subnet=subnet is not None,
                subnet6=subnet6,
                gateway6=gateway6,
                enable_ipv6=enable_ipv6,
                internal=internal,
                attachable=attachable,
                labels=dict(labels or {}),
                options=opts,
                mtu=int(opts.get(MTU_OPTION) or self.config.mtu),
                masquerade=_flag(opts.get(MASQ_OPTION), self.config.ip_masq),
            )
            network.bridge = opts.get(BRIDGE_OPTION) or f"br-{network.id[:12]}"
            if enable_ipv6 and not subnet6:
                raise NetworkError("an IPv6 network needs a subnet: give --ipv6 a --subnet")
            self._pool(network)
            try:
                self._kernel_ready()
                self._bridge_up(network)
                if self.config.ip_forward:
                    links.set_sysctl("net.ipv4.ip_forward", 1)
                self._save(network)
                self._apply_rules()
            except BaseException:
                self.ipam.release_pool(network.id)
                self.networks.pop(network.id, None)
                with contextlib.suppress(NetworkError):
                    links.delete_link(network.bridge)
                raise
            return network

    def remove(self, ref: str, users: Callable[[str], list[str]]) -> Network:
        """Remove a user-defined network that no container is attached to (`users` names
        the containers that hold it)."""
        with self.lock:
            network = self.get(ref)
            if network.predefined:
                raise Conflict(f"{network.name} is a pre-defined network and cannot be removed")
            held = users(network.id)
            if held:
                raise Conflict(
                    f"error while removing network: network {network.name} id {network.id} "
                    f"has active endpoints ({', '.join(held)})"
                )
            with contextlib.suppress(NetworkError):
                links.delete_link(network.bridge)
            self.ipam.release_pool(network.id)
            self.dns_table.remove_network(network.id)
            for gone in [k for k in self.services if k[0] == network.id]:
                del self.services[gone]
            self.networks.pop(network.id, None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.root, f"{network.id}.json"))
            self._apply_rules()
            return network

    # -- services' endpoints ---------------------------------------------------------------

    def set_service(
        self,
        network_ref: str,
        key: str,
        names: Sequence[str],
        mode: str,
        backends: Sequence[str],
    ) -> str | None:
        """A service's names on a network, pointing (mode vip) to its virtual IP, made on
        first use and balanced over `backends` in the kernel, or (dnsrr) to the backends
        themselves; `tasks.<name>` always gives the backends. Returns the virtual IP."""
        if mode not in ("vip", "dnsrr"):
            raise NetworkError(f"endpoint mode {mode!r}: vip or dnsrr")
        with self.lock:
            network = self.get(network_ref)
            if network.driver != "bridge" or not network.subnet:
                raise NetworkError(f"network {network.name}: services need a bridge network")
            old = self.services.get((network.id, key))
            vip = old.vip if old is not None else None
            if mode == "vip" and vip is None:
                vip = str(self.ipam.request_address(network.id))
            elif mode == "dnsrr" and vip is not None:
                self.ipam.release_address(network.id, vip)
                vip = None
            new = ServiceEndpoint(tuple(names), mode, tuple(backends), vip)
            if old is not None and (old.names, old.mode, old.backends, old.vip) == (
                new.names,
                new.mode,
                new.backends,
                new.vip,
            ):
                return vip
            new = self._service_dns(network, key, old, new)
            self.services[(network.id, key)] = new
            if (old.vip if old else None) != vip:
                self._bridge_up(network)
            self._apply_rules()
            return vip

    def drop_service(self, network_id: str, key: str) -> None:
        """The service is gone from the network: its names, rules and virtual IP."""
        with self.lock:
            old = self.services.pop((network_id, key), None)
            if old is None:
                return
            for dns_key in old.dns_keys:
                self.dns_table.remove(network_id, dns_key)
            network = self.networks.get(network_id)
            if old.vip and network is not None:
                with contextlib.suppress(Exception):
                    self.ipam.release_address(network_id, old.vip)
                with contextlib.suppress(NetworkError):
                    self._bridge_up(network)
            self._apply_rules()

    def service_keys(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.services)

    def set_published(
        self, key: str, ports: Sequence[tuple[int, str, int]], backends: Sequence[str]
    ) -> None:
        """The ports (published, protocol, target) a service publishes on the node,
        balanced over the containers `backends` (their address on their first network
        that is not internal). A port another service or a container holds is refused
        (PortError), and the service's earlier ports stay as they were."""
        with self.lock:
            old = self.published.get(key)
            wanted = tuple(ports)
            if old is not None and old.ports == wanted:
                if old.backends != tuple(backends):
                    old.backends = tuple(backends)
                    self._apply_rules()
                return
            # A port it keeps keeps its socket (a udp one could not be bound twice).
            kept = (
                {(m.host_port, m.proto): h for m, h in zip(old.mappings, old.holders, strict=True)}
                if old is not None
                else {}
            )
            if old is not None:
                self.ports.release(old.mappings)
            bindings: dict[str, list[dict[str, str]]] = {}
            for port, proto, target in wanted:
                item = {"HostIp": "", "HostPort": str(port)}
                bindings.setdefault(f"{target}/{proto}", []).append(item)
            made: list[socket.socket] = []
            mappings: list[PortMapping] = []
            try:
                mappings = self.ports.allocate(bindings)
                holders = []
                for m in mappings:
                    holder = kept.get((m.host_port, m.proto))
                    if holder is None:
                        holder = reserve(m)
                        made.append(holder)
                    holders.append(holder)
            except BaseException:
                for h in made:
                    h.close()
                self.ports.release(mappings)
                if old is not None:
                    self.ports.hold(old.mappings)  # it keeps what it had
                raise
            for h in set(kept.values()) - set(holders):
                h.close()
            self.published[key] = PublishedService(wanted, tuple(backends), mappings, holders)
            self._apply_rules()

    def drop_published(self, key: str) -> None:
        with self.lock:
            old = self.published.pop(key, None)
            if old is None:
                return
            self.ports.release(old.mappings)
            for h in old.holders:
                h.close()
            self._apply_rules()

    def service_vips(self, key: str) -> list[tuple[str, str]]:
        """(network id, address/prefix) of a service's virtual IP on each network."""
        with self.lock:
            out = []
            for (network_id, service_key), ep in sorted(self.services.items()):
                network = self.networks.get(network_id)
                if service_key == key and ep.vip and network is not None and network.subnet:
                    prefix = network.subnet.split("/")[1]
                    out.append((network_id, f"{ep.vip}/{prefix}"))
            return out

    def container_ports(self) -> set[tuple[int, str]]:
        """(port, protocol) of every port a container publishes on the node."""
        with self.lock:
            return {(m.host_port, m.proto) for a in self.attached.values() for m in a.ports}

    def published_keys(self) -> list[str]:
        with self.lock:
            return list(self.published)

    def _service_dns(
        self, network: Network, key: str, old: ServiceEndpoint | None, new: ServiceEndpoint
    ) -> ServiceEndpoint:
        for dns_key in old.dns_keys if old else ():
            self.dns_table.remove(network.id, dns_key)
        keys = []
        task_names = [f"tasks.{n}" for n in new.names]
        if new.vip is not None:
            keys.append(f"service:{key}")
            self.dns_table.add(network.id, keys[-1], new.names, new.vip, None)
        for ip in new.backends:
            keys.append(f"service:{key}:{ip}")
            names = task_names if new.vip is not None else [*new.names, *task_names]
            self.dns_table.add(network.id, keys[-1], names, ip, None)
        return ServiceEndpoint(new.names, new.mode, new.backends, new.vip, tuple(keys))

    # -- containers ------------------------------------------------------------------------

    def namespace_path(self, container_id: str) -> str:
        return os.path.join(self.netns_dir, container_id)

    def attach(
        self,
        container_id: str,
        *,
        name: str,
        hostname: str,
        endpoints: dict[str, dict[str, Any]],
        port_bindings: Mapping[str, Any],
        publish_all: Iterable[str],
        dns: Sequence[str] = (),
        extra_hosts: Sequence[str] = (),
    ) -> tuple[Endpoint, list[PortMapping], Callable[[], None]]:
        """Make the container's network namespace and plan its wiring to each network
        of `endpoints` (network name -> Docker EndpointSettings, updated here with the
        addresses given out). Returns what the runtime joins, the published ports, and
        `wire`: the kernel work (veths, addresses, routes, DNS sockets), which the caller
        runs while the container is being created and must finish before it starts
        (`detach` undoes all of it, also when `wire` failed half-way).

        """
        path = self.namespace_path(container_id)
        with self.lock:
            self._kernel_ready()
            self._release(container_id)
            netns.create(path)
            att = Attachment(path, {})
            self.attached[container_id] = att
            try:
                addresses: list[str] = []
                embedded = False
                first_bridge: tuple[Network, str] | None = None
                routed = False
                plan: list[dict[str, Any]] = []
                for net_name, settings in endpoints.items():
                    network = self.get(settings.get("NetworkID") or net_name)
                    if network.driver == "null":
                        continue
                    if network.driver != "bridge":
                        raise NetworkError(
                            f"container cannot be connected to network {network.name} "
                            f"with other networks"
                        )
                    ip = self._address(network, settings)
                    settings.update(self._settings(network, ip, settings))
                    ip6 = self._address6(network, settings)
                    ifname = f"eth{len(att.names)}"
                    cidrs = [f"{ip}/{settings['IPPrefixLen']}"]
                    gateways = [network.gateway or ""]
                    if ip6 is not None:
                        cidrs.append(f"{ip6}/{settings['GlobalIPv6PrefixLen']}")
                        gateways.append(network.gateway6 or "")
                    plan.append(
                        {
                            "bridge": network.bridge,
                            "container_netns": path,
                            "ifname": ifname,
                            "addresses": cidrs,
                            # one default route, via the first network that is not
                            # internal (an internal network gives no way out, as Docker's)
                            "gateways": gateways if not routed and not network.internal else [],
                            "mtu": network.mtu,
                            "mac": settings["MacAddress"],
                            "alias": f"orchestr:{container_id[:12]}",
                        }
                    )
                    names = [name.lstrip("/"), container_id[:12], *(settings.get("Aliases") or [])]
                    att.names[network.id] = names
                    att.ips[network.id] = str(ip)
                    att.ifnames[network.id] = ifname
                    att.scopes.append(network.id)
                    addresses.append(str(ip))
                    if network.has_dns:
                        embedded = True
                        v6 = str(ip6) if ip6 is not None else None
                        self.dns_table.add(network.id, container_id, names, str(ip), v6)
                    if first_bridge is None and not network.internal:
                        first_bridge = (network, str(ip))
                    routed = routed or not network.internal
                if first_bridge is not None and (port_bindings or publish_all):
                    att.ports = self.ports.allocate(dict(port_bindings), publish_all)
                    att.holders = [reserve(m) for m in att.ports]
                    self._apply_rules()
                resolv = container_resolv_conf(self.resolv_conf, embedded, dns=dns)
                endpoint = Endpoint(
                    namespace=path,
                    hostname=hostname,
                    hosts=_hosts(hostname, addresses, extra_hosts),
                    resolv_conf=resolv,
                )
            except BaseException:
                self._release(container_id)
                for given in endpoints.values():
                    for key in ("IPAddress", "GlobalIPv6Address"):
                        held = given.get(key)
                        if held and given.get("NetworkID"):
                            with contextlib.suppress(Exception):
                                self.ipam.release_address(given["NetworkID"], held)
                    for key in _RUNTIME_KEYS:
                        given.pop(key, None)
                raise

        def wire() -> None:
            for step in plan:
                links.attach(**step)
            if embedded and self.dns is not None and self.loop is not None:
                scopes = att.scopes
                upstreams = list(dns) or None
                self._on_loop(
                    self.dns.attach(container_id, path, lambda: scopes, upstreams=upstreams)
                )
                att.dns = True

        return endpoint, list(att.ports), wire

    def connect_live(self, container_id: str, name: str, settings: dict[str, Any]) -> None:
        """A running container joins one more network: a new interface in its namespace
        (no new default route), its names in that network's DNS."""
        with self.lock:
            att = self.attached.get(container_id)
            if att is None:
                raise NetworkError(f"container {container_id[:12]} has no network namespace")
            network = self.get(settings["NetworkID"])
            ip = self._address(network, settings)
            try:
                settings.update(self._settings(network, ip, settings))
                used = set(att.ifnames.values())
                ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
                links.attach(
                    network.bridge,
                    att.netns,
                    ifname=ifname,
                    addresses=[f"{ip}/{settings['IPPrefixLen']}"],
                    gateways=[],
                    mtu=network.mtu,
                    mac=settings["MacAddress"],
                    alias=f"orchestr:{container_id[:12]}",
                )
            except BaseException:
                self.ipam.release_address(network.id, ip)
                raise
            names = [name.lstrip("/"), container_id[:12], *(settings.get("Aliases") or [])]
            att.names[network.id] = names
            att.ips[network.id] = str(ip)
            att.ifnames[network.id] = ifname
            att.scopes.append(network.id)
            if network.has_dns:
                self.dns_table.add(network.id, container_id, names, str(ip), None)
                if self.dns is not None and self.loop is not None and not att.dns:
                    scopes = att.scopes
                    self._on_loop(self.dns.attach(container_id, att.netns, lambda: scopes))
                    att.dns = True

    def disconnect_live(self, container_id: str, settings: dict[str, Any]) -> None:
        with self.lock:
            att = self.attached.get(container_id)
            network_id = settings.get("NetworkID", "")
            if att is None or network_id not in att.names:
                return
            ifname = att.ifnames.pop(network_id, None)
            if ifname is not None:
                with contextlib.suppress(NetworkError):
                    links.delete_link(ifname, node=att.netns)
            self.dns_table.remove(network_id, container_id)
            att.names.pop(network_id, None)
            att.ips.pop(network_id, None)
            with contextlib.suppress(ValueError):
                att.scopes.remove(network_id)
            ip = settings.get("IPAddress")
            if ip:
                with contextlib.suppress(Exception):
                    self.ipam.release_address(network_id, ip)
            for key in _RUNTIME_KEYS:
                settings.pop(key, None)

    def detach(self, container_id: str, endpoints: dict[str, dict[str, Any]] | None = None) -> None:
        """Undo `attach`: DNS names, ports, addresses (static ones stay recorded) and the
        namespace (its veths go with it)."""
        with self.lock:
            self._release(container_id)
            for settings in (endpoints or {}).values():
                network_id = settings.get("NetworkID")
                for key in ("IPAddress", "GlobalIPv6Address"):
                    ip = settings.get(key)
                    if network_id and ip:
                        with contextlib.suppress(Exception):
                            self.ipam.release_address(network_id, ip)
                for key in _RUNTIME_KEYS:
                    settings.pop(key, None)

    def _release(self, container_id: str) -> None:
        att = self.attached.pop(container_id, None)
        if att is None:
            path = self.namespace_path(container_id)
            if os.path.exists(path):
                netns.remove(path)
            return
        for network_id in att.names:
            self.dns_table.remove(network_id, container_id)
        if att.dns and self.dns is not None and self.loop is not None:
            with contextlib.suppress(Exception):
                self._on_loop(self.dns.detach(container_id))
        for s in att.holders:
            s.close()
        if att.ports:
            self.ports.release(att.ports)
            self._apply_rules()
        netns.remove(att.netns)

    def _address(self, network: Network, settings: dict[str, Any]) -> ipaddress.IPv4Address:
        wanted = (settings.get("IPAMConfig") or {}).get("IPv4Address") or None
        if wanted and network.name == "bridge":
            raise NetworkError(
                "user specified IP address is supported on user defined networks only"
            )
        if wanted and not network.user_subnet:
            raise NetworkError(
                "user specified IP address is supported only when connecting to networks "
                "with user configured subnets"
            )
        ip = self.ipam.request_address(network.id, wanted)
        return ip  # type: ignore[return-value]

    def _address6(self, network: Network, settings: dict[str, Any]) -> object | None:
        """The endpoint's IPv6 address on a dual-stack network (recorded in `settings`)."""
        if not (network.enable_ipv6 and network.subnet6):
            return None
        wanted = (settings.get("IPAMConfig") or {}).get("IPv6Address") or None
        ip6 = self.ipam.request_address(network.id, wanted, ipv6=True)
        settings["GlobalIPv6Address"] = str(ip6)
        settings["GlobalIPv6PrefixLen"] = ipaddress.ip_network(network.subnet6).prefixlen
        settings["IPv6Gateway"] = network.gateway6 or ""
        return ip6

    def _settings(
        self, network: Network, ip: object, settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        prefix = ipaddress.ip_network(network.subnet or "").prefixlen
        return {
            "NetworkID": network.id,
            "EndpointID": secrets.token_hex(32),
            "Gateway": network.gateway or "",
            "IPAddress": str(ip),
            "IPPrefixLen": prefix,
            "MacAddress": links.mac_for(str(ip)),
            "Aliases": list(settings.get("Aliases") or []),
        }

    def restore(
        self,
        container_id: str,
        name: str,
        endpoints: Mapping[str, Mapping[str, Any]],
        ports: Sequence[PortMapping],
    ) -> None:
        """After a daemon restart: take back what a still-running container holds
        (addresses, ports, DNS names) from its record."""
        path = self.namespace_path(container_id)
        with self.lock:
            att = Attachment(path, {})
            for settings in endpoints.values():
                network_id = settings.get("NetworkID")
                ip = settings.get("IPAddress")
                if not network_id or not ip or network_id not in self.networks:
                    continue
                network = self.networks[network_id]
                with contextlib.suppress(Exception):
                    self.ipam.request_address(network_id, ip)
                ip6 = settings.get("GlobalIPv6Address")
                if ip6:
                    with contextlib.suppress(Exception):
                        self.ipam.request_address(network_id, ip6)
                names = [name.lstrip("/"), container_id[:12], *(settings.get("Aliases") or [])]
                att.names[network_id] = names
                att.ips[network_id] = str(ip)
                att.scopes.append(network_id)
                att.ifnames[network_id] = f"eth{len(att.ifnames)}"
                if network.has_dns:
                    v6 = str(ip6) if ip6 else None
                    self.dns_table.add(network_id, container_id, names, str(ip), v6)
            if ports:
                try:
                    bindings: dict[str, list[dict[str, str]]] = {}
                    for m in ports:  # one container port may be published several times
                        bindings.setdefault(f"{m.container_port}/{m.proto}", []).append(
                            {"HostIp": m.host_ip, "HostPort": str(m.host_port)}
                        )
                    att.ports = self.ports.allocate(bindings)
                    att.holders = [reserve(m) for m in att.ports]
                except Exception as e:
                    log.warning("container %s: its published ports: %s", container_id[:12], e)
            self.attached[container_id] = att
            if att.ports:
                self._apply_rules()
            dns = any(self.networks[n].has_dns for n in att.names)
            if dns and self.dns is not None and self.loop is not None and os.path.exists(path):
                scopes = att.scopes
                with contextlib.suppress(Exception):
                    self._on_loop(self.dns.attach(container_id, path, lambda: scopes))
                    att.dns = True

    def sweep(self) -> None:
        """After recovery: namespace files of containers that no longer run (a daemon
        that died while they stopped) are removed; their veths go with them."""
        with self.lock:
            if not os.path.isdir(self.netns_dir):
                return
            for name in os.listdir(self.netns_dir):
                if name not in self.attached:
                    with contextlib.suppress(NetworkError):
                        netns.remove(os.path.join(self.netns_dir, name))

    def _on_loop(self, coro: Any) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    # -- rules -----------------------------------------------------------------------------

    def _apply_rules(self) -> None:
        """Replace orchestr's nftables table with the rules of the current state (only
        when they changed: a container without published ports costs no nft run)."""
        bridges = [
            nft.BridgeRules(
                n.bridge,
                tuple(s for s in (n.subnet, n.subnet6) if s),
                masquerade=n.masquerade,
                internal=n.internal,
            )
            for n in self.networks.values()
            if n.driver == "bridge" and n.subnet
        ]
        rules: list[nft.PortRule] = []
        for cid, att in self.attached.items():
            target = self._port_target(cid, att)
            if target is None:
                continue
            network, ip = target
            rules.extend(
                nft.PortRule(
                    m.host_ip if m.host_ip not in ("", "0.0.0.0") else None,
                    m.host_port,
                    m.proto,
                    ip,
                    m.container_port,
                    network.bridge,
                )
                for m in att.ports
            )
        vips = [
            nft.VipRule(ep.vip, ep.backends)
            for (network_id, _), ep in sorted(self.services.items())
            if ep.vip and network_id in self.networks
        ]
        ingress = [
            nft.IngressRule(port, proto, target, self._backend_addresses(p.backends))
            for _, p in sorted(self.published.items())
            for port, proto, target in p.ports
        ]
        script = nft.ruleset(bridges, rules, vips, ingress) if bridges else None
        if script == self._ruleset:
            return
        if script is None:
            nft.remove()
        else:
            nft.apply(script)
        self._ruleset = script

    def _backend_addresses(self, container_ids: Sequence[str]) -> tuple[str, ...]:
        """Where a service's published ports lead: each container's first address on a
        network that is not internal, as a container's own published ports."""
        targets = (self._open_address(self.attached.get(cid)) for cid in container_ids)
        return tuple(sorted(t[1] for t in targets if t is not None))

    def _port_target(self, container_id: str, att: Attachment) -> tuple[Network, str] | None:
        """The network and address published ports lead to: the first non-internal one."""
        return self._open_address(att) if att.ports else None

    def _open_address(self, att: Attachment | None) -> tuple[Network, str] | None:
        for network_id, ip in att.ips.items() if att is not None else ():
            network = self.networks.get(network_id)
            if network is not None and not network.internal:
                return network, ip
        return None


# What an endpoint holds only while its container runs.
_RUNTIME_KEYS = (
    "IPAddress",
    "IPPrefixLen",
    "Gateway",
    "MacAddress",
    "EndpointID",
    "GlobalIPv6Address",
    "GlobalIPv6PrefixLen",
    "IPv6Gateway",
)


def _hosts(hostname: str, addresses: Sequence[str], extra: Sequence[str] = ()) -> str:
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    for entry in extra:
        host, _, ip = entry.partition(":")
        lines.append(f"{ip}\t{host}")
    lines.extend(f"{ip}\t{hostname}" for ip in addresses[:1])
    return "\n".join(lines) + "\n"
