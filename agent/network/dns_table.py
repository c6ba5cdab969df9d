"""The pure half of the embedded DNS server: its records, its answers, and resolv.conf text.

A container on a user-defined network asks 127.0.0.11 (Docker's embedded resolver) for
the names of its peers. What it may see is scoped: `DnsTable` keeps records per network
id, each record keyed by the endpoint it belongs to (a container id), holding the names
the endpoint answers to (its container name first, then aliases and service names) and
its IPv4 and IPv6 addresses. Several endpoints may share a name (replicas of a service):
the answer then carries all their addresses, rotated one step per query so clients that
take the first address spread their load.

`respond(table, scopes, query)` decides one query for a container attached to the
networks `scopes` (in the order the container joined them). It is a function of the table
and the query and never does I/O:

- a message that is not one standard query with one question gets FORMERR (several or no
  questions) or NOTIMP (another opcode), as an authoritative server would answer it;
- A/AAAA (or ANY) for a name known in a scope: its addresses, TTL 600. The first scope,
  in order, that has addresses of the asked type answers, as Docker resolves through a
  container's networks in order;
- a known name with no record of the asked type (AAAA of an IPv4-only container, MX,
  TXT...): NOERROR with an empty answer (NODATA). Never forwarded: the upstream would
  only say NXDOMAIN for a name that exists here;
- PTR of an address held by an endpoint in scope: its first name (the container name);
- anything else, including unknown reverse names and classes other than IN/ANY (our
  records are class IN): None, meaning "not ours, forward it upstream".

Answers copy the question, the id and RD, and set RA (the server recurses for the
container through its upstreams). They are not authoritative (AA clear), like Docker's.

`upstreams_from_resolv_conf` and `container_resolv_conf` turn the host's resolv.conf into
the embedded server's upstreams and into the text of a container's /etc/resolv.conf, the
way Docker does (loopback nameservers dropped, Google's public servers as a last resort
on the default bridge, "options ndots:0" next to the embedded server).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

__all__ = [
    "EMBEDDED_NAMESERVER",
    "FALLBACK_NAMESERVERS",
    "TTL",
    "DnsTable",
    "Record",
    "container_resolv_conf",
    "respond",
    "upstreams_from_resolv_conf",
]

TTL = 600
EMBEDDED_NAMESERVER = "127.0.0.11"
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
_UDP_PAYLOAD = 1232


@dataclass(frozen=True)
class Record:
    """One endpoint on one network: the names it answers to and its addresses."""

    key: str
    names: tuple[dns.name.Name, ...]
    ipv4: str | None
    ipv6: str | None


def _name(text: str) -> dns.name.Name:
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as e:
        raise ValueError(f"invalid DNS name {text!r}: {e}") from e
    if name == dns.name.root:
        raise ValueError("empty DNS name")
    return name


def _address(text: str | None, version: int) -> str | None:
    if text is None:
        return None
    addr = ipaddress.ip_address(text)
    if addr.version != version:
        raise ValueError(f"{text} is not an IPv{version} address")
    return str(addr)


class DnsTable:
    """Records per network id; names compare case-insensitively, trailing dot or not.

    Mutated by the agent as endpoints join and leave networks; read by `respond`.
    `dns.name.Name` already compares and hashes case-insensitively, so it is the key.
    """

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Record]] = {}
        self._turn = itertools.count()

    def add(
        self,
        network_id: str,
        key: str,
        names: Sequence[str],
        ipv4: str | None,
        ipv6: str | None,
    ) -> None:
        """Add (or replace) endpoint `key` on `network_id`."""
        unique = tuple(dict.fromkeys(_name(n) for n in names))
        record = Record(key, unique, _address(ipv4, 4), _address(ipv6, 6))
        self._records.setdefault(network_id, {})[key] = record

    def remove(self, network_id: str, key: str) -> None:
        network = self._records.get(network_id)
        if network is not None:
            network.pop(key, None)
            if not network:
                del self._records[network_id]

    def remove_network(self, network_id: str) -> None:
        self._records.pop(network_id, None)

    def records(self, network_id: str) -> list[Record]:
        return list(self._records.get(network_id, {}).values())

    def networks(self) -> list[str]:
        return list(self._records)

    def named(self, scope: str, name: dns.name.Name) -> list[Record]:
        return [r for r in self._records.get(scope, {}).values() if name in r.names]

    def holding(self, scope: str, address: str) -> Record | None:
        for r in self._records.get(scope, {}).values():
            if address in (r.ipv4, r.ipv6):
                return r
        return None

    def rotation(self) -> int:
        """A number that grows by one per call: how far to rotate a shared name's answer."""
        return next(self._turn)


def _response(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query, recursion_available=True, our_payload=_UDP_PAYLOAD)
    response.set_rcode(rcode)
    return response


def _rotated(items: list[str], turn: int) -> list[str]:
    if len(items) < 2:
        return items
    k = turn % len(items)
    return items[k:] + items[:k]


def _forward_answer(
    table: DnsTable, scopes: Sequence[str], qname: dns.name.Name, qtype: dns.rdatatype.RdataType
) -> list[dns.rrset.RRset] | None:
    """The RRsets for a forward name; [] for NODATA, None if the name is unknown."""
    wanted = {
        dns.rdatatype.A: [dns.rdatatype.A],
        dns.rdatatype.AAAA: [dns.rdatatype.AAAA],
        dns.rdatatype.ANY: [dns.rdatatype.A, dns.rdatatype.AAAA],
    }.get(qtype, [])
    answer: list[dns.rrset.RRset] = []
    for rdtype in wanted:
        for scope in scopes:
            records = table.named(scope, qname)
            found = [r.ipv4 if rdtype == dns.rdatatype.A else r.ipv6 for r in records]
            addresses = list(dict.fromkeys(a for a in found if a))
            if addresses:
                turn = table.rotation() if len(addresses) > 1 else 0
                rdatas = _rotated(addresses, turn)
                answer.append(
                    dns.rrset.from_text_list(qname, TTL, dns.rdataclass.IN, rdtype, rdatas)
                )
                break
    if answer:
        return answer
    if any(table.named(scope, qname) for scope in scopes):
        return []
    return None


def _reverse_answer(
    table: DnsTable, scopes: Sequence[str], qname: dns.name.Name, qtype: dns.rdatatype.RdataType
) -> list[dns.rrset.RRset] | None:
    """The PTR RRset for a reverse name in scope; [] for NODATA, None if not ours."""
    try:
        address = str(ipaddress.ip_address(dns.reversename.to_address(qname)))
    except (dns.exception.DNSException, ValueError):
        return None
    for scope in scopes:
        record = table.holding(scope, address)
        if record is not None and record.names:
            if qtype not in (dns.rdatatype.PTR, dns.rdatatype.ANY):
                return []
            target = record.names[0].to_text()
            return [dns.rrset.from_text(qname, TTL, dns.rdataclass.IN, dns.rdatatype.PTR, target)]
    return None


_REVERSE_ZONES = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))


def respond(
    table: DnsTable, scopes: Sequence[str], query: dns.message.Message
) -> dns.message.Message | None:
    """The answer to `query` from a container on networks `scopes`, or None to forward."""
    if query.opcode() != dns.opcode.QUERY:
        return _response(query, dns.rcode.NOTIMP)
    if len(query.question) != 1:
        return _response(query, dns.rcode.FORMERR)
    question = query.question[0]
    if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
        return None
    qname, qtype = question.name, question.rdtype
    if any(qname.is_subdomain(zone) for zone in _REVERSE_ZONES):
        rrsets = _reverse_answer(table, scopes, qname, qtype)
    else:
        rrsets = _forward_answer(table, scopes, qname, qtype)
    if rrsets is None:
        return None
    response = _response(query, dns.rcode.NOERROR)
    response.answer.extend(rrsets)
    return response


# -- resolv.conf ------------------------------------------------------------------------


@dataclass(frozen=True)
class _ResolvConf:
    nameservers: tuple[str, ...]
    search: tuple[str, ...]
    options: tuple[str, ...]


def _parse_resolv_conf(text: str) -> _ResolvConf:
    """glibc's reading: the last search/domain line wins, options lines add up."""
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0][0] in "#;":
            continue
        keyword, values = fields[0], fields[1:]
        if keyword == "nameserver" and values:
            nameservers.append(values[0])
        elif keyword in ("search", "domain"):
            search = values
        elif keyword == "options":
            options.extend(values)
    return _ResolvConf(tuple(nameservers), tuple(search), tuple(options))


def _is_loopback(server: str) -> bool:
    try:
        return ipaddress.ip_address(server.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _valid_ip(server: str) -> bool:
    try:
        ipaddress.ip_address(server.split("%", 1)[0])
    except ValueError:
        return False
    return True


def upstreams_from_resolv_conf(text: str, *, loopback: bool = False) -> list[str]:
    """The host's nameservers a container can use: loopback ones (127.*, ::1) dropped,
    unless `loopback` (the embedded DNS forwards from the node, where they answer)."""
    servers = _parse_resolv_conf(text).nameservers
    return [s for s in servers if _valid_ip(s) and (loopback or not _is_loopback(s))]


def _render(nameservers: Iterable[str], search: Sequence[str], options: Sequence[str]) -> str:
    lines: list[str] = []
    if search and " ".join(search).strip() != ".":
        lines.append("search " + " ".join(search))
    lines.extend(f"nameserver {s}" for s in nameservers)
    if options:
        lines.append("options " + " ".join(options))
    return "".join(line + "\n" for line in lines)


def container_resolv_conf(
    host_resolv_text: str,
    embedded: bool,
    dns: Sequence[str] = (),
    search: Sequence[str] = (),
    options: Sequence[str] = (),
) -> str:
    """A container's /etc/resolv.conf, from the host's and the container's dns settings.

    `embedded` (user-defined networks): the embedded server is the only nameserver; the
    `dns` list is then the server's upstreams, not written here. "ndots:0" is added
    unless the options already set ndots. Otherwise (the default bridge): `dns`, or the
    host's nameservers without loopback ones, or 8.8.8.8 and 8.8.4.4 if none remain.
    `search` and `options`, when given, replace the host's; a search of "." means none.
    """
    host = _parse_resolv_conf(host_resolv_text)
    search = tuple(search) or host.search
    options = tuple(options) or host.options
    if embedded:
        if not any(o.startswith("ndots:") for o in options):
            options = (*options, "ndots:0")
        return _render([EMBEDDED_NAMESERVER], search, options)
    nameservers = list(dns) or upstreams_from_resolv_conf(host_resolv_text)
    return _render(nameservers or FALLBACK_NAMESERVERS, search, options)
