"""Namespace files, bridges and veth pairs for real, inside test hosts.

Nothing here touches the root network namespace: links live in a `testhost`
namespace, and containers' namespaces are files under the test's tmp_path,
removed (unmounted and unlinked) afterwards, also on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.network import links, netns
from agent.network.base import NetworkError
from agent.runtime.linux import libc
from agent.runtime.linux.flags import MNT_DETACH, MS_BIND, MS_SHARED
from tests.conftest import TestHost

pytestmark = [pytest.mark.root, pytest.mark.netns]

BRIDGE = "br-ot0"
SUBNET = "172.29.0.{}/16"
GATEWAY = "172.29.0.1"
ALIAS = "orchestr:net-test"

NamespaceFactory = Callable[[str], str]


def _ping() -> list[str]:
    return ["ping"] if shutil.which("ping") else ["busybox", "ping"]


def nsrun(path: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={path}", *cmd], capture_output=True, text=True)


def ping(path: str, address: str) -> bool:
    return nsrun(path, *_ping(), "-c1", "-W1", address).returncode == 0


def link_names(path: str) -> set[str]:
    out = nsrun(path, "ip", "-o", "link", "show").stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def sysctl(path: str, key: str) -> str:
    return nsrun(path, "sysctl", "-n", key).stdout.strip()


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    links.close_all()


@pytest.fixture
def container_ns(tmp_path: Path) -> Iterator[NamespaceFactory]:
    made: list[str] = []

    def make(name: str) -> str:
        path = str(tmp_path / name)
        made.append(path)
        netns.create(path)
        return path

    try:
        yield make
    finally:
        for path in made:
            netns.remove(path)


@pytest.fixture
def bridge(testhost: TestHost) -> str:
    links.ensure_bridge(BRIDGE, [SUBNET.format(1)], alias=ALIAS, node=testhost.path)
    return BRIDGE


# -- namespace files ------------------------------------------------------------------


def test_netns_create_makes_a_new_namespace_and_remove_leaves_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "ns")
    netns.create(path)
    try:
        assert mounted(path)
        assert netns.inode(path) != netns.inode()
        assert netns.inode(path) != os.stat("/proc/self/ns/net").st_ino
        assert "state UNKNOWN" in nsrun(path, "ip", "link", "show", "lo").stdout
        assert netns.run_in(path, netns.inode) == netns.inode(path)
        assert netns.inode() == os.stat("/proc/self/ns/net").st_ino  # this thread stayed
    finally:
        netns.remove(path)
    assert not mounted(path)
    assert not os.path.exists(path)
    netns.remove(path)  # idempotent


def test_netns_create_refuses_an_existing_file_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.write_text("mine")
    with pytest.raises(NetworkError, match="taken: File exists"):
        netns.create(str(path))
    assert path.read_text() == "mine"
    assert not mounted(str(path))


def test_netns_run_in_names_what_is_not_a_namespace(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(NetworkError, match="not a network namespace"):
        netns.run_in(str(plain), lambda: None)
    with pytest.raises(NetworkError, match="No such file"):
        netns.run_in(str(tmp_path / "missing"), lambda: None)


def test_threads_unshare_their_own_namespace(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    netns.create(a)
    try:
        netns.create(b)
        try:
            assert len({netns.inode(a), netns.inode(b), netns.inode()}) == 3
            seen: list[int] = []
            t = threading.Thread(target=lambda: seen.append(netns.inode()))
            t.start()
            t.join()
            assert seen == [netns.inode()]  # other threads were never moved
        finally:
            netns.remove(b)
    finally:
        netns.remove(a)


def test_netns_files_under_a_shared_mount(tmp_path: Path) -> None:
    shared = str(tmp_path / "shared")
    os.mkdir(shared)
    libc.mount(shared, shared, None, MS_BIND)
    try:
        libc.mount(None, shared, None, MS_SHARED)
        path = os.path.join(shared, "ns")
        netns.create(path)
        try:
            assert mounted(path)
            assert netns.inode(path) != netns.inode()
        finally:
            netns.remove(path)
        assert not mounted(path)
    finally:
        libc.umount2(shared, MNT_DETACH)
    assert not mounted(shared)


def test_prepare_dir_makes_a_private_mount(tmp_path: Path) -> None:
    directory = str(tmp_path / "netns")
    netns.prepare_dir(directory)
    try:
        netns.prepare_dir(directory)  # idempotent: one mount, still private
        with open("/proc/self/mountinfo") as f:
            entries = [line.split() for line in f if line.split()[4] == directory]
        assert len(entries) == 1
        assert not any(field.startswith("shared:") for field in entries[0][6:])
        path = os.path.join(directory, "ns")
        netns.create(path)
        netns.remove(path)
        assert not mounted(path)
    finally:
        netns.release_dir(directory)
    assert not mounted(directory)
    netns.release_dir(directory)


# -- bridges -----------------------------------------------------------------------


def test_ensure_bridge_is_marked_up_addressed_and_idempotent(testhost: TestHost) -> None:
    node = testhost.path
    links.ensure_bridge(BRIDGE, [SUBNET.format(1), "fd00:29::1/64"], alias=ALIAS, node=node)
    links.ensure_bridge(BRIDGE, [SUBNET.format(1), "fd00:29::1/64"], alias=ALIAS, node=node)
    shown = testhost.run("ip", "-d", "addr", "show", BRIDGE).stdout
    assert "UP" in shown.split(">")[0]
    assert shown.count("172.29.0.1/16") == 1
    assert "fd00:29::1/64" in shown
    assert f"alias {ALIAS}" in testhost.run("ip", "-d", "link", "show", BRIDGE).stdout
    assert sysctl(node, f"net.ipv4.conf.{BRIDGE}.route_localnet") == "1"
    assert links.owned_links(node=node) == [(BRIDGE, ALIAS)]
    assert links.link_exists(BRIDGE, node=node)
    assert not links.link_exists(BRIDGE)  # not in the test's own namespace

    links.ensure_bridge(BRIDGE, ["172.30.0.1/16"], mtu=1400, alias=ALIAS, node=node)
    shown = testhost.run("ip", "addr", "show", BRIDGE).stdout
    assert "172.30.0.1/16" in shown and "172.29.0.1" not in shown and "fd00:29" not in shown
    assert "mtu 1400" in shown

    links.delete_link(BRIDGE, node=node)
    links.delete_link(BRIDGE, node=node)
    assert BRIDGE not in link_names(node)
    assert links.owned_links(node=node) == []


def test_ensure_bridge_leaves_other_owners_links_alone(testhost: TestHost) -> None:
    node = testhost.path
    testhost.run("ip", "link", "add", "br-theirs", "type", "bridge", check=True)
    with pytest.raises(NetworkError, match=r"br-theirs .* is not orchestr's"):
        links.ensure_bridge("br-theirs", [SUBNET.format(1)], alias=ALIAS, node=node)
    testhost.run("ip", "link", "add", "v-theirs", "type", "veth", "peer", "v-peer", check=True)
    with pytest.raises(NetworkError, match=r"v-theirs .* is a veth link, not a bridge"):
        links.ensure_bridge("v-theirs", [SUBNET.format(1)], alias=ALIAS, node=node)
    links.ensure_bridge(BRIDGE, [SUBNET.format(1)], alias=ALIAS, node=node)
    with pytest.raises(NetworkError, match="belongs to 'orchestr:net-test'"):
        links.ensure_bridge(BRIDGE, ["10.1.0.1/16"], alias="orchestr:other", node=node)
    assert links.owned_links(node=node) == [(BRIDGE, ALIAS)]
    assert links.owned_links("orchestr:other", node=node) == []
    assert {"br-theirs", "v-theirs", "v-peer", BRIDGE} <= link_names(node)


def test_set_sysctl_writes_in_the_given_namespace(testhost: TestHost) -> None:
    root_value = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    links.set_sysctl("net.ipv4.ip_forward", 1, node=testhost.path)
    assert sysctl(testhost.path, "net.ipv4.ip_forward") == "1"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == root_value
    links.set_sysctl("net/ipv4/conf/lo/route_localnet", "1", node=testhost.path)
    assert sysctl(testhost.path, "net.ipv4.conf.lo.route_localnet") == "1"
    with pytest.raises(NetworkError, match=r"nosuch.*No such file"):
        links.set_sysctl("net.ipv4.nosuch", 1, node=testhost.path)


# -- containers ---------------------------------------------------------------------


def test_two_containers_on_a_bridge_reach_each_other_and_the_gateway(
    testhost: TestHost, bridge: str, container_ns: NamespaceFactory
) -> None:
    node = testhost.path
    c1, c2 = container_ns("c1"), container_ns("c2")
    v1 = links.attach(
        bridge, c1, addresses=[SUBNET.format(2)], gateways=[GATEWAY], alias=ALIAS, node=node
    )
    v2 = links.attach(
        bridge, c2, addresses=[SUBNET.format(3)], gateways=[GATEWAY], alias=ALIAS, node=node
    )
    assert v1 != v2 and all(v.startswith("veth") and len(v) == 11 for v in (v1, v2))
    assert ping(c1, "172.29.0.3")
    assert ping(c2, "172.29.0.2")
    assert ping(c1, GATEWAY)

    eth0 = nsrun(c1, "ip", "-d", "addr", "show", "eth0").stdout
    assert links.mac_for("172.29.0.2") == "02:42:ac:1d:00:02"
    assert "02:42:ac:1d:00:02" in eth0 and "172.29.0.2/16" in eth0
    assert f"default via {GATEWAY} dev eth0" in nsrun(c1, "ip", "route").stdout
    port = testhost.run("ip", "-d", "link", "show", v1).stdout
    assert f"master {bridge}" in port and "hairpin on" in port and "state UP" in port
    assert links.owned_links(node=node) == sorted([(bridge, ALIAS), (v1, ALIAS), (v2, ALIAS)])

    links.detach(v1, node=node)
    links.detach(v1, node=node)
    assert v1 not in link_names(node)
    assert link_names(c1) == {"lo"}
    assert not ping(c2, "172.29.0.2")
    links.detach(v2, node=node)
    links.delete_link(bridge, node=node)
    assert link_names(node) == {"lo"}


def test_attach_with_ipv6_and_a_chosen_name_and_mac(
    testhost: TestHost, container_ns: NamespaceFactory
) -> None:
    node = testhost.path
    links.ensure_bridge(BRIDGE, [SUBNET.format(1), "fd00:29::1/64"], alias=ALIAS, node=node)
    c1, c2 = container_ns("c1"), container_ns("c2")
    links.attach(BRIDGE, c2, addresses=["fd00:29::3/64"], gateways=["fd00:29::1"], node=node)
    host = links.attach(
        BRIDGE,
        c1,
        ifname="net1",
        addresses=[SUBNET.format(2), "fd00:29::2/64"],
        gateways=[GATEWAY, "fd00:29::1"],
        mtu=1400,
        mac="02:00:00:00:00:aa",
        host_ifname="vethmine",
        node=node,
    )
    assert host == "vethmine"
    shown = nsrun(c1, "ip", "addr", "show", "net1").stdout
    assert "02:00:00:00:00:aa" in shown and "mtu 1400" in shown and "fd00:29::2/64" in shown
    assert "default via fd00:29::1 dev net1" in nsrun(c1, "ip", "-6", "route").stdout
    assert ping(c1, "fd00:29::3")
    assert ping(c1, "fd00:29::1")


def test_a_failed_attach_leaves_nothing_behind(
    testhost: TestHost, bridge: str, container_ns: NamespaceFactory, tmp_path: Path
) -> None:
    node = testhost.path
    c1 = container_ns("c1")
    before = link_names(node)

    # An address outside the bridge's subnet: the gateway is unreachable, so the
    # default route fails after the pair was made.
    with pytest.raises(NetworkError, match=f"default route via {GATEWAY}.*unreachable"):
        links.attach(bridge, c1, addresses=["10.99.0.2/24"], gateways=[GATEWAY], node=node)
    assert link_names(node) == before
    assert link_names(c1) == {"lo"}

    links.attach(bridge, c1, addresses=[SUBNET.format(2)], node=node)
    held = link_names(node)
    with pytest.raises(NetworkError, match=f"eth0 already exists in network namespace {c1}"):
        links.attach(bridge, c1, addresses=[SUBNET.format(4)], node=node)
    taken = sorted(held - before)[0]
    with pytest.raises(NetworkError, match=f"link {taken} already exists"):
        links.attach(bridge, c1, ifname="eth1", host_ifname=taken, node=node)
    assert link_names(node) == held
    assert link_names(c1) == {"lo", "eth0"}

    with pytest.raises(NetworkError, match="no bridge br-none"):
        links.attach("br-none", c1, ifname="eth1", node=node)
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(NetworkError, match="not a network namespace"):
        links.attach(bridge, str(plain), node=node)
    with pytest.raises(NetworkError, match="no prefix length"):
        links.attach(bridge, c1, ifname="eth1", addresses=["172.29.0.9"], node=node)
    assert link_names(node) == held
    assert link_names(c1) == {"lo", "eth0"}


def test_no_descriptor_leaks(
    testhost: TestHost, bridge: str, container_ns: NamespaceFactory
) -> None:
    node = testhost.path
    links.close_all()
    baseline = len(os.listdir("/proc/self/fd"))
    c1 = container_ns("c1")
    for _ in range(5):
        host = links.attach(bridge, c1, addresses=[SUBNET.format(2)], node=node)
        links.detach(host, node=node)
        with pytest.raises(NetworkError):
            links.attach(bridge, c1, addresses=["10.9.0.2/24"], gateways=[GATEWAY], node=node)
    busy = len(os.listdir("/proc/self/fd"))
    links.close(node)
    links.close(node)
    assert len(os.listdir("/proc/self/fd")) == baseline
    assert busy - baseline <= 6  # the node's cached socket (+ its event loop), nothing more


def test_costs(testhost: TestHost, container_ns: NamespaceFactory, tmp_path: Path) -> None:
    """Timings for the report (printed, never asserted): run with -s to see them."""
    node = testhost.path
    n = 20
    costs: dict[str, float] = {}

    def timed(label: str, fn: Callable[[int], object]) -> None:
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        costs[label] = (time.perf_counter() - start) / n * 1000

    links.ensure_bridge(BRIDGE, [SUBNET.format(1)], alias=ALIAS, node=node)
    timed(
        "ensure_bridge (exists)",
        lambda i: links.ensure_bridge(BRIDGE, [SUBNET.format(1)], alias=ALIAS, node=node),
    )
    timed(
        "ensure_bridge (new)",
        lambda i: links.ensure_bridge(f"br-ot{i + 1}", [f"10.{i}.0.1/24"], node=node),
    )
    paths = [str(tmp_path / f"n{i}") for i in range(n)]
    timed("netns.create", lambda i: netns.create(paths[i]))
    hosts: list[str] = []
    timed(
        "attach",
        lambda i: hosts.append(
            links.attach(
                BRIDGE,
                paths[i],
                addresses=[SUBNET.format(i + 2)],
                gateways=[GATEWAY],
                node=node,
            )
        ),
    )
    timed("detach", lambda i: links.detach(hosts[i], node=node))
    timed("netns.remove", lambda i: netns.remove(paths[i]))
    c1 = container_ns("c1")
    links.close_all()
    start = time.perf_counter()
    host = links.attach(BRIDGE, c1, addresses=[SUBNET.format(2)], node=node)
    costs["attach (cold node socket)"] = (time.perf_counter() - start) * 1000
    links.detach(host, node=node)
    print()
    for label, ms in costs.items():
        print(f"  {label:28} {ms:6.2f} ms")
