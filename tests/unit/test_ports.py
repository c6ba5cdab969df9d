"""Published ports: `-p` parsing as the docker CLI does it, allocation, API views.

The parse cases restate go-connections' ParsePortSpecs behaviour (as the docker CLI
28 shows it) as our own table; when the docker CLI is installed, the error cases are
also checked against it (it parses `-p` before it talks to any daemon).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from agent.network.ports import (
    EPHEMERAL_START,
    PortAllocator,
    PortError,
    PortMapping,
    parse_publish,
    ports_for_inspect,
    ports_for_list,
    reserve,
)

pytestmark = pytest.mark.unit


def b(host_port: str = "", host_ip: str = "") -> dict[str, str]:
    return {"HostIp": host_ip, "HostPort": host_port}


VALID = [
    ("80", {"80/tcp": [b()]}),
    ("8080:80", {"80/tcp": [b("8080")]}),
    ("127.0.0.1:8080:80", {"80/tcp": [b("8080", "127.0.0.1")]}),
    ("127.0.0.1::80", {"80/tcp": [b("", "127.0.0.1")]}),
    ("[::1]:8080:80", {"80/tcp": [b("8080", "::1")]}),
    ("::1:8080:80", {"80/tcp": [b("8080", "::1")]}),
    ("[1.2.3.4]::80", {"80/tcp": [b("", "1.2.3.4")]}),
    (":80", {"80/tcp": [b()]}),
    ("53:53/udp", {"53/udp": [b("53")]}),
    ("80/UDP", {"80/udp": [b()]}),
    ("80/", {"80/tcp": [b()]}),
    ("9/sctp", {"9/sctp": [b()]}),
    ("080:080", {"80/tcp": [b("80")]}),
    ("0:0", {"0/tcp": [b("0")]}),
    ("8000-8001:80-81", {"80/tcp": [b("8000")], "81/tcp": [b("8001")]}),
    ("80-81", {"80/tcp": [b()], "81/tcp": [b()]}),
    ("8000-8010:80", {"80/tcp": [b("8000-8010")]}),
    ("8000-8000:80", {"80/tcp": [b("8000")]}),
    ("1-2-3:80", {"80/tcp": [b("1-2")]}),  # ParsePortRange reads the first two parts
    ("published=8080,target=80", {"80/tcp": [b("8080")]}),
    ("target=53,published=53,protocol=udp,mode=host", {"53/udp": [b("53")]}),
    ("target=80", {"80/tcp": [b()]}),
]

INVALID = [
    ("", "no port specified: <empty>"),
    ("/udp", "no port specified: /udp<empty>"),
    ("80:abc", "invalid containerPort: abc"),
    ("abc", "invalid containerPort: abc"),
    ("70000", "invalid containerPort: 70000"),
    ("+80", "invalid containerPort: +80"),
    (" 80", "invalid containerPort:  80"),
    ("80-", "invalid containerPort: 80-"),
    ("-80", "invalid containerPort: -80"),
    ("90-80", "invalid containerPort: 90-80"),
    ("1.2.3.4:80", "invalid hostPort: 1.2.3.4"),
    ("9-8:80", "invalid hostPort: 9-8"),
    ("70000:80", "invalid hostPort: 70000"),
    (
        "8000-8010:80-85",
        "invalid ranges specified for container and host Ports: 80-85 and 8000-8010",
    ),
    ("80:80-81", "invalid ranges specified for container and host Ports: 80-81 and 80"),
    ("80/xyz", "invalid proto: xyz"),
    ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("a:b:c:d", "invalid IP address: a:b"),
    ("[fe80::1%eth0]:80:80", "invalid IP address: fe80::1%eth0"),
    ("[::1", "invalid IP address [: address [:: missing ']' in address"),
    ("[::1]:80", "invalid IP address [:: address [::: missing ']' in address"),
    ("[a]b::80", "invalid IP address [a]b: address [a]b:: missing port in address"),
    ("[a]:]:1:80", "invalid IP address [a]:]: address [a]:]:: too many colons in address"),
    ("published=8080,x", "invalid publish opts format (should be name=value but got 'x')"),
    ("target=80,protocol=xyz", "invalid proto: xyz"),
]


@pytest.mark.parametrize(("spec", "bindings"), VALID)
def test_parse_publish(spec: str, bindings: dict[str, list[dict[str, str]]]) -> None:
    exposed, got = parse_publish([spec])
    assert got == bindings
    assert exposed == {port: {} for port in bindings}


@pytest.mark.parametrize(("spec", "message"), INVALID)
def test_parse_publish_errors(spec: str, message: str) -> None:
    with pytest.raises(PortError) as e:
        parse_publish([spec])
    assert str(e.value) == message


def test_parse_publish_merges_specs_in_order() -> None:
    exposed, bindings = parse_publish(["8080:80", "127.0.0.1:8081:80", "53/udp"])
    assert exposed == {"80/tcp": {}, "53/udp": {}}
    assert bindings == {"80/tcp": [b("8080"), b("8081", "127.0.0.1")], "53/udp": [b()]}


DOCKER = shutil.which("docker")


@pytest.mark.skipif(DOCKER is None, reason="no docker CLI")
@pytest.mark.parametrize(("spec", "message"), INVALID)
def test_errors_match_the_docker_cli(spec: str, message: str, tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/orchestr-test.sock"}
    env["DOCKER_CONFIG"] = str(tmp_path)
    done = subprocess.run(
        [str(DOCKER), "create", "-p", spec, "busybox"],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
    )
    assert done.stderr.splitlines()[0] == f"docker: {message}"


# -- allocation -------------------------------------------------------------------------


def test_fixed_and_ephemeral_ports() -> None:
    alloc = PortAllocator()
    got = alloc.allocate({"80/tcp": [b("8080")], "443/tcp": [b()], "53/udp": [b("", "::1")]})
    assert got == [
        PortMapping("0.0.0.0", 8080, 80, "tcp"),
        PortMapping("0.0.0.0", EPHEMERAL_START, 443, "tcp"),
        PortMapping("::1", EPHEMERAL_START, 53, "udp"),
    ]
    assert alloc.taken() == {
        ("0.0.0.0", 8080, "tcp"),
        ("0.0.0.0", EPHEMERAL_START, "tcp"),
        ("::1", EPHEMERAL_START, "udp"),
    }


def test_ephemeral_ports_go_round_robin_and_wrap() -> None:
    alloc = PortAllocator(50000, 50002)
    first = alloc.allocate({"80/tcp": [b(), b()]})
    assert [m.host_port for m in first] == [50000, 50001]
    alloc.release(first[:1])
    assert alloc.allocate({"81/tcp": [b()]})[0].host_port == 50002
    assert alloc.allocate({"82/tcp": [b()]})[0].host_port == 50000  # wrapped, was freed
    with pytest.raises(PortError, match=r"^all ports are allocated$"):
        alloc.allocate({"83/tcp": [b()]})


def test_a_taken_port_is_refused_with_dockers_message() -> None:
    alloc = PortAllocator()
    alloc.allocate({"80/tcp": [b("8080")]})
    with pytest.raises(PortError) as e:
        alloc.allocate({"81/tcp": [b("8080")]})
    assert str(e.value) == "Bind for 0.0.0.0:8080 failed: port is already allocated"


def test_wildcards_clash_within_their_family_only() -> None:
    alloc = PortAllocator()
    alloc.allocate({"80/tcp": [b("8080", "127.0.0.1")]})
    with pytest.raises(PortError, match=r"^Bind for 0\.0\.0\.0:8080 failed"):
        alloc.allocate({"80/tcp": [b("8080")]})
    alloc.allocate({"80/tcp": [b("8080", "10.0.0.1"), b("8080", "::")]})
    with pytest.raises(PortError, match=r"^Bind for \[::1\]:8080 failed"):
        alloc.allocate({"80/tcp": [b("8080", "::1")]})
    alloc.allocate({"80/udp": [b("8080")]})  # another proto
    with pytest.raises(PortError, match=r"^Bind for 127\.0\.0\.1:8080 failed"):
        PortAllocator().allocate({"80/tcp": [b("8080")], "81/tcp": [b("8080", "127.0.0.1")]})


def test_allocation_is_all_or_nothing() -> None:
    alloc = PortAllocator()
    alloc.allocate({"80/tcp": [b("8080")]})
    before = alloc.taken()
    with pytest.raises(PortError):
        alloc.allocate({"81/tcp": [b("9090")], "82/tcp": [b()], "83/tcp": [b("8080")]})
    assert alloc.taken() == before
    assert alloc.allocate({"82/tcp": [b()]})[0].host_port == EPHEMERAL_START


def test_host_range_takes_the_first_free_port() -> None:
    alloc = PortAllocator()
    alloc.allocate({"80/tcp": [b("8000")]})
    assert alloc.allocate({"81/tcp": [b("8000-8002")]})[0].host_port == 8001
    assert alloc.allocate({"82/tcp": [b("8000-8002")]})[0].host_port == 8002
    with pytest.raises(PortError, match=r"^Bind for 0\.0\.0\.0:8000-8002 failed: port is"):
        alloc.allocate({"83/tcp": [b("8000-8002")]})


def test_fixed_ports_are_served_before_ranges_and_ephemeral_ones() -> None:
    alloc = PortAllocator(50000, 50001)
    got = alloc.allocate({"80/tcp": [b()], "81/tcp": [b("50000")]})
    assert [m.host_port for m in got] == [50001, 50000]
    got = alloc.allocate({"80/tcp": [b("8000-8001")], "81/tcp": [b("8000")]})
    assert [m.host_port for m in got] == [8001, 8000]


def test_publish_all_adds_ephemeral_ports_for_unbound_exposed_ports() -> None:
    alloc = PortAllocator()
    got = alloc.allocate({"80/tcp": [b("8080")], "90/tcp": []}, ["80/tcp", "90/tcp", "53/udp"])
    assert got == [
        PortMapping("0.0.0.0", 8080, 80, "tcp"),
        PortMapping("0.0.0.0", EPHEMERAL_START, 90, "tcp"),
        PortMapping("0.0.0.0", EPHEMERAL_START, 53, "udp"),
    ]


def test_allocation_checks_its_input() -> None:
    alloc = PortAllocator()
    with pytest.raises(PortError, match=r"^invalid hostPort: x$"):
        alloc.allocate({"80/tcp": [b("x")]})
    with pytest.raises(PortError, match=r"^invalid IP address: nope$"):
        alloc.allocate({"80/tcp": [b("1", "nope")]})
    with pytest.raises(PortError, match=r"^invalid proto: icmp$"):
        alloc.allocate({"80/icmp": [b("1")]})
    assert alloc.allocate({"80": [b("1", "[::1]")]}) == [PortMapping("::1", 1, 80, "tcp")]


def test_parse_then_allocate() -> None:
    _, bindings = parse_publish(["127.0.0.1:8080:80", "9000-9001:90-91/udp"])
    assert PortAllocator().allocate(bindings) == [
        PortMapping("127.0.0.1", 8080, 80, "tcp"),
        PortMapping("0.0.0.0", 9000, 90, "udp"),
        PortMapping("0.0.0.0", 9001, 91, "udp"),
    ]


# -- reserve (a socket bound on the loopback of whatever namespace runs the tests) -------


def test_reserve_holds_the_port() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    held = reserve(PortMapping("127.0.0.1", port, 53, "udp"))
    try:
        assert held.getsockname() == ("127.0.0.1", port)
        with pytest.raises(PortError, match=f"^Bind for 127.0.0.1:{port} failed: port is"):
            reserve(PortMapping("127.0.0.1", port, 53, "udp"))
    finally:
        held.close()


def test_reserve_names_other_failures() -> None:
    with pytest.raises(PortError, match=r"^Bind for 192\.0\.2\.1:80 failed: Cannot assign"):
        reserve(PortMapping("192.0.2.1", 80, 80, "tcp"))


# -- API views ------------------------------------------------------------------------------


MAPPINGS = [
    PortMapping("0.0.0.0", 8080, 80, "tcp"),
    PortMapping("127.0.0.1", 8081, 80, "tcp"),
    PortMapping("0.0.0.0", 5353, 53, "udp"),
]


def test_ports_for_inspect() -> None:
    assert ports_for_inspect(["80/tcp", "443/tcp", "53/udp"], MAPPINGS) == {
        "443/tcp": None,
        "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
        "80/tcp": [
            {"HostIp": "0.0.0.0", "HostPort": "8080"},
            {"HostIp": "127.0.0.1", "HostPort": "8081"},
        ],
    }
    assert ports_for_inspect({}, []) == {}


def test_ports_for_list() -> None:
    assert ports_for_list(MAPPINGS, {"80/tcp": {}, "443/tcp": {}, "53/udp": {}}) == [
        {"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"},
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 8081, "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"},
    ]
    assert ports_for_list([], ["80"]) == [{"PrivatePort": 80, "Type": "tcp"}]
