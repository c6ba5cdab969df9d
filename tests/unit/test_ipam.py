"""IPAM: default pools, subnet choice, serial address allocation, errors, persistence."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.network import NetworkError
from agent.network.ipam import (
    DEFAULT_POOLS,
    Ipam,
    IPAMError,
    Pool,
    PoolAllocation,
    parse_pool,
    pool_from_json,
)

pytestmark = pytest.mark.unit


def v4(text: str) -> IPv4Network:
    return IPv4Network(text)


def small_pools() -> list[Pool]:
    return [Pool(v4("10.0.0.0/24"), 26), Pool(v4("10.1.0.0/25"), 26)]


# Pools


def test_default_pools_are_dockers() -> None:
    assert [str(p) for p in DEFAULT_POOLS] == [
        *(f"base=172.{n}.0.0/16,size=16" for n in range(17, 32)),
        "base=192.168.0.0/16,size=20",
    ]


def test_parse_pool() -> None:
    assert parse_pool("base=10.10.0.0/16,size=24") == Pool(v4("10.10.0.0/16"), 24)
    assert parse_pool(" Base=10.10.0.0/16 , SIZE=24 ") == Pool(v4("10.10.0.0/16"), 24)
    assert parse_pool("base=fd00::/48,size=64") == Pool(IPv6Network("fd00::/48"), 64)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base=10.10.0.0/16", "missing size"),
        ("size=24", "missing base"),
        ("base=10.10.0.0/16,size=x", "invalid size value 'x'"),
        ("base=nope,size=24", "invalid base prefix 'nope'"),
        ("base=10.10.0.0/16,size=24,color=red", "unexpected key 'color'"),
        ("base=10.10.0.0/16,size", "invalid field 'size'"),
        ("base=10.10.0.0/16,size=8", "size 8 is smaller than the base prefix length 16"),
        ("base=10.10.0.0/16,size=33", "size 33 is bigger than 32"),
    ],
)
def test_parse_pool_errors(text: str, message: str) -> None:
    with pytest.raises(IPAMError, match=message):
        parse_pool(text)


def test_pool_from_json() -> None:
    assert pool_from_json({"base": "10.10.0.0/16", "size": 24}) == Pool(v4("10.10.0.0/16"), 24)
    assert pool_from_json({"Base": "10.10.0.0/16", "Size": 24}) == Pool(v4("10.10.0.0/16"), 24)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("base=10.0.0.0/8", "must be an object"),
        ({"base": "10.0.0.0/8"}, "needs both base and size"),
        ({"base": "10.0.0.0/8", "size": "24"}, "invalid size '24'"),
        ({"base": "10.0.0.0/8", "size": True}, "invalid size True"),
        ({"base": 10, "size": 24}, "invalid base prefix 10"),
        ({"base": "10.0.0.0/8", "size": 24, "sise": 1}, "unexpected key 'sise'"),
        ({"base": "10.0.0.0/16", "size": 8}, "size 8 is smaller"),
    ],
)
def test_pool_from_json_errors(value: object, message: str) -> None:
    with pytest.raises(IPAMError, match=message):
        pool_from_json(value)


def test_ipam_error_is_a_network_error_and_a_value_error() -> None:
    assert issubclass(IPAMError, NetworkError) and issubclass(IPAMError, ValueError)


# Dynamic subnets


def test_dynamic_subnets_follow_the_default_pools_in_order() -> None:
    ipam = Ipam()
    subnets = [str(ipam.request_pool(f"n{i}").subnet) for i in range(17)]
    assert subnets == [f"172.{n}.0.0/16" for n in range(17, 32)] + [
        "192.168.0.0/20",
        "192.168.16.0/20",
    ]
    first = ipam.allocation("n0")
    assert first == PoolAllocation("n0", v4("172.17.0.0/16"), None, IPv4Address("172.17.0.1"))


def test_dynamic_subnets_avoid_the_nodes_routes_and_explicit_subnets() -> None:
    ipam = Ipam()
    ipam.request_pool("explicit", subnet="172.18.5.0/24")
    got = ipam.request_pool("a", avoid=[v4("172.17.0.0/16"), "172.19.0.7/24"]).subnet
    assert got == v4("172.20.0.0/16")
    assert ipam.request_pool("b", avoid=["fd00::/8"]).subnet == v4("172.17.0.0/16")


def test_a_released_subnet_is_reused_first_fit() -> None:
    ipam = Ipam(small_pools())
    for name in "abc":
        ipam.request_pool(name)
    ipam.release_pool("b")
    assert ipam.request_pool("d").subnet == v4("10.0.0.64/26")


def test_exhausted_pools() -> None:
    ipam = Ipam(small_pools())
    subnets = [str(ipam.request_pool(str(i)).subnet) for i in range(6)]
    assert subnets[-2:] == ["10.1.0.0/26", "10.1.0.64/26"]
    with pytest.raises(IPAMError) as e:
        ipam.request_pool("7")
    assert str(e.value) == (
        "could not find an available, non-overlapping IPv4 address pool "
        "among the defaults to assign to the network"
    )


def test_a_route_over_all_the_pools_leaves_none() -> None:
    with pytest.raises(IPAMError, match="non-overlapping IPv4 address pool"):
        Ipam(small_pools()).request_pool("n", avoid=["10.0.0.0/8"])


def test_overlapping_pools_never_give_overlapping_subnets() -> None:
    ipam = Ipam([Pool(v4("10.0.0.0/24"), 25), Pool(v4("10.0.0.0/24"), 26)])
    assert str(ipam.request_pool("a", avoid=["10.0.0.0/26"]).subnet) == "10.0.0.128/25"
    assert str(ipam.request_pool("b", avoid=["10.0.0.0/26"]).subnet) == "10.0.0.64/26"
    assert str(ipam.request_pool("c").subnet) == "10.0.0.0/26"
    with pytest.raises(IPAMError, match="non-overlapping"):
        ipam.request_pool("d")


def test_ipv6_needs_a_subnet_without_a_v6_pool() -> None:
    with pytest.raises(IPAMError, match="an IPv6 network needs a subnet"):
        Ipam().request_pool("n", ipv6=True)


def test_ipv6_pools_are_searched_without_enumerating() -> None:
    ipam = Ipam([parse_pool("base=10.0.0.0/8,size=24"), parse_pool("base=fd00::/8,size=64")])
    avoid = [f"fd00:0:0:{i:x}::/64" for i in range(0, 4000, 2)] + ["fd00::/32"]
    got = ipam.request_pool("n", ipv6=True, avoid=avoid)
    assert got.subnet == IPv6Network("fd00:1::/64") and got.gateway == IPv6Address("fd00:1::1")
    assert ipam.request_pool("n").subnet == v4("10.0.0.0/24")  # one pool per family
    assert ipam.request_pool("m", ipv6=True, avoid=avoid).subnet == IPv6Network("fd00:1:0:1::/64")
    assert ipam.request_pool("o", ipv6=True).subnet == IPv6Network("fd00::/64")
    full = Ipam([parse_pool("base=fd00::/8,size=64")])
    with pytest.raises(IPAMError, match="non-overlapping IPv6 address pool"):
        full.request_pool("n", ipv6=True, avoid=["fd00::/7"])


# Explicit subnets


def test_explicit_subnet_with_range_gateway_and_aux() -> None:
    ipam = Ipam()
    got = ipam.request_pool(
        "n",
        subnet="10.5.0.0/16",
        ip_range="10.5.1.0/24",
        gateway="10.5.0.254",
        aux_addresses={"router": "10.5.1.1", "printer": IPv4Address("10.5.9.9")},
    )
    assert got.subnet == v4("10.5.0.0/16") and got.ip_range == v4("10.5.1.0/24")
    assert got.range == got.ip_range and not got.ipv6
    assert got.gateway == IPv4Address("10.5.0.254")
    assert dict(got.aux_addresses) == {
        "router": IPv4Address("10.5.1.1"),
        "printer": IPv4Address("10.5.9.9"),
    }
    assert ipam.request_address("n") == IPv4Address("10.5.1.0")  # not reserved in a /16
    assert ipam.request_address("n") == IPv4Address("10.5.1.2")  # router skipped
    assert ipam.request_address("n", "10.5.7.7") == IPv4Address("10.5.7.7")  # outside the range
    assert ipam.request_address("n") == IPv4Address("10.5.1.3")  # the cursor did not move
    assert ipam.allocations() == (got,)


def test_explicit_subnets_cannot_overlap() -> None:
    ipam = Ipam()
    ipam.request_pool("a", subnet="10.0.0.0/16")
    for subnet in ("10.0.0.0/16", "10.0.3.0/24", "10.0.0.0/8"):
        with pytest.raises(IPAMError) as e:
            ipam.request_pool("b", subnet=subnet)
        assert str(e.value) == (
            "invalid pool request: Pool overlaps with other one on this address space"
        )
    ipam.request_pool("b", subnet="10.1.0.0/16")
    first = ipam.request_pool("c").subnet
    with pytest.raises(IPAMError, match="Pool overlaps"):
        ipam.request_pool("d", subnet=str(first))


def test_explicit_subnets_ignore_avoid() -> None:
    got = Ipam().request_pool("a", subnet="10.0.0.0/24", avoid=["10.0.0.0/8"])
    assert got.subnet == v4("10.0.0.0/24")


def test_one_pool_per_family_per_network() -> None:
    ipam = Ipam()
    ipam.request_pool("n", subnet="10.0.0.0/24")
    six = ipam.request_pool("n", subnet="fd00::/64", ipv6=False)  # the subnet decides
    assert six.ipv6 and ipam.allocation("n", ipv6=True) == six
    with pytest.raises(IPAMError, match=r"network n already has an IPv4 pool: 10\.0\.0\.0/24"):
        ipam.request_pool("n")
    with pytest.raises(IPAMError, match="already has an IPv6 pool: fd00::/64"):
        ipam.request_pool("n", subnet="fd01::/64")
    ipam.release_pool("n")
    assert ipam.allocations() == () and ipam.allocation("n") is None
    ipam.release_pool("n")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subnet": "nope"}, "invalid subnet nope: invalid CIDR block notation"),
        ({"subnet": "10.0.0.0"}, "invalid subnet 10.0.0.0: invalid CIDR block notation"),
        ({"subnet": "10.1.2.3/24"}, "invalid subnet 10.1.2.3/24: it should be 10.1.2.0/24"),
        ({"ip_range": "10.0.0.0/24"}, "every ip-range or gateway must have a corresponding subnet"),
        ({"gateway": "10.0.0.1"}, "every ip-range or gateway must have a corresponding subnet"),
        ({"aux_addresses": {"a": "10.0.0.1"}}, "every auxiliary address must have a corre"),
        (
            {"subnet": "10.0.0.0/24", "ip_range": "10.0.0.0/16"},
            "invalid ip-range 10.0.0.0/16: CIDR block is bigger than its parent subnet 10.0.0.0/24",
        ),
        (
            {"subnet": "10.0.0.0/24", "ip_range": "10.0.1.0/25"},
            "invalid ip-range 10.0.1.0/25: parent subnet 10.0.0.0/24 doesn't contain ip-range",
        ),
        (
            {"subnet": "10.0.0.0/24", "ip_range": "10.0.0.1/25"},
            "invalid ip-range 10.0.0.1/25: it should be 10.0.0.0/25",
        ),
        (
            {"subnet": "10.0.0.0/24", "ip_range": "fd00::/64"},
            "invalid ip-range fd00::/64: parent subnet is an IPv4 block",
        ),
        ({"subnet": "10.0.0.0/24", "ip_range": "x"}, "invalid ip-range x: invalid CIDR block"),
        ({"subnet": "10.0.0.0/24", "gateway": "x"}, "invalid gateway x: invalid address"),
        (
            {"subnet": "10.0.0.0/24", "gateway": "10.0.1.1"},
            "invalid gateway 10.0.1.1: parent subnet 10.0.0.0/24 doesn't contain this address",
        ),
        (
            {"subnet": "10.0.0.0/24", "gateway": "fd00::1"},
            "invalid gateway fd00::1: parent subnet is an IPv4 block",
        ),
        (
            {"subnet": "fd00::/64", "gateway": "10.0.0.1"},
            "invalid gateway 10.0.0.1: parent subnet is an IPv6 block",
        ),
        (
            {"subnet": "10.0.0.0/24", "gateway": "10.0.0.0"},
            "invalid gateway 10.0.0.0: it is the network address of 10.0.0.0/24",
        ),
        (
            {"subnet": "10.0.0.0/24", "gateway": "10.0.0.255"},
            "invalid gateway 10.0.0.255: it is the broadcast address of 10.0.0.0/24",
        ),
        (
            {"subnet": "fd00::/64", "gateway": "fd00::"},
            "invalid gateway fd00::: it is the network address of fd00::/64",
        ),
        (
            {"subnet": "10.0.0.0/24", "aux_addresses": {"db": "10.9.0.1"}},
            "invalid auxiliary address db: parent subnet 10.0.0.0/24 doesn't contain this",
        ),
        (
            {"subnet": "10.0.0.0/24", "aux_addresses": {"db": "bad"}},
            "invalid auxiliary address db bad: invalid address",
        ),
        (
            {"subnet": "10.0.0.0/24", "aux_addresses": {"db": "10.0.0.255"}},
            "invalid auxiliary address db: it is the broadcast address of 10.0.0.0/24",
        ),
        (
            {"subnet": "10.0.0.0/24", "aux_addresses": {"db": "10.0.0.1"}},
            r"failed to allocate secondary ip address \(db:10.0.0.1\): Address already in use",
        ),
        (
            {"subnet": "10.0.0.0/24", "aux_addresses": {"a": "10.0.0.9", "b": "10.0.0.9"}},
            r"secondary ip address \(b:10.0.0.9\): Address already in use",
        ),
        ({"subnet": "fd00::/128"}, "subnet fd00::/128 has no address left for a gateway"),
    ],
)
def test_pool_request_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(IPAMError, match=message):
        Ipam().request_pool("n", **kwargs)  # type: ignore[arg-type]


def test_tiny_ipv4_subnets_reserve_nothing() -> None:
    ipam = Ipam()
    assert ipam.request_pool("a", subnet="10.0.0.0/31").gateway == IPv4Address("10.0.0.0")
    assert ipam.request_address("a") == IPv4Address("10.0.0.1")
    assert ipam.request_pool("b", subnet="10.0.1.1/32").gateway == IPv4Address("10.0.1.1")
    with pytest.raises(IPAMError, match="no available IPv4 addresses"):
        ipam.request_address("b")


# Addresses


def test_serial_allocation_wraps_around() -> None:
    ipam = Ipam()
    ipam.request_pool("n", subnet="10.0.0.0/29")  # .1 gateway, .2-.6 for endpoints
    assert [str(ipam.request_address("n")) for _ in range(2)] == ["10.0.0.2", "10.0.0.3"]
    ipam.release_address("n", "10.0.0.2")
    assert str(ipam.request_address("n")) == "10.0.0.4"  # not the one just released
    assert [str(ipam.request_address("n")) for _ in range(2)] == ["10.0.0.5", "10.0.0.6"]
    assert str(ipam.request_address("n")) == "10.0.0.2"  # wrapped round
    with pytest.raises(IPAMError) as e:
        ipam.request_address("n")
    assert (
        str(e.value) == "no available IPv4 addresses on this network's address pools: 10.0.0.0/29"
    )
    ipam.release_address("n", IPv4Address("10.0.0.5"))
    ipam.release_address("n", "10.0.0.5")  # idempotent
    ipam.release_address("other", "10.0.0.5")
    assert str(ipam.request_address("n")) == "10.0.0.5"
    assert ipam.addresses_in_use("n") == tuple(IPv4Address(f"10.0.0.{i}") for i in range(2, 7))


def test_explicit_addresses() -> None:
    ipam = Ipam()
    ipam.request_pool("n", subnet="10.0.0.0/24", aux_addresses={"host": "10.0.0.9"})
    assert ipam.request_address("n", "10.0.0.7") == IPv4Address("10.0.0.7")
    for taken in ("10.0.0.7", "10.0.0.1", "10.0.0.9", "10.0.0.0", "10.0.0.255"):
        with pytest.raises(IPAMError) as e:
            ipam.request_address("n", taken)
        assert str(e.value) == "Address already in use"
    with pytest.raises(IPAMError) as e:
        ipam.request_address("n", "10.0.1.1")
    assert str(e.value) == "requested address 10.0.1.1 is not in subnet 10.0.0.0/24"
    with pytest.raises(IPAMError, match="invalid address x: invalid address"):
        ipam.request_address("n", "x")
    with pytest.raises(IPAMError, match="network n has no IPv6 pool"):
        ipam.request_address("n", "fd00::1")
    with pytest.raises(IPAMError, match="network m has no IPv4 pool"):
        ipam.request_address("m")
    ipam.release_address("n", "10.0.0.1")  # the gateway is not an endpoint's to free
    with pytest.raises(IPAMError, match="Address already in use"):
        ipam.request_address("n", "10.0.0.1")


def test_release_pool_frees_the_addresses() -> None:
    ipam = Ipam()
    ipam.request_pool("n", subnet="10.0.0.0/24")
    ipam.request_address("n", "10.0.0.7")
    ipam.release_pool("n")
    assert ipam.addresses_in_use("n") == ()
    ipam.request_pool("n", subnet="10.0.0.0/24")
    assert ipam.request_address("n", "10.0.0.7") == IPv4Address("10.0.0.7")


def test_dual_stack_network() -> None:
    ipam = Ipam()
    ipam.request_pool("n")
    ipam.request_pool("n", subnet="fd00:1::/64")
    assert ipam.request_address("n", ipv6=True) == IPv6Address("fd00:1::2")
    assert ipam.request_address("n") == IPv4Address("172.17.0.2")
    assert ipam.addresses_in_use("n") == (IPv4Address("172.17.0.2"), IPv6Address("fd00:1::2"))
    ipam.release_address("n", "fd00:1::2")
    assert ipam.addresses_in_use("n") == (IPv4Address("172.17.0.2"),)


def test_big_ipv6_subnets_are_cheap() -> None:
    ipam = Ipam()
    ipam.request_pool("n", subnet="fd00::/64", ip_range="fd00::/80")
    got = [ipam.request_address("n", ipv6=True) for _ in range(2000)]
    assert got[0] == IPv6Address("fd00::2") and got[-1] == IPv6Address("fd00::7d1")
    last = ipam.request_address("n", "fd00::ffff:ffff:ffff")
    assert last == IPv6Address("fd00::ffff:ffff:ffff")  # v6 has no broadcast address
    ipam.request_pool("m", subnet="fd01::/64", ip_range="fd01::ffff:ffff:ffff:fffc/126")
    assert ipam.request_address("m", ipv6=True) == IPv6Address("fd01::ffff:ffff:ffff:fffc")
    ipam.request_address("m", ipv6=True)
    ipam.request_address("m", ipv6=True)
    assert ipam.request_address("m", ipv6=True) == IPv6Address("fd01::ffff:ffff:ffff:ffff")
    with pytest.raises(IPAMError, match=r"no available IPv6 addresses .*: fd01::/64"):
        ipam.request_address("m", ipv6=True)


# Persistence


def test_state_round_trips_through_json() -> None:
    ipam = Ipam(small_pools())
    ipam.request_pool("a")
    ipam.request_pool("a", subnet="fd00::/64", ip_range="fd00::/120", gateway="fd00::ff")
    ipam.request_pool("b", subnet="192.168.9.0/24", aux_addresses={"x": "192.168.9.200"})
    for _ in range(3):
        ipam.request_address("a")
        ipam.request_address("a", ipv6=True)
        ipam.request_address("b")
    ipam.release_address("a", "10.0.0.3")
    ipam.request_address("b", "192.168.9.77")
    data = json.loads(json.dumps(ipam.to_dict()))
    restored = Ipam.from_dict(data, small_pools())
    assert restored.to_dict() == ipam.to_dict()
    assert restored.allocations() == ipam.allocations()
    for network in "ab":
        assert restored.addresses_in_use(network) == ipam.addresses_in_use(network)
    assert restored.request_address("a") == ipam.request_address("a") == IPv4Address("10.0.0.5")
    assert restored.request_pool("c").subnet == ipam.request_pool("c").subnet


@pytest.mark.parametrize(
    "data",
    [{}, {"version": 2, "networks": []}, {"version": 1, "networks": [{"subnet": "x"}]}],
)
def test_bad_state(data: dict[str, object]) -> None:
    with pytest.raises(IPAMError, match="invalid IPAM state"):
        Ipam.from_dict(data)


# Properties

subnet_requests = st.lists(
    st.tuples(
        st.sampled_from(["request", "explicit", "release"]),
        st.integers(0, 7),  # network id
        st.integers(0, 255),  # explicit subnet: third octet
        st.integers(22, 28),  # explicit subnet: prefix length
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(subnet_requests, st.lists(st.integers(0, 255), max_size=4))
def test_allocated_subnets_never_overlap(
    ops: list[tuple[str, int, int, int]], routes: list[int]
) -> None:
    pools = [Pool(v4("10.0.0.0/20"), 24), Pool(v4("10.0.0.0/16"), 22)]
    avoid = [v4(f"10.0.{r}.0/24") for r in routes]
    ipam = Ipam(pools)
    for op, n, octet, prefix in ops:
        try:
            if op == "request":
                got = ipam.request_pool(f"n{n}", avoid=avoid)
                assert not any(got.subnet.overlaps(a) for a in avoid)
            elif op == "explicit":
                subnet = ip_network(f"10.0.{octet}.0/{prefix}", strict=False)
                ipam.request_pool(f"n{n}", subnet=subnet)
            else:
                ipam.release_pool(f"n{n}")
        except IPAMError:
            pass
        subnets = [a.subnet for a in ipam.allocations()]
        for i, a in enumerate(subnets):
            assert not any(a.overlaps(b) for b in subnets[i + 1 :])


@st.composite
def address_networks(draw: st.DrawFn) -> dict[str, object]:
    prefix = draw(st.integers(24, 30))
    subnet = IPv4Network(("10.7.0.0", prefix))
    hosts = list(subnet.hosts())
    kwargs: dict[str, object] = {"subnet": subnet}
    if draw(st.booleans()):
        kwargs["ip_range"] = IPv4Network(("10.7.0.0", draw(st.integers(prefix, 30))))
    if draw(st.booleans()):
        kwargs["gateway"] = draw(st.sampled_from(hosts))
    gateway = kwargs.get("gateway", hosts[0])
    others = [h for h in hosts if h != gateway]
    aux = draw(st.lists(st.sampled_from(others), unique=True, max_size=3)) if others else []
    kwargs["aux_addresses"] = {f"aux{i}": str(a) for i, a in enumerate(aux)}
    return kwargs


@settings(max_examples=150, deadline=None)
@given(address_networks(), st.data())
def test_addresses_are_unique_and_never_reserved(
    kwargs: dict[str, object], data: st.DataObject
) -> None:
    ipam = Ipam()
    net = ipam.request_pool("n", **kwargs)  # type: ignore[arg-type]
    reserved = {
        net.subnet.network_address,
        net.subnet.broadcast_address,
        net.gateway,
        *net.aux_addresses.values(),
    }
    expected = {a for a in net.range if a not in reserved}
    got = []
    while True:
        try:
            got.append(ipam.request_address("n"))
        except IPAMError as e:
            assert "no available IPv4 addresses" in str(e)
            break
    assert len(got) == len(set(got)) and set(got) == expected

    released = data.draw(st.lists(st.sampled_from(got), unique=True)) if got else []
    for address in released:
        ipam.release_address("n", address)
    again = [ipam.request_address("n") for _ in released]
    assert sorted(again) == sorted(released)
    with pytest.raises(IPAMError, match="no available"):
        ipam.request_address("n")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 13)), max_size=60))
def test_state_round_trip_keeps_allocating_the_same(ops: list[tuple[bool, int]]) -> None:
    ipam = Ipam()
    ipam.request_pool("n", subnet="10.0.0.0/28")
    for request, host in ops:
        if request:
            try:
                ipam.request_address("n")
            except IPAMError:
                pass
        else:
            ipam.release_address("n", ip_address(f"10.0.0.{host + 1}"))
    restored = Ipam.from_dict(json.loads(json.dumps(ipam.to_dict())))
    assert restored.to_dict() == ipam.to_dict()
    for _ in range(3):
        try:
            mine = ipam.request_address("n")
        except IPAMError:
            with pytest.raises(IPAMError):
                restored.request_address("n")
        else:
            assert restored.request_address("n") == mine
