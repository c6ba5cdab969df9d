"""The pure parts of agent.network.links: names, MACs, addresses, sysctl keys."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys

import pytest

from agent.network import links
from agent.network.base import NetworkError


def test_mac_for_follows_docker() -> None:
    assert links.mac_for("172.17.0.2") == "02:42:ac:11:00:02"
    assert links.mac_for("10.0.0.255/8") == "02:42:0a:00:00:ff"
    with pytest.raises(NetworkError, match="no MAC for 'fd00::1'"):
        links.mac_for("fd00::1")


def test_veth_names_look_like_dockers_and_differ() -> None:
    names = {links.veth_name() for _ in range(50)}
    assert len(names) == 50
    assert all(re.fullmatch(r"veth[0-9a-f]{7}", n) for n in names)


@pytest.mark.parametrize("name", ["eth0", "br-0123456789ab", "a"])
def test_valid_interface_names(name: str) -> None:
    assert links.check_ifname(name) == name


@pytest.mark.parametrize("name", ["", "x" * 16, "a/b", "a:b", "a b", ".", ".."])
def test_invalid_interface_names(name: str) -> None:
    with pytest.raises(NetworkError, match="invalid interface name"):
        links.check_ifname(name)


def test_addresses_need_a_prefix_and_parse() -> None:
    assert links.parse_interfaces(["172.18.0.2/16", "fd00::2/64"]) == [
        ipaddress.ip_interface("172.18.0.2/16"),
        ipaddress.ip_interface("fd00::2/64"),
    ]
    with pytest.raises(NetworkError, match="no prefix length"):
        links.parse_interfaces(["172.18.0.2"])
    with pytest.raises(NetworkError, match=r"invalid address '300\.0\.0\.1/8'"):
        links.parse_interfaces(["300.0.0.1/8"])


def test_gateways_one_per_version() -> None:
    assert len(links.parse_gateways(["172.18.0.1", "fd00::1"])) == 2
    with pytest.raises(NetworkError, match="at most one per IP version"):
        links.parse_gateways(["172.18.0.1", "172.18.0.254"])
    with pytest.raises(NetworkError, match="invalid gateway"):
        links.parse_gateways(["gateway"])


def test_mac_format() -> None:
    assert links.check_mac("02:42:AC:11:00:02") == "02:42:ac:11:00:02"
    with pytest.raises(NetworkError, match="invalid MAC"):
        links.check_mac("02:42:ac:11:00")


def test_sysctl_paths() -> None:
    assert links.sysctl_path("net.ipv4.ip_forward") == "/proc/sys/net/ipv4/ip_forward"
    assert (
        links.sysctl_path("net/ipv4/conf/eth0.100/forwarding")
        == "/proc/sys/net/ipv4/conf/eth0.100/forwarding"
    )
    for bad in ("net..ipv4", "net/../../etc", ""):
        with pytest.raises(NetworkError, match="invalid sysctl key"):
            links.sysctl_path(bad)


def test_ownership_marks() -> None:
    assert links.is_owned("orchestr", "orchestr")
    assert links.is_owned("orchestr:net1", "orchestr")
    assert links.is_owned("orchestr:net1:ep", "orchestr:net1")
    assert not links.is_owned("orchestra", "orchestr")
    assert not links.is_owned("orchestr:net10", "orchestr:net1")
    assert not links.is_owned(None, "orchestr")


def test_importing_links_does_not_import_pyroute2() -> None:
    code = "import sys, agent.network.links; assert 'pyroute2' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
