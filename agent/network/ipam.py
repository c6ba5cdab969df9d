"""IP address management for bridge networks: subnets for networks, addresses for endpoints.

The model follows the behaviour of Docker's default IPAM driver:

- A node has default address pools (`Pool`: a base network cut into subnets with a
  prefix length of `size`, dockerd's `--default-address-pool`); `DEFAULT_POOLS` are
  Docker's own.
- A network owns at most one IPv4 and one IPv6 `PoolAllocation`: a subnet, an
  optional ip-range that dynamic addresses come from, a gateway (by default the first
  host address of the subnet) and auxiliary addresses, which are reserved. A network
  without an explicit subnet gets the first subnet of the pools, in order, that
  overlaps no allocated subnet and none of the node's own routes (`avoid`). Allocated
  subnets never overlap one another.
- Addresses are handed out serially: the next free one after the last handed out,
  wrapping round the range, so a just-released address is not reused at once. An
  explicit address may lie anywhere in the subnet, also outside the ip-range, and
  does not move the cursor. The network address (always on IPv6, and on IPv4 subnets
  bigger than a /31), the IPv4 broadcast address, the gateway and the auxiliary
  addresses are never handed out.
- Everything is integer arithmetic on addresses: nothing enumerates a subnet, so an
  IPv6 /64, or a pool of 2^56 /64s, costs no more than a /24.
- The state is plain data: `Ipam.to_dict` and `Ipam.from_dict` carry it across a
  daemon restart, serial cursors included. The pools are configuration, given again.

Every error is an `IPAMError` (a `NetworkError`, so a `ValueError`) whose message
names the bad value, in Docker's words where Docker has them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from types import MappingProxyType
from typing import Any

from agent.network.base import NetworkError

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

POOL_OVERLAP = "invalid pool request: Pool overlaps with other one on this address space"
ADDRESS_IN_USE = "Address already in use"
STATE_VERSION = 1

_NO_AUX: Mapping[str, str | Address] = MappingProxyType({})
_NO_AUX_ADDRESSES: Mapping[str, Address] = MappingProxyType({})


class IPAMError(NetworkError):
    """A pool or address request that cannot be met; the message says why."""


@dataclass(frozen=True)
class Pool:
    """A default address pool: `base` cut into subnets of prefix length `size`."""

    base: Network
    size: int

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise IPAMError(f"invalid size {self.size!r} of address pool {self.base}")
        if self.size < self.base.prefixlen:
            raise IPAMError(
                f"invalid address pool {self}: size {self.size} is smaller than "
                f"the base prefix length {self.base.prefixlen}"
            )
        if self.size > self.base.max_prefixlen:
            raise IPAMError(
                f"invalid address pool {self}: size {self.size} is bigger than "
                f"{self.base.max_prefixlen}"
            )

    def __str__(self) -> str:
        return f"base={self.base},size={self.size}"


DEFAULT_POOLS: tuple[Pool, ...] = (
    *(Pool(IPv4Network(f"172.{n}.0.0/16"), 16) for n in range(17, 32)),
    Pool(IPv4Network("192.168.0.0/16"), 20),
)


def _pool(base: object, size: object) -> Pool:
    try:
        network = ip_network(str(base), strict=False)
    except ValueError:
        raise IPAMError(f"invalid base prefix {base!r} of address pool") from None
    if isinstance(size, bool) or not isinstance(size, int):
        raise IPAMError(f"invalid size {size!r} of address pool {network} (must be an integer)")
    return Pool(network, size)


def parse_pool(text: str) -> Pool:
    """A pool from dockerd's flag syntax, `base=10.10.0.0/16,size=24` (keys in any case)."""
    values: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        key = key.strip().lower()
        if not sep:
            raise IPAMError(f"invalid field {part!r} in {text!r}: must be a key=value pair")
        if key not in ("base", "size"):
            raise IPAMError(f"unexpected key {key!r} in {text!r}")
        values[key] = value.strip()
    missing = [k for k in ("base", "size") if k not in values]
    if missing:
        raise IPAMError(f"invalid address pool {text!r}: missing {' and '.join(missing)}")
    try:
        size = int(values["size"])
    except ValueError:
        raise IPAMError(
            f"invalid size value {values['size']!r} in {text!r} (must be an integer)"
        ) from None
    return _pool(values["base"], size)


def pool_from_json(value: object) -> Pool:
    """A pool from daemon.json's `default-address-pools` entries: `{"base": …, "size": …}`."""
    if not isinstance(value, Mapping):
        raise IPAMError(f"invalid address pool {value!r}: must be an object with base and size")
    fields = {str(k).lower(): v for k, v in value.items()}
    unknown = sorted(set(fields) - {"base", "size"})
    if unknown:
        raise IPAMError(f"invalid address pool {value!r}: unexpected key {unknown[0]!r}")
    if "base" not in fields or "size" not in fields:
        raise IPAMError(f"invalid address pool {value!r}: needs both base and size")
    if not isinstance(fields["base"], str):
        raise IPAMError(f"invalid base prefix {fields['base']!r} of address pool")
    return _pool(fields["base"], fields["size"])


@dataclass(frozen=True)
class PoolAllocation:
    """One network's subnet of one address family, and what is reserved in it."""

    network_id: str
    subnet: Network
    ip_range: Network | None
    gateway: Address
    aux_addresses: Mapping[str, Address] = field(
        default_factory=lambda: _NO_AUX_ADDRESSES, hash=False
    )

    @property
    def ipv6(self) -> bool:
        return self.subnet.version == 6

    @property
    def range(self) -> Network:
        """Where dynamic addresses come from: the ip-range, else the whole subnet."""
        return self.ip_range or self.subnet


def _family(ipv6: bool) -> str:
    return "IPv6" if ipv6 else "IPv4"


def _reserved(subnet: Network) -> set[int]:
    first = int(subnet.network_address)
    if subnet.version == 6:
        return {first}
    if subnet.num_addresses > 2:
        return {first, int(subnet.broadcast_address)}
    return set()


def _address(value: str | Address, what: str) -> Address:
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    try:
        return ip_address(value.strip())
    except ValueError:
        raise IPAMError(f"invalid {what} {value}: invalid address") from None


def _make_address(version: int, value: int) -> Address:
    return IPv6Address(value) if version == 6 else IPv4Address(value)


def _make_network(version: int, value: int, prefixlen: int) -> Network:
    return IPv6Network((value, prefixlen)) if version == 6 else IPv4Network((value, prefixlen))


def _prefix(value: str | Network, what: str, *, strict: bool = True) -> Network:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    text = value.strip()
    try:
        exact = ip_network(text, strict=False)
        if "/" not in text:
            raise ValueError(text)
    except ValueError:
        raise IPAMError(f"invalid {what} {value}: invalid CIDR block notation") from None
    if strict and exact.network_address != ip_address(text.split("/")[0]):
        raise IPAMError(f"invalid {what} {value}: it should be {exact}")
    return exact


def _check_member(address: Address, subnet: Network, what: str) -> None:
    """Inside `subnet`, and neither its network nor its IPv4 broadcast address."""
    if address.version != subnet.version:
        raise IPAMError(f"invalid {what}: parent subnet is an {_family(subnet.version == 6)} block")
    if address not in subnet:
        raise IPAMError(f"invalid {what}: parent subnet {subnet} doesn't contain this address")
    if int(address) in _reserved(subnet):
        kind = "network" if address == subnet.network_address else "broadcast"
        raise IPAMError(f"invalid {what}: it is the {kind} address of {subnet}")


def _check_range(ip_range: Network, subnet: Network) -> None:
    if ip_range.version != subnet.version:
        family = _family(subnet.version == 6)
        raise IPAMError(f"invalid ip-range {ip_range}: parent subnet is an {family} block")
    if ip_range.prefixlen < subnet.prefixlen:
        raise IPAMError(
            f"invalid ip-range {ip_range}: CIDR block is bigger than its parent subnet {subnet}"
        )
    (first, end), (range_first, range_end) = _bounds(subnet), _bounds(ip_range)
    if not first <= range_first < range_end <= end:
        raise IPAMError(
            f"invalid ip-range {ip_range}: parent subnet {subnet} doesn't contain ip-range"
        )


def _bounds(network: Network) -> tuple[int, int]:
    """[first, end) of a network, as integers."""
    first = int(network.network_address)
    return first, first + network.num_addresses


def _overlaps(a: Network, b: Network) -> bool:
    if a.version != b.version:
        return False
    a0, a1 = _bounds(a)
    b0, b1 = _bounds(b)
    return a0 < b1 and b0 < a1


def _first_free(pool: Pool, taken: Sequence[tuple[int, int]]) -> Network | None:
    """The first `size` subnet of `pool` that overlaps none of the `taken` [first, end)
    spans. Each step jumps past at least one span, so the search is O(len(taken)^2)
    however many subnets the pool holds."""
    block = 1 << (pool.base.max_prefixlen - pool.size)
    start, end = _bounds(pool.base)
    candidate = start
    while candidate + block <= end:
        ends = [e for s, e in taken if s < candidate + block and candidate < e]
        if not ends:
            return _make_network(pool.base.version, candidate, pool.size)
        past = max(ends) - start
        candidate = start + -(-past // block) * block
    return None


@dataclass
class _Network:
    """The mutable state behind one `PoolAllocation`."""

    allocation: PoolAllocation
    used: set[int] = field(default_factory=set)
    last: int | None = None  # the last address handed out dynamically

    def reserved(self) -> set[int]:
        held = _reserved(self.allocation.subnet) | {int(self.allocation.gateway)}
        return held | {int(a) for a in self.allocation.aux_addresses.values()}


class Ipam:
    """The pools and addresses of every network on a node (see the module docstring)."""

    def __init__(self, pools: Sequence[Pool] = DEFAULT_POOLS) -> None:
        self.pools: tuple[Pool, ...] = tuple(pools)
        self._networks: dict[tuple[str, int], _Network] = {}

    # Pools

    def request_pool(
        self,
        network_id: str,
        *,
        subnet: str | Network | None = None,
        ip_range: str | Network | None = None,
        gateway: str | Address | None = None,
        aux_addresses: Mapping[str, str | Address] = _NO_AUX,
        ipv6: bool = False,
        avoid: Iterable[str | Network] = (),
    ) -> PoolAllocation:
        """Give the network a subnet: `subnet` if given (its family wins over `ipv6`),
        else the first free one of the default pools of the `ipv6` family."""
        if subnet is None:
            if ip_range is not None or gateway is not None:
                raise IPAMError("every ip-range or gateway must have a corresponding subnet")
            if aux_addresses:
                raise IPAMError("every auxiliary address must have a corresponding subnet")
            net = self._dynamic_subnet(ipv6, [_prefix(a, "route", strict=False) for a in avoid])
            version = net.version
        else:
            net = _prefix(subnet, "subnet")
            version = net.version
        key = (network_id, version)
        if key in self._networks:
            held = self._networks[key].allocation.subnet
            family = _family(version == 6)
            raise IPAMError(f"network {network_id} already has an {family} pool: {held}")

        allocation = self._validated(network_id, net, ip_range, gateway, aux_addresses)
        if subnet is not None:
            for other in self._networks.values():
                if _overlaps(net, other.allocation.subnet):
                    raise IPAMError(POOL_OVERLAP)
        self._networks[key] = _Network(allocation)
        return allocation

    def release_pool(self, network_id: str) -> None:
        """Free the network's pools and every address in them; unknown ids are ignored."""
        for version in (4, 6):
            self._networks.pop((network_id, version), None)

    def allocation(self, network_id: str, *, ipv6: bool = False) -> PoolAllocation | None:
        found = self._networks.get((network_id, 6 if ipv6 else 4))
        return found.allocation if found else None

    def allocations(self) -> tuple[PoolAllocation, ...]:
        return tuple(n.allocation for n in self._networks.values())

    # Addresses

    def request_address(
        self, network_id: str, ip: str | Address | None = None, *, ipv6: bool = False
    ) -> Address:
        """An address for an endpoint: `ip` if given (its family wins over `ipv6`) and
        free, else the next free one of the range after the last handed out."""
        if ip is None:
            return self._next_address(self._network(network_id, 6 if ipv6 else 4))
        address = _address(ip, "address")
        state = self._network(network_id, address.version)
        subnet = state.allocation.subnet
        if address not in subnet:
            raise IPAMError(f"requested address {address} is not in subnet {subnet}")
        value = int(address)
        if value in state.used or value in state.reserved():
            raise IPAMError(ADDRESS_IN_USE)
        state.used.add(value)
        return address

    def release_address(self, network_id: str, ip: str | Address) -> None:
        """Free an endpoint's address; unknown networks and free addresses are ignored."""
        address = _address(ip, "address")
        state = self._networks.get((network_id, address.version))
        if state is not None:
            state.used.discard(int(address))

    def addresses_in_use(self, network_id: str) -> tuple[Address, ...]:
        """The endpoint addresses of the network, IPv4 first, each family in order
        (the gateway and auxiliary addresses are on its `PoolAllocation`)."""
        found: list[Address] = []
        for version in (4, 6):
            state = self._networks.get((network_id, version))
            if state is not None:
                found.extend(_make_address(version, v) for v in sorted(state.used))
        return tuple(found)

    # State

    def to_dict(self) -> dict[str, Any]:
        """The allocation state as JSON-serialisable data (pools excluded: they are config)."""
        return {
            "version": STATE_VERSION,
            "networks": [_network_to_dict(n) for n in self._networks.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], pools: Sequence[Pool] = DEFAULT_POOLS) -> Ipam:
        """The `Ipam` that `to_dict` described, with `pools` as its default pools."""
        ipam = cls(pools)
        try:
            if data["version"] != STATE_VERSION:
                raise ValueError(f"unknown version {data['version']!r}")
            for entry in data["networks"]:
                state = _network_from_dict(entry)
                ipam._networks[(state.allocation.network_id, state.allocation.subnet.version)] = (
                    state
                )
        except (KeyError, TypeError, ValueError) as e:
            raise IPAMError(f"invalid IPAM state: {e!r}") from None
        return ipam

    # Internals

    def _network(self, network_id: str, version: int) -> _Network:
        state = self._networks.get((network_id, version))
        if state is None:
            raise IPAMError(f"network {network_id} has no {_family(version == 6)} pool")
        return state

    def _dynamic_subnet(self, ipv6: bool, avoid: Sequence[Network]) -> Network:
        version = 6 if ipv6 else 4
        pools = [p for p in self.pools if p.base.version == version]
        if ipv6 and not pools:
            raise IPAMError(
                "no IPv6 default address pool is configured: an IPv6 network needs a subnet"
            )
        busy = [n.allocation.subnet for n in self._networks.values()] + list(avoid)
        taken = [_bounds(n) for n in busy if n.version == version]
        for pool in pools:
            found = _first_free(pool, taken)
            if found is not None:
                return found
        raise IPAMError(
            f"could not find an available, non-overlapping {_family(ipv6)} address pool "
            "among the defaults to assign to the network"
        )

    @staticmethod
    def _validated(
        network_id: str,
        subnet: Network,
        ip_range: str | Network | None,
        gateway: str | Address | None,
        aux_addresses: Mapping[str, str | Address],
    ) -> PoolAllocation:
        span = None if ip_range is None else _prefix(ip_range, "ip-range")
        if span is not None:
            _check_range(span, subnet)
        if gateway is None:
            gw = _first_host(subnet)
        else:
            gw = _address(gateway, "gateway")
            _check_member(gw, subnet, f"gateway {gateway}")
        aux: dict[str, Address] = {}
        held = {int(gw)}
        for name, value in aux_addresses.items():
            address = _address(value, f"auxiliary address {name}")
            _check_member(address, subnet, f"auxiliary address {name}")
            if int(address) in held:
                raise IPAMError(
                    f"failed to allocate secondary ip address ({name}:{address}): {ADDRESS_IN_USE}"
                )
            held.add(int(address))
            aux[name] = address
        return PoolAllocation(network_id, subnet, span, gw, MappingProxyType(aux))

    @staticmethod
    def _next_address(state: _Network) -> Address:
        allocation = state.allocation
        first, end = _bounds(allocation.range)
        last = end - 1
        taken = state.used | state.reserved()
        busy = sum(1 for v in taken if first <= v <= last)
        if busy >= end - first:
            raise IPAMError(
                f"no available {_family(allocation.ipv6)} addresses on this network's "
                f"address pools: {allocation.subnet}"
            )
        candidate = first
        if state.last is not None and first <= state.last < last:
            candidate = state.last + 1
        while candidate in taken:
            candidate = candidate + 1 if candidate < last else first
        state.used.add(candidate)
        state.last = candidate
        return _make_address(allocation.subnet.version, candidate)


def _first_host(subnet: Network) -> Address:
    first, end = _bounds(subnet)
    reserved = _reserved(subnet)
    for value in range(first, min(end, first + 2)):
        if value not in reserved:
            return _make_address(subnet.version, value)
    raise IPAMError(f"subnet {subnet} has no address left for a gateway")


def _network_to_dict(state: _Network) -> dict[str, Any]:
    a = state.allocation
    version = a.subnet.version
    return {
        "network_id": a.network_id,
        "subnet": str(a.subnet),
        "ip_range": None if a.ip_range is None else str(a.ip_range),
        "gateway": str(a.gateway),
        "aux_addresses": {k: str(v) for k, v in a.aux_addresses.items()},
        "addresses": [str(_make_address(version, v)) for v in sorted(state.used)],
        "last": None if state.last is None else str(_make_address(version, state.last)),
    }


def _network_from_dict(entry: Mapping[str, Any]) -> _Network:
    subnet = ip_network(entry["subnet"])
    ip_range = None if entry["ip_range"] is None else ip_network(entry["ip_range"])
    aux = {str(k): ip_address(v) for k, v in entry["aux_addresses"].items()}
    allocation = PoolAllocation(
        str(entry["network_id"]),
        subnet,
        ip_range,
        ip_address(entry["gateway"]),
        MappingProxyType(aux),
    )
    used = {int(ip_address(v)) for v in entry["addresses"]}
    last = None if entry["last"] is None else int(ip_address(entry["last"]))
    return _Network(allocation, used, last)
