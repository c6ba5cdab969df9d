"""The embedded DNS server's pure half: the table, `respond`, resolv.conf text, and the
bytes-in/bytes-out path of `DnsServer.answer` (no sockets, no upstreams)."""

from __future__ import annotations

import asyncio
import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import pytest

from agent.network.dns import DnsServer, parse_upstream
from agent.network.dns_table import (
    TTL,
    DnsTable,
    container_resolv_conf,
    respond,
    upstreams_from_resolv_conf,
)

pytestmark = pytest.mark.unit


def query(name: str, rdtype: str = "A", rdclass: str = "IN") -> dns.message.Message:
    return dns.message.make_query(name, rdtype, rdclass)


def addresses(response: dns.message.Message | None) -> list[str]:
    assert response is not None
    return [rd.to_text() for rrset in response.answer for rd in rrset]


@pytest.fixture
def table() -> DnsTable:
    t = DnsTable()
    t.add("front", "c1", ["web-1", "web", "www"], "10.0.1.2", "fd00:1::2")
    t.add("front", "c2", ["web-2", "web"], "10.0.1.3", None)
    t.add("back", "c3", ["db"], "10.0.2.2", None)
    t.add("back", "c1", ["web-1", "web"], "10.0.2.3", None)
    return t


# -- forward names -------------------------------------------------------------------------


def test_a_record_of_a_container(table: DnsTable) -> None:
    response = respond(table, ["back"], query("db"))
    assert response is not None
    assert response.rcode() == dns.rcode.NOERROR
    assert addresses(response) == ["10.0.2.2"]
    rrset = response.answer[0]
    assert rrset.ttl == TTL == 600
    assert rrset.rdtype == dns.rdatatype.A and rrset.rdclass == dns.rdataclass.IN


def test_response_copies_the_question_id_and_rd_and_sets_ra(table: DnsTable) -> None:
    q = query("db")
    response = respond(table, ["back"], q)
    assert response is not None
    assert response.id == q.id
    assert response.question == q.question
    assert response.flags & dns.flags.QR
    assert response.flags & dns.flags.RA
    assert response.flags & dns.flags.RD
    assert not response.flags & dns.flags.AA


def test_aaaa_record(table: DnsTable) -> None:
    assert addresses(respond(table, ["front"], query("web-1", "AAAA"))) == ["fd00:1::2"]


def test_aaaa_of_a_v4_only_container_is_nodata_not_forwarded(table: DnsTable) -> None:
    response = respond(table, ["back"], query("db", "AAAA"))
    assert response is not None
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []


@pytest.mark.parametrize("rdtype", ["MX", "TXT", "SRV", "CNAME", "PTR"])
def test_other_types_of_a_known_name_are_nodata(table: DnsTable, rdtype: str) -> None:
    response = respond(table, ["back"], query("db", rdtype))
    assert response is not None
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []


def test_any_gives_both_families(table: DnsTable) -> None:
    response = respond(table, ["front"], query("web-1", "ANY"))
    assert sorted(addresses(response)) == ["10.0.1.2", "fd00:1::2"]


def test_unknown_names_are_not_ours(table: DnsTable) -> None:
    assert respond(table, ["front", "back"], query("example.com")) is None
    assert respond(table, ["front", "back"], query("nope", "AAAA")) is None
    assert respond(table, ["front", "back"], query("nope", "MX")) is None


@pytest.mark.parametrize("name", ["DB", "Db.", "db.", "db"])
def test_names_ignore_case_and_trailing_dot(table: DnsTable, name: str) -> None:
    assert addresses(respond(table, ["back"], query(name))) == ["10.0.2.2"]


def test_names_added_with_case_and_dot_match_plain_queries() -> None:
    t = DnsTable()
    t.add("n", "c", ["My-App."], "10.9.0.2", None)
    assert addresses(respond(t, ["n"], query("my-app"))) == ["10.9.0.2"]


def test_aliases_answer_too(table: DnsTable) -> None:
    assert addresses(respond(table, ["front"], query("www"))) == ["10.0.1.2"]
    assert addresses(respond(table, ["front"], query("web-2"))) == ["10.0.1.3"]


def test_a_shared_name_answers_every_endpoint_rotated_per_query(table: DnsTable) -> None:
    orders = [addresses(respond(table, ["front"], query("web"))) for _ in range(4)]
    assert all(sorted(o) == ["10.0.1.2", "10.0.1.3"] for o in orders)
    assert {o[0] for o in orders} == {"10.0.1.2", "10.0.1.3"}
    assert orders[0] != orders[1] and orders[0] == orders[2]


def test_a_shared_name_with_one_v6_endpoint(table: DnsTable) -> None:
    assert addresses(respond(table, ["front"], query("web", "AAAA"))) == ["fd00:1::2"]


def test_a_name_on_another_network_is_not_visible(table: DnsTable) -> None:
    assert respond(table, ["front"], query("db")) is None
    assert respond(table, [], query("db")) is None
    assert respond(table, ["unknown"], query("db")) is None


def test_the_first_scope_that_knows_a_name_answers(table: DnsTable) -> None:
    assert addresses(respond(table, ["back", "front"], query("web-1"))) == ["10.0.2.3"]
    assert addresses(respond(table, ["front", "back"], query("web-1"))) == ["10.0.1.2"]


def test_a_later_scope_can_answer_a_type_the_first_lacks(table: DnsTable) -> None:
    assert addresses(respond(table, ["back", "front"], query("web-1", "AAAA"))) == ["fd00:1::2"]


# -- reverse names -------------------------------------------------------------------------


def ptr(address: str) -> dns.message.Message:
    return query(dns.reversename.from_address(address).to_text(), "PTR")


def test_ptr_v4_gives_the_container_name(table: DnsTable) -> None:
    response = respond(table, ["front"], ptr("10.0.1.2"))
    assert addresses(response) == ["web-1."]
    assert response is not None and response.answer[0].ttl == TTL


def test_ptr_v6(table: DnsTable) -> None:
    assert addresses(respond(table, ["front"], ptr("fd00:1::2"))) == ["web-1."]


def test_ptr_out_of_scope_or_unknown_is_forwarded(table: DnsTable) -> None:
    assert respond(table, ["front"], ptr("10.0.2.2")) is None
    assert respond(table, ["back"], ptr("10.0.2.99")) is None
    assert respond(table, ["back"], ptr("8.8.8.8")) is None


def test_partial_or_malformed_reverse_names_are_forwarded(table: DnsTable) -> None:
    assert respond(table, ["back"], query("2.0.10.in-addr.arpa", "PTR")) is None
    assert respond(table, ["back"], query("x.2.0.10.in-addr.arpa", "PTR")) is None
    assert respond(table, ["back"], query("in-addr.arpa", "PTR")) is None


def test_other_types_of_an_owned_reverse_name_are_nodata(table: DnsTable) -> None:
    name = dns.reversename.from_address("10.0.2.2").to_text()
    response = respond(table, ["back"], query(name, "A"))
    assert response is not None and response.answer == []


# -- odd messages --------------------------------------------------------------------------


def test_several_questions_are_formerr(table: DnsTable) -> None:
    q = query("db")
    q.question.append(query("web").question[0])
    response = respond(table, ["back"], q)
    assert response is not None and response.rcode() == dns.rcode.FORMERR


def test_no_question_is_formerr(table: DnsTable) -> None:
    q = dns.message.Message()
    response = respond(table, ["back"], q)
    assert response is not None and response.rcode() == dns.rcode.FORMERR


def test_other_opcodes_are_notimp(table: DnsTable) -> None:
    q = query("db")
    q.set_opcode(dns.opcode.UPDATE)
    response = respond(table, ["back"], q)
    assert response is not None and response.rcode() == dns.rcode.NOTIMP


def test_class_any_is_answered_and_other_classes_forwarded(table: DnsTable) -> None:
    assert addresses(respond(table, ["back"], query("db", "A", "ANY"))) == ["10.0.2.2"]
    assert respond(table, ["back"], query("db", "TXT", "CH")) is None


# -- the table -----------------------------------------------------------------------------


def test_remove_an_endpoint(table: DnsTable) -> None:
    table.remove("front", "c2")
    assert addresses(respond(table, ["front"], query("web"))) == ["10.0.1.2"]
    assert respond(table, ["front"], query("web-2")) is None
    assert respond(table, ["front"], ptr("10.0.1.3")) is None
    table.remove("front", "c2")  # twice: nothing
    table.remove("nowhere", "c2")


def test_removing_the_last_endpoint_forgets_the_network() -> None:
    t = DnsTable()
    t.add("n", "c", ["a"], "10.0.0.2", None)
    t.remove("n", "c")
    assert t.networks() == []


def test_remove_a_network(table: DnsTable) -> None:
    table.remove_network("back")
    assert respond(table, ["back"], query("db")) is None
    assert addresses(respond(table, ["front"], query("web-1"))) == ["10.0.1.2"]
    assert table.networks() == ["front"]
    table.remove_network("back")


def test_add_again_replaces_the_record(table: DnsTable) -> None:
    table.add("back", "c3", ["database"], "10.0.2.9", None)
    assert respond(table, ["back"], query("db")) is None
    assert addresses(respond(table, ["back"], query("database"))) == ["10.0.2.9"]
    assert len(table.records("back")) == 2


def test_add_rejects_bad_input() -> None:
    t = DnsTable()
    with pytest.raises(ValueError):
        t.add("n", "c", ["a" * 64], "10.0.0.2", None)
    with pytest.raises(ValueError):
        t.add("n", "c", ["a"], "fd00::1", None)
    with pytest.raises(ValueError):
        t.add("n", "c", ["a"], None, "10.0.0.2")
    with pytest.raises(ValueError):
        t.add("n", "c", [""], "10.0.0.2", None)


def test_an_endpoint_without_addresses_has_names_but_no_data() -> None:
    t = DnsTable()
    t.add("n", "c", ["lonely"], None, None)
    response = respond(t, ["n"], query("lonely"))
    assert response is not None and response.answer == []


# -- resolv.conf ---------------------------------------------------------------------------

HOST = """\
# written by the host
nameserver 127.0.0.53
nameserver 192.0.2.1
nameserver ::1
nameserver 2001:db8::53
search example.com corp.example
options edns0 timeout:2
"""


def test_upstreams_drop_loopback_nameservers() -> None:
    assert upstreams_from_resolv_conf(HOST) == ["192.0.2.1", "2001:db8::53"]
    assert upstreams_from_resolv_conf("nameserver 127.0.1.1\nnameserver ::1\n") == []
    loopback = upstreams_from_resolv_conf("nameserver 127.0.0.53\n", loopback=True)
    assert loopback == ["127.0.0.53"]
    assert upstreams_from_resolv_conf("nameserver bogus\n; nameserver 1.1.1.1\n") == []


def test_embedded_resolv_conf() -> None:
    text = container_resolv_conf(HOST, embedded=True)
    assert text == (
        "search example.com corp.example\nnameserver 127.0.0.11\noptions edns0 timeout:2 ndots:0\n"
    )


def test_embedded_resolv_conf_keeps_a_given_ndots_and_ignores_dns() -> None:
    text = container_resolv_conf(
        HOST, embedded=True, dns=["9.9.9.9"], search=["svc.local"], options=["ndots:2"]
    )
    assert text == "search svc.local\nnameserver 127.0.0.11\noptions ndots:2\n"


def test_bridge_resolv_conf_uses_the_hosts_non_loopback_nameservers() -> None:
    text = container_resolv_conf(HOST, embedded=False)
    assert text == (
        "search example.com corp.example\n"
        "nameserver 192.0.2.1\n"
        "nameserver 2001:db8::53\n"
        "options edns0 timeout:2\n"
    )


def test_bridge_resolv_conf_falls_back_to_public_servers() -> None:
    text = container_resolv_conf("nameserver 127.0.0.53\nsearch lan\n", embedded=False)
    assert text == "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def test_bridge_resolv_conf_with_given_dns_search_and_options() -> None:
    text = container_resolv_conf(
        HOST, embedded=False, dns=["10.1.1.1"], search=["."], options=["rotate"]
    )
    assert text == "nameserver 10.1.1.1\noptions rotate\n"


def test_last_search_line_wins() -> None:
    text = container_resolv_conf("search a\ndomain b\n", embedded=True)
    assert text == "search b\nnameserver 127.0.0.11\noptions ndots:0\n"


# -- upstream addresses and the server's wire path ----------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        ("2001:db8::1", ("2001:db8::1", 53)),
        ("[2001:db8::1]", ("2001:db8::1", 53)),
        ("[2001:db8::1]:5300", ("2001:db8::1", 5300)),
    ],
)
def test_parse_upstream(text: str, expected: tuple[str, int]) -> None:
    assert parse_upstream(text) == expected


@pytest.mark.parametrize("text", ["dns.google", "1.2.3.4:0", "[::1", "[::1]x", "1.2.3.4:x"])
def test_parse_upstream_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_upstream(text)


def answer(server: DnsServer, wire: bytes, scopes: list[str], tcp: bool = False) -> bytes | None:
    return asyncio.run(server.answer(wire, scopes, tcp=tcp))


def test_answer_without_upstreams_is_nxdomain_for_unknown_names(table: DnsTable) -> None:
    server = DnsServer(table)
    reply = answer(server, query("elsewhere.example").to_wire(), ["back"])
    assert reply is not None
    response = dns.message.from_wire(reply)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.RA


def test_answer_junk_gets_formerr_or_nothing(table: DnsTable) -> None:
    server = DnsServer(table)
    assert answer(server, b"\x01", ["back"]) is None
    junk = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\xff\xff"
    reply = answer(server, junk, ["back"])
    assert reply is not None
    qid, flags, *counts = struct.unpack("!HHHHHH", reply)
    assert qid == 0xBEEF and flags & 0x8000 and flags & 0x0100 and flags & 0x0080
    assert flags & 0xF == dns.rcode.FORMERR and counts == [0, 0, 0, 0]


def test_answer_ignores_responses(table: DnsTable) -> None:
    response = respond(table, ["back"], query("db"))
    assert response is not None
    assert answer(DnsServer(table), response.to_wire(), ["back"]) is None


def test_big_udp_answers_are_truncated_but_not_over_tcp() -> None:
    t = DnsTable()
    for i in range(60):
        t.add("n", f"c{i}", ["many"], f"10.0.0.{i + 2}", f"fd00::{i + 2}")
    server = DnsServer(t)
    wire = query("many", "ANY").to_wire()
    udp = answer(server, wire, ["n"])
    assert udp is not None and len(udp) <= 512
    assert dns.message.from_wire(udp).flags & dns.flags.TC
    tcp = answer(server, wire, ["n"], tcp=True)
    assert tcp is not None
    assert len(addresses(dns.message.from_wire(tcp))) == 120
