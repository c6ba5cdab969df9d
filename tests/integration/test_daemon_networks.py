"""Node networking through a daemon that runs in a test host (its own network
namespace): bridge networks, names by DNS, isolation, `container:` mode, published
ports, and what is left after removal — with the docker CLI and dig as the judges.

Every link, address and rule lives in the test host; traffic stays inside it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MARKER, Daemon, TestHost, _stop_supervisor, _unmount_under, start_daemon
from tests.integration.test_daemon_images import docker_cli, orchestr

pytestmark = [pytest.mark.root, pytest.mark.netns]

HTTPD = ["busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]
UDP_ANSWER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 69))
s.settimeout(20)
data, peer = s.recvfrom(512)
s.sendto(b"\\x00\\x05\\x00\\x00seen by a1\\x00", peer)
print("got", data[:2].hex(), flush=True)
"""
GET_HOSTNAME = "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {} 80"


@pytest.fixture
def net(state_dir: Path, testhost: TestHost, busybox_rootfs: Path) -> Iterator[Daemon]:
    """A daemon in the test host with busybox imported; its DNS forwards to nothing
    reachable (127.0.0.1 of the test host answers 'port unreachable' at once)."""
    sock_dir = Path(tempfile.mkdtemp(prefix=f"{MARKER}-", dir="/tmp"))
    try:
        with start_daemon(
            state_dir, sock_dir / "d.sock", host=testhost, args=["--dns", "127.0.0.1"]
        ) as d:
            d.testhost = testhost  # type: ignore[attr-defined]
            d.exec_root = sock_dir / "exec"  # type: ignore[attr-defined]
            tar = state_dir / "busybox.tar"
            subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
            docker_cli(d, "import", str(tar), "busybox:latest")
            yield d
    finally:
        _stop_supervisor(state_dir, sock_dir / "exec")
        _unmount_under(state_dir)
        _unmount_under(sock_dir)
        shutil.rmtree(sock_dir, ignore_errors=True)


def host_of(d: Daemon) -> TestHost:
    return d.testhost  # type: ignore[attr-defined, no-any-return]


def links(d: Daemon) -> list[str]:
    out = host_of(d).run("ip", "-o", "link", "show").stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines()]


def inspect(d: Daemon, *refs: str) -> list[dict]:  # type: ignore[type-arg]
    return json.loads(docker_cli(d, "inspect", *refs).stdout)  # type: ignore[no-any-return]


def wait_http(d: Daemon, cmd: list[str], want: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = host_of(d).run(*cmd)
        if want in out.stdout:
            return out.stdout
        assert time.monotonic() < deadline, f"{cmd}: {out.stdout!r} {out.stderr!r}"
        time.sleep(0.1)


def test_containers_on_a_user_network_reach_each_other_by_name(net: Daemon) -> None:
    docker_cli(net, "network", "create", "n1")
    docker_cli(net, "run", "-d", "--network", "n1", "--name", "a1", *HTTPD)
    docker_cli(
        net, "run", "-d", "--network", "n1", "--network-alias", "web", "--name", "a2", *HTTPD
    )
    a1 = inspect(net, "a1")[0]
    hostname = a1["Config"]["Hostname"]
    endpoint = a1["NetworkSettings"]["Networks"]["n1"]
    assert endpoint["IPAddress"] and endpoint["Gateway"] and endpoint["MacAddress"]
    for target, want in (("a1", hostname), ("web", inspect(net, "a2")[0]["Config"]["Hostname"])):
        out = docker_cli(
            net,
            "run",
            "--rm",
            "--network",
            "n1",
            "busybox",
            "sh",
            "-c",
            GET_HOSTNAME.format(target),
        )
        assert want in out.stdout
    # UDP too, both ways: a TFTP request to a1 by name, answered with a TFTP error
    # by a listener in a1's namespace (busybox's nc has no UDP)
    a1_ns = str(net.exec_root / "netns" / a1["Id"])  # type: ignore[attr-defined]
    listener = subprocess.Popen(
        ["nsenter", f"--net={a1_ns}", sys.executable, "-c", UDP_ANSWER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        tftp = docker_cli(
            net, "run", "--rm", "--network", "n1", "busybox", "tftp", "-g", "-r", "x", "a1",
            check=False,
        )  # fmt: skip
        assert "seen by a1" in tftp.stderr
        assert listener.communicate(timeout=10)[0].startswith("got")
    finally:
        listener.kill()
        listener.wait()
    # the network shows its containers
    doc = json.loads(docker_cli(net, "network", "inspect", "n1").stdout)[0]
    assert {c["Name"] for c in doc["Containers"].values()} == {"a1", "a2"}
    assert doc["IPAM"]["Config"][0]["Subnet"]


def test_networks_are_isolated_from_each_other(net: Daemon) -> None:
    docker_cli(net, "network", "create", "n1")
    docker_cli(net, "network", "create", "n2")
    docker_cli(net, "run", "-d", "--network", "n1", "--name", "a1", *HTTPD)
    ip = inspect(net, "a1")[0]["NetworkSettings"]["Networks"]["n1"]["IPAddress"]
    same = docker_cli(
        net, "run", "--rm", "--network", "n1", "busybox", "sh", "-c", GET_HOSTNAME.format(ip)
    )
    assert "HTTP/1" in same.stdout
    # from n2: its own network answers, n1's address does not
    docker_cli(net, "run", "-d", "--network", "n2", "--name", "b1", *HTTPD)
    b1 = inspect(net, "b1")[0]["Config"]["Hostname"]
    both = GET_HOSTNAME.format("b1") + "; " + GET_HOSTNAME.format(ip)
    other = docker_cli(
        net, "run", "--rm", "--network", "n2", "busybox", "sh", "-c", both, check=False
    )
    assert b1 in other.stdout and other.stdout.count("HTTP/1") == 1
    assert "timed out" in other.stderr
    # names of another network are not known there
    unknown = docker_cli(
        net,
        "run",
        "--rm",
        "--network",
        "n2",
        "busybox",
        "nslookup",
        "a1",
        "127.0.0.11",
        check=False,
    )
    assert unknown.returncode != 0


def test_container_mode_shares_the_namespace(net: Daemon) -> None:
    docker_cli(net, "network", "create", "n1")
    docker_cli(net, "run", "-d", "--network", "n1", "--name", "a1", *HTTPD)
    out = docker_cli(
        net,
        "run",
        "--rm",
        "--network",
        "container:a1",
        "busybox",
        "sh",
        "-c",
        GET_HOSTNAME.format("127.0.0.1"),
    )
    assert inspect(net, "a1")[0]["Config"]["Hostname"] in out.stdout, (out.stdout, out.stderr)
    stopped = docker_cli(net, "create", "--name", "idle", "busybox", "true").stdout.strip()
    refused = docker_cli(
        net, "run", "--rm", "--network", f"container:{stopped}", "busybox", "true", check=False
    )
    assert refused.returncode != 0 and "non running container" in refused.stderr


def test_published_ports_answer_and_clashes_are_refused(net: Daemon) -> None:
    docker_cli(net, "run", "-d", "-p", "8080:80", "--name", "p1", *HTTPD)
    hostname = inspect(net, "p1")[0]["Config"]["Hostname"]
    ports = inspect(net, "p1")[0]["NetworkSettings"]["Ports"]
    assert ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8080"}]
    assert "0.0.0.0:8080->80/tcp" in docker_cli(net, "ps").stdout
    # from the node itself, over loopback and over one of its own addresses
    gateway = inspect(net, "p1")[0]["NetworkSettings"]["Gateway"]
    for address in ("127.0.0.1", gateway):
        wait_http(
            net, ["busybox", "wget", "-q", "-O-", f"http://{address}:8080/hostname"], hostname
        )
    # from another container, through the node's address (hairpin)
    out = docker_cli(
        net,
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        f"printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {gateway} 8080",
    )
    assert hostname in out.stdout
    clash = docker_cli(net, "run", "-d", "-p", "8080:80", "busybox", "sleep", "9", check=False)
    assert clash.returncode != 0 and "0.0.0.0:8080" in clash.stderr
    assert "already allocated" in clash.stderr
    # a random port with -P, as docker port shows it
    docker_cli(net, "run", "-d", "-P", "--expose", "80", "--name", "p2", *HTTPD)
    mapped = inspect(net, "p2")[0]["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    assert int(mapped) >= 49153
    docker_cli(net, "rm", "-f", "p1")
    again = docker_cli(net, "run", "-d", "-p", "8080:80", "--name", "p3", *HTTPD)
    assert again.returncode == 0


def test_embedded_dns_answers_as_a_resolver_should(net: Daemon) -> None:
    docker_cli(net, "network", "create", "n1")
    cid = docker_cli(
        net, "run", "-d", "--network", "n1", "--network-alias", "db", "--name", "a1", "busybox",
        "sleep", "300",
    ).stdout.strip()  # fmt: skip
    ip = inspect(net, "a1")[0]["NetworkSettings"]["Networks"]["n1"]["IPAddress"]
    ns = str(net.exec_root / "netns" / cid)  # type: ignore[attr-defined]

    def dig(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", f"--net={ns}", "dig", "+time=5", "+tries=1", "@127.0.0.11", *args],
            capture_output=True,
            text=True,
        )

    assert dig("+short", "a1").stdout.strip() == ip
    assert dig("+short", "db").stdout.strip() == ip
    assert dig("+short", "A1.").stdout.strip() == ip
    assert dig("+short", cid[:12]).stdout.strip() == ip
    aaaa = dig("a1", "AAAA")
    assert "status: NOERROR" in aaaa.stdout and "ANSWER: 0" in aaaa.stdout
    missing = dig("no-such-name.test")
    assert "status: SERVFAIL" in missing.stdout or "status: NXDOMAIN" in missing.stdout
    assert dig("+short", "-x", ip).stdout.strip() == "a1."
    resolv = docker_cli(net, "exec", "a1", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 127.0.0.11" in resolv


def test_nothing_is_left_after_removal(net: Daemon) -> None:
    before = set(links(net))
    docker_cli(net, "network", "create", "n1")
    bridge = "br-" + json.loads(docker_cli(net, "network", "inspect", "n1").stdout)[0]["Id"][:12]
    assert bridge in links(net)
    docker_cli(net, "run", "-d", "--network", "n1", "-p", "8081:80", "--name", "a1", *HTTPD)
    assert any(name.startswith("veth") for name in links(net))
    in_use = docker_cli(net, "network", "rm", "n1", check=False)
    assert in_use.returncode != 0 and "active endpoints" in in_use.stderr
    docker_cli(net, "rm", "-f", "a1")
    deadline = time.monotonic() + 5
    while any(name.startswith("veth") for name in links(net)):  # the kernel's own pace
        assert time.monotonic() < deadline, links(net)
        time.sleep(0.1)
    docker_cli(net, "network", "rm", "n1")
    assert set(links(net)) == before
    assert "8081" not in host_of(net).run("nft", "list", "ruleset").stdout
    assert list((net.exec_root / "netns").iterdir()) == []  # type: ignore[attr-defined]


def test_orchestr_cli_networks(net: Daemon) -> None:
    nid = orchestr(net, "network", "create", "--subnet", "10.77.0.0/24", "n9").stdout.strip()
    assert len(nid) == 64
    table = orchestr(net, "network", "ls").stdout
    assert "n9" in table and "bridge" in table and "host" in table and "none" in table
    orchestr(net, "run", "-d", "--network", "n9", "--name", "s1", "-p", "8090:80", *HTTPD)
    ip = inspect(net, "s1")[0]["NetworkSettings"]["Networks"]["n9"]["IPAddress"]
    assert ip.startswith("10.77.0.")
    hostname = inspect(net, "s1")[0]["Config"]["Hostname"]
    wait_http(net, ["busybox", "wget", "-q", "-O-", "http://127.0.0.1:8090/hostname"], hostname)
    listed = json.loads(orchestr(net, "ps", "--format", "json").stdout)
    assert listed[0]["Ports"] == [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8090, "Type": "tcp"}
    ]
    out = orchestr(
        net, "run", "--rm", "--network", "n9", "busybox", "wget", "-qO-", "http://s1/hostname"
    )
    assert hostname in out.stdout
    orchestr(net, "rm", "-f", "s1")
    orchestr(net, "network", "rm", "n9")
    assert "n9" not in orchestr(net, "network", "ls").stdout


def test_connect_and_disconnect_a_running_container(net: Daemon) -> None:
    docker_cli(net, "network", "create", "n1")
    docker_cli(net, "network", "create", "n2")
    docker_cli(net, "run", "-d", "--network", "n1", "--name", "a1", *HTTPD)
    docker_cli(net, "run", "-d", "--network", "n2", "--name", "b1", "busybox", "sleep", "300")
    get_a1 = ["exec", "b1", "sh", "-c", GET_HOSTNAME.format("a1")]
    assert "HTTP/1" not in docker_cli(net, *get_a1, check=False).stdout
    docker_cli(net, "network", "connect", "--alias", "bee", "n1", "b1")
    assert "eth1" in docker_cli(net, "exec", "b1", "ip", "-o", "link").stdout
    assert "HTTP/1" in docker_cli(net, *get_a1).stdout
    b1 = inspect(net, "b1")[0]["NetworkSettings"]["Networks"]
    assert set(b1) == {"n1", "n2"} and b1["n1"]["IPAddress"] and b1["n1"]["Aliases"] == ["bee"]
    docker_cli(net, "network", "disconnect", "n1", "b1")
    assert "HTTP/1" not in docker_cli(net, *get_a1, check=False).stdout
    assert set(inspect(net, "b1")[0]["NetworkSettings"]["Networks"]) == {"n2"}


def test_a_daemon_killed_and_started_again_keeps_the_network(net: Daemon, state_dir: Path) -> None:
    docker_cli(net, "network", "create", "--subnet", "10.88.0.0/24", "n1")
    docker_cli(
        net, "run", "-d", "--network", "n1", "--ip", "10.88.0.50", "-p", "8082:80",
        "-p", "8083:80", "--name", "s1", *HTTPD,
    )  # fmt: skip
    hostname = inspect(net, "s1")[0]["Config"]["Hostname"]
    wait_http(net, ["busybox", "wget", "-q", "-O-", "http://127.0.0.1:8082/hostname"], hostname)
    net.proc.kill()
    net.proc.wait()
    with start_daemon(
        state_dir, net.socket, host=host_of(net), args=["--dns", "127.0.0.1"]
    ) as again:
        doc = inspect(again, "s1")[0]
        assert doc["State"]["Running"]
        assert doc["NetworkSettings"]["Networks"]["n1"]["IPAddress"] == "10.88.0.50"
        out = docker_cli(
            again, "run", "--rm", "--network", "n1", "busybox", "sh", "-c",
            "ip -o -4 addr show eth0; " + GET_HOSTNAME.format("s1"),
        ).stdout  # fmt: skip
        assert hostname in out and "10.88.0.50" not in out.split("HTTP/1")[0]
        wait_http(net, ["busybox", "wget", "-q", "-O-", "http://127.0.0.1:8082/hostname"], hostname)
        for port in ("8082", "8083"):  # both publications of port 80 are held again
            clash = docker_cli(
                again, "run", "-d", "-p", f"{port}:80", "busybox", "true", check=False
            )
            assert "already allocated" in clash.stderr
        docker_cli(again, "rm", "-f", "s1")
        docker_cli(again, "network", "rm", "n1")


def test_bad_network_requests_get_clear_errors(net: Daemon) -> None:
    docker_cli(net, "network", "create", "--subnet", "10.89.0.0/24", "n1")
    for args, message in (
        (["network", "create", "n1"], "already exists"),
        (["network", "create", "--subnet", "10.89.0.0/25", "n2"], "overlaps"),
        (["network", "create", "-o", "com.docker.network.bridge.enable_icc=false", "n3"], "icc"),
        (["network", "rm", "bridge"], "pre-defined"),
        (["run", "--rm", "--network", "nope", "busybox", "true"], "nope not found"),
        (["run", "--rm", "--network", "n1", "--ip", "10.90.0.5", "busybox", "true"], "10.90.0.5"),
        (["run", "--rm", "--network-alias", "x", "busybox", "true"], "user-defined networks"),
    ):
        out = docker_cli(net, *args, check=False)
        assert out.returncode != 0 and message in out.stderr, (args, out.stderr)
    docker_cli(net, "run", "--rm", "--network", "n1", "--ip", "10.89.0.9", "busybox", "true")


def test_dual_stack_network_answers_aaaa(net: Daemon) -> None:
    docker_cli(
        net, "network", "create", "--ipv6", "--subnet", "10.78.0.0/24",
        "--subnet", "fd00:78::/64", "n6",
    )  # fmt: skip
    cid = docker_cli(net, "run", "-d", "--network", "n6", "--name", "a1", *HTTPD).stdout.strip()
    endpoint = inspect(net, "a1")[0]["NetworkSettings"]["Networks"]["n6"]
    v6 = endpoint["GlobalIPv6Address"]
    assert v6.startswith("fd00:78::") and endpoint["IPv6Gateway"] == "fd00:78::1"
    ns = str(net.exec_root / "netns" / cid)  # type: ignore[attr-defined]
    aaaa = subprocess.run(
        ["nsenter", f"--net={ns}", "dig", "+short", "+time=5", "+tries=1", "@127.0.0.11",
         "a1", "AAAA"],
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert aaaa == v6
    out = docker_cli(
        net, "run", "--rm", "--network", "n6", "busybox", "sh", "-c",
        GET_HOSTNAME.format(v6),
    ).stdout  # fmt: skip
    assert inspect(net, "a1")[0]["Config"]["Hostname"] in out
    doc = json.loads(docker_cli(net, "network", "inspect", "n6").stdout)[0]
    assert doc["Containers"][cid]["IPv6Address"] == f"{v6}/64"
