"""nftables rules of bridge networks, applied to a kernel inside throwaway namespaces.

One test host (a network namespace, "ot-…") per module stands for the node. Inside it:
bridge br-t1 10.231.1.1/24 with fake containers c1 (10.231.1.2, a TCP server on :80)
and c2 (10.231.1.3); bridge br-t2 10.231.2.1/24 with c3 (10.231.2.2); and a veth to a
"client" namespace that gives the node the address 10.232.0.1 (client: 10.232.0.2).
Every fake container and the client is a namespace of its own ("ot-…"). The server
answers each connection with the address it saw the connection come from, so the tests
can tell where masquerading happened. Nothing is made in the root network namespace;
all namespaces go away at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from agent.network import nft
from agent.network.ports import PortError, PortMapping, reserve
from tests.conftest import NETNS_PREFIX, TestHost

pytestmark = [pytest.mark.root, pytest.mark.netns]

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80))
s.listen(16)
print("ready", flush=True)
while True:
    conn, peer = s.accept()
    conn.sendall(("%s from %s" % (sys.argv[1], peer[0])).encode())
    conn.close()
"""

CLIENT = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print(s.recv(100).decode())
except OSError as e:
    print("error:", e)
"""

BRIDGES = [
    nft.BridgeRules("br-t1", ("10.231.1.0/24",), masquerade=True),
    nft.BridgeRules("br-t2", ("10.231.2.0/24",), masquerade=True),
]
PUBLISH = nft.PortRule(None, 8080, "tcp", "10.231.1.2", 80, "br-t1")


def sh(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr}"


def add_netns(stack: contextlib.ExitStack) -> TestHost:
    name = NETNS_PREFIX + uuid.uuid4().hex[:10]
    sh("ip", "netns", "add", name)
    stack.callback(subprocess.run, ["ip", "netns", "delete", name], check=False)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    return TestHost(name)


@dataclass
class Topology:
    node: TestHost
    c1: TestHost
    c2: TestHost
    c3: TestHost
    client: TestHost

    def connect(self, src: TestHost, ip: str, port: int, timeout: float = 2.0) -> str:
        done = src.run(sys.executable, "-I", "-S", "-c", CLIENT, ip, str(port), str(timeout))
        return done.stdout.strip()

    def apply(self, bridges: list[nft.BridgeRules], ports: list[nft.PortRule]) -> None:
        nft.apply(nft.ruleset(bridges, ports), netns=self.node.path)


def plug(node: TestHost, bridge: str, ns: TestHost, host_side: str, cidr: str, gw: str) -> None:
    """A fake container: a veth from the node's bridge into `ns`, default route via gw."""
    sh("ip", "-n", node.name, "link", "add", host_side, "type", "veth",
       "peer", "name", "eth0", "netns", ns.name)  # fmt: skip
    sh("ip", "-n", node.name, "link", "set", host_side, "master", bridge, "up")
    sh("ip", "-n", ns.name, "addr", "add", cidr, "dev", "eth0")
    sh("ip", "-n", ns.name, "link", "set", "eth0", "up")
    sh("ip", "-n", ns.name, "route", "add", "default", "via", gw)


def sysctl(host: TestHost, key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    done = host.run("sh", "-c", f"echo {value} > {path}")
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with contextlib.ExitStack() as stack:
        node, c1, c2, c3, client = (add_netns(stack) for _ in range(5))
        n = node.name
        for br, cidr in (("br-t1", "10.231.1.1/24"), ("br-t2", "10.231.2.1/24")):
            sh("ip", "-n", n, "link", "add", br, "type", "bridge")
            sh("ip", "-n", n, "addr", "add", cidr, "dev", br)
            sh("ip", "-n", n, "link", "set", br, "up")
        plug(node, "br-t1", c1, "vc1", "10.231.1.2/24", "10.231.1.1")
        plug(node, "br-t1", c2, "vc2", "10.231.1.3/24", "10.231.1.1")
        plug(node, "br-t2", c3, "vc3", "10.231.2.2/24", "10.231.2.1")
        sh("ip", "-n", n, "link", "add", "vcl", "type", "veth",
           "peer", "name", "eth0", "netns", client.name)  # fmt: skip
        sh("ip", "-n", n, "addr", "add", "10.232.0.1/24", "dev", "vcl")
        sh("ip", "-n", n, "link", "set", "vcl", "up")
        sh("ip", "-n", client.name, "addr", "add", "10.232.0.2/24", "dev", "eth0")
        sh("ip", "-n", client.name, "link", "set", "eth0", "up")
        sysctl(node, "net.ipv4.ip_forward", "1")
        sysctl(node, "net.ipv4.conf.br-t1.route_localnet", "1")

        stack.callback(nft.remove, netns=node.path)
        server = subprocess.Popen(
            ["nsenter", f"--net={c1.path}", sys.executable, "-I", "-S", "-c", SERVER, "c1"],
            stdout=subprocess.PIPE,
            text=True,
        )

        def stop() -> None:
            server.kill()
            server.wait()
            assert server.stdout is not None
            server.stdout.close()

        stack.callback(stop)
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        yield Topology(node, c1, c2, c3, client)


def test_published_port_from_the_node_itself(topo: Topology) -> None:
    topo.apply(BRIDGES, [PUBLISH])
    assert topo.connect(topo.node, "127.0.0.1", 8080) == "c1 from 10.231.1.1"
    assert topo.connect(topo.node, "10.232.0.1", 8080) == "c1 from 10.232.0.1"


def test_published_port_from_another_machine_keeps_the_source(topo: Topology) -> None:
    topo.apply(BRIDGES, [PUBLISH])
    assert topo.connect(topo.client, "10.232.0.1", 8080) == "c1 from 10.232.0.2"


def test_published_port_on_one_address_only(topo: Topology) -> None:
    topo.apply(BRIDGES, [nft.PortRule("127.0.0.1", 8080, "tcp", "10.231.1.2", 80, "br-t1")])
    assert topo.connect(topo.node, "127.0.0.1", 8080) == "c1 from 10.231.1.1"
    assert topo.connect(topo.client, "10.232.0.1", 8080).startswith("error:")


def test_hairpin_to_another_container_of_the_bridge(topo: Topology) -> None:
    topo.apply(BRIDGES, [PUBLISH])
    assert topo.connect(topo.c2, "10.232.0.1", 8080) == "c1 from 10.231.1.1"


@pytest.mark.xfail(
    strict=True,
    reason="without br_netfilter the kernel drops a routed packet whose source is its "
    "DNATed destination, between prerouting and forward (seen on 6.18)",
)
def test_hairpin_to_itself(topo: Topology) -> None:
    topo.apply(BRIDGES, [PUBLISH])
    assert topo.connect(topo.c1, "10.232.0.1", 8080, timeout=0.5) == "c1 from 10.231.1.1"


def test_isolation_between_bridges(topo: Topology) -> None:
    nft.remove(netns=topo.node.path)
    assert topo.connect(topo.c3, "10.231.1.2", 80) == "c1 from 10.231.2.2"  # routed: works

    topo.apply(BRIDGES, [PUBLISH])
    assert topo.connect(topo.c3, "10.231.1.2", 80, timeout=0.5).startswith("error:")
    assert topo.connect(topo.c2, "10.231.1.2", 80) == "c1 from 10.231.1.3"  # same bridge
    # A published port is public: other networks reach it through a node address
    # (masqueraded on the way, as traffic from br-t2 leaving through another interface).
    assert topo.connect(topo.c3, "10.232.0.1", 8080) == "c1 from 10.231.1.1"


def test_internal_bridge_forwards_nothing_in_or_out(topo: Topology) -> None:
    refused = "error: [Errno 111] Connection refused"  # reached: nothing listens there
    topo.apply(BRIDGES, [])
    assert topo.connect(topo.c3, "10.232.0.2", 9) == refused
    internal = [BRIDGES[0], nft.BridgeRules("br-t2", ("10.231.2.0/24",), internal=True)]
    topo.apply(internal, [PUBLISH])
    assert topo.connect(topo.c3, "10.232.0.2", 9, timeout=0.5) == "error: timed out"
    assert topo.connect(topo.c3, "10.231.1.2", 80, timeout=0.5) == "error: timed out"
    assert topo.connect(topo.c3, "10.231.2.1", 9) == refused  # the node itself answers


def test_remove_leaves_no_table(topo: Topology) -> None:
    topo.apply(BRIDGES, [PUBLISH])
    assert "orchestr" in topo.node.run("nft", "list", "tables").stdout
    nft.remove(netns=topo.node.path)
    nft.remove(netns=topo.node.path)  # idempotent
    assert "orchestr" not in topo.node.run("nft", "list", "tables").stdout
    assert topo.connect(topo.node, "127.0.0.1", 8080).startswith("error:")


def test_kernel_accepts_every_kind_of_rule(testhost: TestHost) -> None:
    bridges = [
        nft.BridgeRules("br-a", ("10.231.1.0/24", "fd00:231::/64")),
        nft.BridgeRules("br-b", ("10.231.2.0/24",), masquerade=False),
        nft.BridgeRules("br-c", ("fd00:232::/64",), internal=True),
    ]
    ports = [
        nft.PortRule(None, 8080, "tcp", "10.231.1.2", 80, "br-a"),
        nft.PortRule("0.0.0.0", 8081, "udp", "10.231.1.2", 53, "br-a"),
        nft.PortRule("127.0.0.1", 8082, "sctp", "10.231.2.2", 9, "br-b"),
        nft.PortRule("::", 8080, "tcp", "fd00:231::2", 80, "br-a"),
        nft.PortRule("::1", 8083, "udp", "fd00:231::2", 80, "br-a"),
    ]
    for script in (nft.ruleset([], []), nft.ruleset(bridges[:1], []), nft.ruleset(bridges, ports)):
        nft.check(script, netns=testhost.path)
    nft.apply(nft.ruleset(bridges, ports, table="orchestr_x"), netns=testhost.path)
    listed = testhost.run("nft", "list", "table", "inet", "orchestr_x").stdout
    assert "dnat ip6 to [fd00:231::2]:80" in listed
    nft.remove("orchestr_x", netns=testhost.path)
    assert "orchestr_x" not in testhost.run("nft", "list", "tables").stdout


def test_nft_errors_carry_nfts_message(testhost: TestHost) -> None:
    with pytest.raises(nft.NftError, match=r"nft refused orchestr's rules: .*Error"):
        nft.apply("table inet orchestr { chain c { nonsense } }\n", netns=testhost.path)


def test_reserve_refuses_a_port_another_process_listens_on() -> None:
    # A socket on the loopback of the namespace pytest runs in: no link, address or rule.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        with pytest.raises(PortError, match=f"^Bind for 127.0.0.1:{port} failed: port is"):
            reserve(PortMapping("127.0.0.1", port, 80, "tcp"))
        with pytest.raises(PortError, match=f"^Bind for 0.0.0.0:{port} failed: port is"):
            reserve(PortMapping("0.0.0.0", port, 80, "tcp"))
    held = reserve(PortMapping("127.0.0.1", port, 80, "tcp"))
    try:
        with socket.socket() as late, pytest.raises(OSError):
            late.bind(("127.0.0.1", port))
            late.listen(1)
    finally:
        held.close()
