"""The embedded DNS server: 127.0.0.11:53 inside every container network namespace.

Docker gives each container on a user-defined network a resolver at 127.0.0.11 that
knows the names on the container's networks and forwards everything else. orchestr does
the same with one asyncio `DnsServer` in the daemon serving many namespaces:

- `attach(key, netns_path, scopes)` opens a UDP socket and a listening TCP socket bound
  to 127.0.0.11:53 *in the namespace at netns_path*. A socket belongs to the network
  namespace of the thread that created it, so a short-lived thread of its own setns()es
  into the namespace, creates and binds both sockets, and exits; the loop then serves
  them from the daemon's namespace. (Never an executor thread: a pooled thread left in a
  container's namespace would leak it into later work.) 127.0.0.0/8 is local on `lo`,
  which the caller has brought up; no address, route or NAT rule is needed.
- Each query is decided by the pure `respond()` (see `agent.network.dns_table`) against
  the shared `DnsTable`, with the scopes the attachment's callable names at that moment,
  so network connects and disconnects take effect without re-attaching.
- What is not ours is forwarded to the upstreams from the daemon's namespace (the
  container's may have no route out): over UDP, again over TCP when the answer is
  truncated, to the next upstream on a timeout, an error, SERVFAIL or REFUSED, as
  Docker does. All failing gives SERVFAIL; no upstreams at all gives NXDOMAIN.
- Replies over UDP fit the client's EDNS payload (512 without EDNS, at most 1232) or are
  truncated with TC set, so the client retries over TCP. TCP connections carry any
  number of length-prefixed queries and close after an idle while.
- A bad packet never stops a socket: an unreadable query gets FORMERR when its header
  can be read, and is dropped otherwise; responses (QR set) are never answered.

`detach(key)` closes the attachment's sockets and its open TCP connections; `close()`
closes every attachment. Attach before the namespace goes away; the sockets keep it
alive until detached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode

from agent.network.dns_table import (
    EMBEDDED_NAMESERVER,
    FALLBACK_NAMESERVERS,
    TTL,
    DnsTable,
    Record,
    container_resolv_conf,
    respond,
    upstreams_from_resolv_conf,
)
from agent.runtime.linux import flags, libc

__all__ = [
    "EMBEDDED_NAMESERVER",
    "FALLBACK_NAMESERVERS",
    "TTL",
    "DnsServer",
    "DnsTable",
    "Record",
    "container_resolv_conf",
    "parse_upstream",
    "respond",
    "upstreams_from_resolv_conf",
]

log = logging.getLogger(__name__)

DNS_PORT = 53
UDP_PAYLOAD = 1232
TCP_IDLE = 10.0
MAX_FORWARDING = 100
MAX_PENDING = 1000

Scopes = Callable[[], Sequence[str]]


def parse_upstream(upstream: str) -> tuple[str, int]:
    """ "ip", "ip:port", "[v6]" or "[v6]:port" (a bare v6 address too) -> (ip, port)."""
    text = upstream.strip()
    host, port = text, DNS_PORT
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid upstream {upstream!r}")
        if rest:
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host.split("%", 1)[0])
    if not 0 < port < 65536:
        raise ValueError(f"invalid port in upstream {upstream!r}")
    return host, port


@dataclass
class _Attachment:
    key: str
    scopes: Scopes
    upstreams: tuple[tuple[str, int], ...]
    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.Server | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


def _sockets_in_netns(netns_path: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and listening TCP sockets on 127.0.0.11:port in the namespace at netns_path.

    Moves the calling thread into that namespace for good: call it on a fresh thread.
    """
    made: list[socket.socket] = []
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.setns(fd, flags.CLONE_NEWNET, netns_path)
        finally:
            os.close(fd)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        made.append(udp)
        udp.bind((EMBEDDED_NAMESERVER, port))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        made.append(tcp)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((EMBEDDED_NAMESERVER, port))
        tcp.listen(128)
        for s in made:
            s.setblocking(False)
    except BaseException:
        for s in made:
            s.close()
        raise
    return udp, tcp


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR for a query whose header alone is readable; None for a response or junk."""
    if len(wire) < 12 or wire[2] & 0x80:
        return None
    qid = struct.unpack("!H", wire[:2])[0]
    opcode_rd = wire[2] & 0x79
    return struct.pack("!HBBHHHH", qid, 0x80 | opcode_rd, 0x80 | dns.rcode.FORMERR, 0, 0, 0, 0)


def _reply(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query, recursion_available=True, our_payload=UDP_PAYLOAD)
    response.set_rcode(rcode)
    return response


def _udp_limit(query: dns.message.Message) -> int:
    if query.edns < 0:
        return 512
    return max(512, min(query.payload, UDP_PAYLOAD))


class DnsServer:
    """One server for every attached namespace, on the running event loop."""

    def __init__(
        self, table: DnsTable, upstreams: Sequence[str] = (), timeout: float = 2.0
    ) -> None:
        self.table = table
        self.upstreams = tuple(parse_upstream(u) for u in upstreams)
        self.timeout = timeout
        self._attachments: dict[str, _Attachment] = {}
        self._forwarding = 0

    def attached(self) -> list[str]:
        return list(self._attachments)

    async def attach(
        self,
        key: str,
        netns_path: str,
        scopes: Scopes,
        upstreams: Sequence[str] | None = None,
        port: int = DNS_PORT,
    ) -> None:
        """Serve 127.0.0.11:port in the namespace at netns_path for the networks `scopes()`.

        `upstreams` replaces the server's own for this namespace (a container's --dns).
        """
        if key in self._attachments:
            raise ValueError(f"DNS already attached for {key}")
        resolvers = (
            self.upstreams if upstreams is None else tuple(parse_upstream(u) for u in upstreams)
        )
        attachment = _Attachment(key, scopes, resolvers)
        udp_sock, tcp_sock = await self._open(netns_path, port)
        if key in self._attachments:  # attached meanwhile by a concurrent call
            udp_sock.close()
            tcp_sock.close()
            raise ValueError(f"DNS already attached for {key}")
        loop = asyncio.get_running_loop()
        try:
            attachment.udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, attachment), sock=udp_sock
            )
            attachment.tcp = await asyncio.start_server(
                lambda r, w: self._serve_tcp(attachment, r, w), sock=tcp_sock
            )
        except BaseException:
            if attachment.udp is not None:
                attachment.udp.close()
            udp_sock.close()
            tcp_sock.close()
            raise
        self._attachments[key] = attachment

    async def _open(self, netns_path: str, port: int) -> tuple[socket.socket, socket.socket]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[socket.socket, socket.socket]] = loop.create_future()

        def run() -> None:
            try:
                socks = _sockets_in_netns(netns_path, port)
            except BaseException as e:
                loop.call_soon_threadsafe(_settle, done, None, e)
            else:
                loop.call_soon_threadsafe(_settle, done, socks, None)

        threading.Thread(target=run, name=f"dns-attach {netns_path}", daemon=True).start()
        return await done

    async def detach(self, key: str) -> None:
        """Close the namespace's sockets and connections; nothing if not attached."""
        attachment = self._attachments.pop(key, None)
        if attachment is None:
            return
        if attachment.udp is not None:
            attachment.udp.close()
        if attachment.tcp is not None:
            attachment.tcp.close()
        for writer in list(attachment.writers):
            writer.close()
        tasks = list(attachment.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if attachment.tcp is not None:
            await attachment.tcp.wait_closed()

    async def close(self) -> None:
        for key in list(self._attachments):
            await self.detach(key)

    async def answer(
        self,
        wire: bytes,
        scopes: Sequence[str],
        upstreams: Sequence[tuple[str, int]] | None = None,
        tcp: bool = False,
    ) -> bytes | None:
        """The reply to one query in wire format, or None to send nothing."""
        try:
            query = dns.message.from_wire(wire)
        except Exception as e:
            log.debug("dns: unreadable query (%d bytes): %s", len(wire), e)
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None
        response = respond(self.table, scopes, query)
        if response is None:
            resolvers = self.upstreams if upstreams is None else upstreams
            response = await self._forward(query, resolvers) if resolvers else None
            if response is None:
                response = _reply(query, dns.rcode.NXDOMAIN)
        return response.to_wire(  # in our order: dnspython would shuffle the rotation away
            max_size=65535 if tcp else _udp_limit(query), prefer_truncation=True, want_shuffle=False
        )

    async def _forward(
        self, query: dns.message.Message, upstreams: Sequence[tuple[str, int]]
    ) -> dns.message.Message:
        if self._forwarding >= MAX_FORWARDING:
            log.warning("dns: more than %d queries forwarded at once", MAX_FORWARDING)
            return _reply(query, dns.rcode.SERVFAIL)
        self._forwarding += 1
        try:
            for host, port in upstreams:
                response = await self._ask(query, host, port)
                if response is not None and response.rcode() not in (
                    dns.rcode.SERVFAIL,
                    dns.rcode.REFUSED,
                ):
                    return response
        finally:
            self._forwarding -= 1
        return _reply(query, dns.rcode.SERVFAIL)

    async def _ask(
        self, query: dns.message.Message, host: str, port: int
    ) -> dns.message.Message | None:
        try:
            response = await dns.asyncquery.udp(
                query, host, timeout=self.timeout, port=port, ignore_unexpected=True
            )
            if response.flags & dns.flags.TC:
                response = await dns.asyncquery.tcp(query, host, timeout=self.timeout, port=port)
        except (dns.exception.DNSException, OSError, EOFError) as e:
            log.debug("dns: upstream %s#%d failed: %r", host, port, e)
            return None
        return response

    async def _serve_tcp(
        self, attachment: _Attachment, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            attachment.tasks.add(task)
        attachment.writers.add(writer)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                    wire = await asyncio.wait_for(
                        reader.readexactly(struct.unpack("!H", head)[0]), TCP_IDLE
                    )
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    break
                reply = await self._answer_safely(attachment, wire, tcp=True)
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            attachment.writers.discard(writer)
            if task is not None:
                attachment.tasks.discard(task)
            writer.close()

    async def _answer_safely(self, attachment: _Attachment, wire: bytes, tcp: bool) -> bytes | None:
        try:
            return await self.answer(wire, attachment.scopes(), attachment.upstreams, tcp=tcp)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dns: dropped a query for %s", attachment.key)
            return None


def _settle(
    future: asyncio.Future[tuple[socket.socket, socket.socket]],
    result: tuple[socket.socket, socket.socket] | None,
    error: BaseException | None,
) -> None:
    if future.cancelled():
        if result is not None:
            for s in result:
                s.close()
        return
    if error is not None:
        future.set_exception(error)
    elif result is not None:
        future.set_result(result)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, attachment: _Attachment) -> None:
        self.server = server
        self.attachment = attachment
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if len(self.attachment.tasks) >= MAX_PENDING:
            log.debug("dns: %s: too many queries in flight, dropped one", self.attachment.key)
            return
        task = asyncio.ensure_future(self._send_reply(data, addr))
        self.attachment.tasks.add(task)
        task.add_done_callback(self.attachment.tasks.discard)

    async def _send_reply(self, data: bytes, addr: tuple[str | object, int]) -> None:
        reply = await self.server._answer_safely(self.attachment, data, tcp=False)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns: udp error for %s: %s", self.attachment.key, exc)
