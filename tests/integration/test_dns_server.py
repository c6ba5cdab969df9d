"""The embedded DNS server for real: 127.0.0.11:53 inside throwaway network namespaces,
asked by dig through nsenter, forwarding to a tiny upstream the test runs on 127.0.0.1.

Each test runs its server on its own event loop (asyncio.run) and runs dig as an asyncio
subprocess, so the loop keeps serving while dig waits. Nothing leaves the machine: the
only upstreams are servers the tests start on loopback in the root namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from agent.network.dns import DnsServer, DnsTable
from tests.conftest import NETNS_PREFIX, TestHost

pytestmark = [pytest.mark.root, pytest.mark.netns]


@pytest.fixture
def otherhost() -> Iterator[TestHost]:
    """A second namespace like `testhost`, for two attachments at once."""
    name = NETNS_PREFIX + uuid.uuid4().hex[:10]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield TestHost(name)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def make_table() -> DnsTable:
    table = DnsTable()
    table.add("front", "c1", ["web-1", "web"], "10.0.1.2", "fd00:1::2")
    table.add("front", "c2", ["web-2", "web"], "10.0.1.3", None)
    table.add("back", "c3", ["db"], "10.0.2.2", None)
    return table


async def dig(host: TestHost, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "nsenter",
        f"--net={host.path}",
        "dig",
        "+time=2",
        "+tries=1",
        "@127.0.0.11",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return out.decode()


async def short(host: TestHost, *args: str) -> list[str]:
    return (await dig(host, "+short", *args)).split()


async def status(host: TestHost, *args: str) -> str:
    out = await dig(host, *args)
    found = re.search(r"status: (\w+)", out)
    assert found, out
    return found.group(1)


@contextlib.asynccontextmanager
async def serving(
    table: DnsTable,
    host: TestHost,
    scopes: Callable[[], list[str]],
    upstreams: Sequence[str] = (),
    timeout: float = 2.0,
) -> AsyncIterator[DnsServer]:
    server = DnsServer(table, upstreams, timeout)
    try:
        await server.attach("c", host.path, scopes)
        yield server
    finally:
        await server.close()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


# -- a tiny upstream on loopback ----------------------------------------------------------


class Upstream:
    """Answers outside.test A 192.0.2.7; big.test TXT only over TCP (TC over UDP);
    NXDOMAIN otherwise. Records the transport of every query it gets."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def reply(self, wire: bytes, transport: str) -> bytes:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        self.seen.append((question.name.to_text(), transport))
        response = dns.message.make_response(query)
        if question.name.to_text() == "outside.test." and question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text("outside.test.", 60, "IN", "A", "192.0.2.7"))
        elif question.name.to_text() == "big.test.":
            if transport == "udp":
                response.flags |= dns.flags.TC
            else:
                response.answer.append(
                    dns.rrset.from_text("big.test.", 60, "IN", "TXT", "tcp-only")
                )
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                tcp.close()
                udp.close()
                continue
            break
        else:
            pytest.fail("no free port pair on 127.0.0.1")
        tcp.listen(8)
        self.port = port
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
                self.transport.sendto(upstream.reply(data, "udp"), addr)  # type: ignore[attr-defined]

        async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readexactly(2)
                data = await reader.readexactly(struct.unpack("!H", head)[0])
                reply = self.reply(data, "tcp")
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
            finally:
                writer.close()

        self._udp, _ = await loop.create_datagram_endpoint(Udp, sock=udp)
        self._tcp = await asyncio.start_server(serve_tcp, sock=tcp)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[Upstream]:
    u = Upstream()
    await u.start()
    try:
        yield u
    finally:
        await u.stop()


def dead_port() -> int:
    """A loopback UDP port nobody listens on (bound, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- names of the container's networks ----------------------------------------------------


def test_answers_names_in_scope(testhost: TestHost) -> None:
    async def scenario() -> None:
        async with serving(make_table(), testhost, lambda: ["front"]):
            assert sorted(await short(testhost, "web")) == ["10.0.1.2", "10.0.1.3"]
            assert await short(testhost, "WEB-1.") == ["10.0.1.2"]
            assert await short(testhost, "web-1", "AAAA") == ["fd00:1::2"]
            assert await short(testhost, "web-2", "AAAA") == []
            assert await status(testhost, "web-2", "AAAA") == "NOERROR"
            assert await status(testhost, "db") == "NXDOMAIN"  # another network's name
            assert await short(testhost, "-x", "10.0.1.3") == ["web-2."]
            assert await short(testhost, "-x", "fd00:1::2") == ["web-1."]
            assert await short(testhost, "+tcp", "web-2") == ["10.0.1.3"]
            assert await short(testhost, "+tcp", "-x", "10.0.1.2") == ["web-1."]

    run(scenario)


def test_a_shared_name_rotates_between_queries(testhost: TestHost) -> None:
    async def scenario() -> None:
        async with serving(make_table(), testhost, lambda: ["front"]):
            firsts = {(await short(testhost, "web"))[0] for _ in range(4)}
            assert firsts == {"10.0.1.2", "10.0.1.3"}

    run(scenario)


def test_scopes_and_table_changes_apply_to_the_next_query(testhost: TestHost) -> None:
    async def scenario() -> None:
        table = make_table()
        scopes = ["front"]
        async with serving(table, testhost, lambda: scopes):
            assert await status(testhost, "db") == "NXDOMAIN"
            scopes.append("back")
            assert await short(testhost, "db") == ["10.0.2.2"]
            table.remove("back", "c3")
            assert await status(testhost, "db") == "NXDOMAIN"

    run(scenario)


def test_two_namespaces_see_their_own_networks(testhost: TestHost, otherhost: TestHost) -> None:
    async def scenario() -> None:
        server = DnsServer(make_table())
        try:
            await server.attach("a", testhost.path, lambda: ["front"])
            await server.attach("b", otherhost.path, lambda: ["back"])
            assert await short(testhost, "web-2") == ["10.0.1.3"]
            assert await status(testhost, "db") == "NXDOMAIN"
            assert await short(otherhost, "db") == ["10.0.2.2"]
            assert await status(otherhost, "web-2") == "NXDOMAIN"
            with pytest.raises(ValueError):
                await server.attach("a", testhost.path, lambda: [])
        finally:
            await server.close()

    run(scenario)


# -- forwarding ---------------------------------------------------------------------------


def test_forwards_unknown_names_to_the_upstream(testhost: TestHost) -> None:
    async def scenario() -> None:
        async with upstream() as up:
            ups = [f"127.0.0.1:{up.port}"]
            async with serving(make_table(), testhost, lambda: ["front"], upstreams=ups):
                assert await short(testhost, "outside.test") == ["192.0.2.7"]
                assert await status(testhost, "missing.test") == "NXDOMAIN"
                assert await short(testhost, "web-2") == ["10.0.1.3"]
                assert await short(testhost, "web-2", "MX") == []  # NODATA, not forwarded
                assert await short(testhost, "big.test", "TXT") == ['"tcp-only"']
                assert await short(testhost, "+tcp", "outside.test") == ["192.0.2.7"]
            names = [name for name, _ in up.seen]
            assert "web-2." not in names
            assert ("big.test.", "udp") in up.seen and ("big.test.", "tcp") in up.seen

    run(scenario)


def test_servfail_when_the_upstream_is_dead(testhost: TestHost) -> None:
    async def scenario() -> None:
        dead = [f"127.0.0.1:{dead_port()}"]
        async with serving(make_table(), testhost, lambda: ["front"], upstreams=dead, timeout=0.3):
            assert await status(testhost, "outside.test") == "SERVFAIL"
            assert await short(testhost, "web-1") == ["10.0.1.2"]

    run(scenario)


def test_next_upstream_after_a_dead_one(testhost: TestHost) -> None:
    async def scenario() -> None:
        async with upstream() as up:
            ups = [f"127.0.0.1:{dead_port()}", f"127.0.0.1:{up.port}"]
            async with serving(make_table(), testhost, lambda: [], upstreams=ups, timeout=0.3):
                assert await short(testhost, "outside.test") == ["192.0.2.7"]

    run(scenario)


def test_per_attachment_upstreams_replace_the_servers(testhost: TestHost) -> None:
    async def scenario() -> None:
        async with upstream() as up:
            server = DnsServer(make_table(), [f"127.0.0.1:{dead_port()}"], timeout=0.3)
            try:
                await server.attach("c", testhost.path, lambda: [], [f"127.0.0.1:{up.port}"])
                assert await short(testhost, "outside.test") == ["192.0.2.7"]
            finally:
                await server.close()

    run(scenario)


# -- robustness and lifetime --------------------------------------------------------------

SEND_JUNK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"\\x00", ("127.0.0.11", 53))
s.sendto(bytes.fromhex("beef01000001000000000000ffff"), ("127.0.0.11", 53))
sys.stdout.write(s.recv(512).hex())
"""


def test_a_bad_packet_gets_formerr_and_the_server_keeps_serving(testhost: TestHost) -> None:
    async def scenario() -> None:
        async with serving(make_table(), testhost, lambda: ["front"]):
            proc = await asyncio.create_subprocess_exec(
                "nsenter",
                f"--net={testhost.path}",
                sys.executable,
                "-I",
                "-S",
                "-c",
                SEND_JUNK,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            reply = bytes.fromhex(out.decode())
            assert reply[:2] == b"\xbe\xef" and reply[3] & 0xF == dns.rcode.FORMERR
            assert await short(testhost, "web-1") == ["10.0.1.2"]

    run(scenario)


def test_detach_closes_the_sockets(testhost: TestHost) -> None:
    async def scenario() -> None:
        server = DnsServer(make_table())
        try:
            await server.attach("c", testhost.path, lambda: ["front"])
            assert await short(testhost, "web-1") == ["10.0.1.2"]
            await server.detach("c")
            assert server.attached() == []
            assert "connection refused" in await dig(testhost, "web-1")
            assert "connection refused" in await dig(testhost, "+tcp", "web-1")
            await server.detach("c")
            await server.attach("c", testhost.path, lambda: ["front"])  # the port is free
            assert await short(testhost, "+tcp", "web-1") == ["10.0.1.2"]
        finally:
            await server.close()
        assert "connection refused" in await dig(testhost, "web-1")

    run(scenario)


def test_the_sockets_live_in_the_namespace_not_the_daemons(testhost: TestHost) -> None:
    async def scenario() -> None:
        async with serving(make_table(), testhost, lambda: ["front"]):
            inside = testhost.run("ss", "-H", "-lnu", "src", "127.0.0.11:53").stdout
            here = subprocess.run(
                ["ss", "-H", "-lnu", "src", "127.0.0.11:53"], capture_output=True, text=True
            ).stdout
            assert "127.0.0.11:53" in inside
            assert "127.0.0.11:53" not in here

    run(scenario)


def test_attach_to_a_missing_namespace_fails_cleanly() -> None:
    async def scenario() -> None:
        server = DnsServer(make_table())
        with pytest.raises(OSError):
            await server.attach("c", f"/run/netns/{NETNS_PREFIX}missing-{uuid.uuid4().hex}", list)
        assert server.attached() == []

    run(scenario)
