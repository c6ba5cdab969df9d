"""The nft script of bridge networks and published ports, as text.

That the kernel takes these scripts (and that they forward what they should) is
tests/integration/test_nft_apply.py's job, inside throwaway network namespaces.
"""

from __future__ import annotations

import pytest

from agent.network import nft
from agent.network.nft import BridgeRules, NftError, PortRule, ruleset

pytestmark = pytest.mark.unit

T1 = BridgeRules("br-t1", ("10.231.1.0/24",))
T2 = BridgeRules("br-t2", ("10.231.2.0/24",))
WEB = PortRule(None, 8080, "tcp", "10.231.1.2", 80, "br-t1")


def chain(script: str, name: str) -> list[str]:
    """The rules of one chain (hook line included), stripped."""
    lines = script.splitlines()
    start = lines.index(f"\tchain {name} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_script_replaces_the_table_atomically() -> None:
    script = ruleset([T1], [WEB])
    assert script.splitlines()[:3] == [
        "table inet orchestr {}",
        "delete table inet orchestr",
        "table inet orchestr {",
    ]
    assert script.endswith("}\n")
    other = ruleset([T1], [WEB], table="orchestr_test")
    assert other.startswith("table inet orchestr_test {}\ndelete table inet orchestr_test\n")


def test_published_ports_dnat_for_local_destinations() -> None:
    script = ruleset([T1], [WEB, PortRule("127.0.0.1", 5353, "udp", "10.231.1.2", 53, "br-t1")])
    assert chain(script, "prerouting") == [
        "type nat hook prerouting priority dstnat; policy accept;",
        "jump services",
        "fib daddr type local jump published",
    ]
    assert chain(script, "output") == [
        "type nat hook output priority -100; policy accept;",
        "fib daddr type local jump published",
    ]
    assert chain(script, "published") == [
        "meta nfproto ipv4 tcp dport 8080 dnat ip to 10.231.1.2:80",
        "ip daddr 127.0.0.1 udp dport 5353 dnat ip to 10.231.1.2:53",
    ]


def test_ipv6_and_sctp_ports() -> None:
    br = BridgeRules("br-t1", ("10.231.1.0/24", "fd00:231::/64"))
    ports = [
        PortRule("::", 8080, "tcp", "fd00:231::2", 80, "br-t1"),
        PortRule("::1", 8081, "sctp", "fd00:231::2", 9, "br-t1"),
        PortRule("0.0.0.0", 8080, "tcp", "10.231.1.2", 80, "br-t1"),
        PortRule("0.0.0.0", 8080, "tcp", "10.231.1.2", 80, "br-t1"),  # once only
    ]
    assert chain(ruleset([br], ports), "published") == [
        "meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd00:231::2]:80",
        "ip6 daddr ::1 sctp dport 8081 dnat ip6 to [fd00:231::2]:9",
        "meta nfproto ipv4 tcp dport 8080 dnat ip to 10.231.1.2:80",
    ]


def test_postrouting_loopback_hairpin_and_masquerade() -> None:
    br = BridgeRules("br-t1", ("10.231.1.0/24", "fd00:231::/64"), masquerade=True)
    assert chain(ruleset([br], []), "postrouting") == [
        "type nat hook postrouting priority srcnat; policy accept;",
        'oifname "br-t1" ip saddr 127.0.0.0/8 masquerade',
        'oifname "br-t1" ip saddr 10.231.1.0/24 ct status dnat masquerade',
        'oifname "br-t1" ip6 saddr fd00:231::/64 ct status dnat masquerade',
        'oifname != "br-t1" ip saddr 10.231.1.0/24 masquerade',
        'oifname != "br-t1" ip6 saddr fd00:231::/64 masquerade',
    ]


def test_no_masquerade_keeps_loopback_and_hairpin() -> None:
    br = BridgeRules("br-t1", ("10.231.1.7/24",), masquerade=False)  # host bits dropped
    assert chain(ruleset([br], []), "postrouting")[1:] == [
        'oifname "br-t1" ip saddr 127.0.0.0/8 masquerade',
        'oifname "br-t1" ip saddr 10.231.1.0/24 ct status dnat masquerade',
    ]


def test_ipv6_only_bridge_has_no_loopback_rule() -> None:
    br = BridgeRules("br-6", ("fd00:1::/64",), masquerade=False)
    assert chain(ruleset([br], []), "postrouting")[1:] == [
        'oifname "br-6" ip6 saddr fd00:1::/64 ct status dnat masquerade',
    ]


def test_forward_with_one_bridge() -> None:
    assert chain(ruleset([T1], [WEB]), "forward") == [
        "type filter hook forward priority filter; policy accept;",
        "ct state established,related accept",
    ]


def test_forward_isolates_bridges_but_lets_published_ports_through() -> None:
    t3 = BridgeRules("br-t3", ("10.231.3.0/24",))
    assert chain(ruleset([T1, T2, t3], []), "forward")[1:] == [
        "ct state established,related accept",
        'iifname "br-t1" oifname "br-t1" accept',
        'iifname "br-t2" oifname "br-t2" accept',
        'iifname "br-t3" oifname "br-t3" accept',
        "ct status dnat accept",
        'iifname "br-t1" oifname { "br-t2", "br-t3" } drop',
        'iifname "br-t2" oifname { "br-t1", "br-t3" } drop',
        'iifname "br-t3" oifname { "br-t1", "br-t2" } drop',
    ]


def test_internal_bridge() -> None:
    internal = BridgeRules("br-i", ("10.231.9.0/24",), masquerade=True, internal=True)
    port = PortRule(None, 9090, "tcp", "10.231.9.2", 80, "br-i")
    script = ruleset([T1, internal], [WEB, port])
    forward = chain(script, "forward")
    assert forward[1:4] == [
        "ct state established,related accept",
        'iifname "br-i" oifname != "br-i" drop',
        'oifname "br-i" iifname != "br-i" drop',
    ]
    assert "br-i" not in " ".join(chain(script, "postrouting"))  # no NAT in or out
    assert chain(script, "published") == [  # ports on internal networks are not published
        "meta nfproto ipv4 tcp dport 8080 dnat ip to 10.231.1.2:80"
    ]


def test_service_vips_balance_over_their_tasks() -> None:
    vips = [
        nft.VipRule("10.231.1.200", ("10.231.1.2", "10.231.1.3", "10.231.1.4")),
        nft.VipRule("10.231.1.201", ("10.231.1.9",)),
        nft.VipRule("10.231.1.202", ()),  # no task running: the node refuses
    ]
    assert chain(ruleset([T1], [], vips), "services") == [
        "ip daddr 10.231.1.200 dnat ip to numgen random mod 3 map"
        " { 0 : 10.231.1.2, 1 : 10.231.1.3, 2 : 10.231.1.4 }",
        "ip daddr 10.231.1.201 dnat ip to 10.231.1.9",
    ]
    with pytest.raises(NftError, match="virtual IP nope"):
        ruleset([T1], [], [nft.VipRule("nope", ())])


def test_empty_ruleset_still_has_every_chain() -> None:
    script = ruleset([], [])
    for name in ("published", "services", "prerouting", "output", "postrouting", "forward"):
        assert chain(script, name) is not None
    assert chain(script, "published") == []


@pytest.mark.parametrize(
    ("bridges", "ports", "message"),
    [
        ([T1], [PortRule(None, 80, "tcp", "10.231.1.2", 80, "br-x")], "unknown bridge br-x"),
        ([T1], [PortRule(None, 80, "icmp", "10.231.1.2", 80, "br-t1")], "invalid proto: icmp"),
        ([T1], [PortRule(None, 0, "tcp", "10.231.1.2", 80, "br-t1")], "invalid port: 0"),
        ([T1], [PortRule(None, 80, "tcp", "10.231.1.2", 65536, "br-t1")], "invalid port: 65536"),
        ([T1], [PortRule(None, 80, "tcp", "nope", 80, "br-t1")], "does not appear to be an IP"),
        (
            [T1],
            [PortRule("::1", 80, "tcp", "10.231.1.2", 80, "br-t1")],
            "different IP versions",
        ),
        ([BridgeRules('br"; flush ruleset', ())], [], "invalid interface name"),
        ([BridgeRules("br-t1", ("10.0.0.0/33",))], [], "bridge br-t1: "),
        ([T1, T1], [], "a bridge is listed twice"),
    ],
)
def test_bad_input_is_refused(
    bridges: list[BridgeRules], ports: list[PortRule], message: str
) -> None:
    with pytest.raises(NftError, match=message):
        ruleset(bridges, ports)


def test_table_names_are_checked() -> None:
    with pytest.raises(NftError, match="invalid nftables table name"):
        ruleset([], [], table="x; flush ruleset")
    with pytest.raises(NftError, match="invalid nftables table name"):
        nft.remove("no such")


def test_missing_nft_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(NftError) as e:
        nft.apply(ruleset([], []))
    assert str(e.value) == "nftables (the nft command) is needed for bridge networks"


def test_nft_error_is_a_network_error() -> None:
    from agent.network.base import NetworkError

    assert issubclass(NftError, NetworkError)
