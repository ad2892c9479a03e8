"""Which records a domain gets, from the order and the catalog (no I/O)."""

from __future__ import annotations

import pytest

from letsbe_contracts import load_catalog
from letsbe_dns.records.plan import plan


def names(records, type_=None):
    return sorted({r.name for r in records if type_ is None or r.type == type_})


def test_root_and_wildcard_point_at_the_server(kit):
    records = plan(kit.order_spec("ghost", "nextcloud"), kit.server_target("127.0.0.10"), load_catalog())
    assert [(r.type, r.name, r.content) for r in records] == [
        ("A", "example.com", "127.0.0.10"),
        ("A", "*.example.com", "127.0.0.10"),
    ]


def test_ipv6_adds_aaaa_next_to_every_a(kit):
    records = plan(kit.order_spec("ghost"), kit.server_target("127.0.0.10", "2001:db8::10"), load_catalog())
    assert names(records, "A") == names(records, "AAAA") == ["*.example.com", "example.com"]
    assert {r.content for r in records if r.type == "AAAA"} == {"2001:db8::10"}


def test_without_wildcard_exactly_the_catalog_subdomains_of_the_selected_tools(kit):
    records = plan(kit.order_spec("ghost", "nextcloud", "calcom"), kit.server_target(), load_catalog(), wildcard=False)
    assert names(records, "A") == ["blog.example.com", "cal.example.com", "example.com", "files.example.com"]
    assert not any(r.name.startswith("*") for r in records)


@pytest.mark.parametrize("wildcard", [True, False])
def test_stalwart_brings_the_mail_records_stalwart_documents(kit, wildcard):
    records = plan(kit.order_spec("stalwart"), kit.server_target(), load_catalog(), wildcard=wildcard)
    by = {(r.type, r.name): r for r in records}
    assert by[("MX", "example.com")].content == "mail.example.com"
    assert by[("MX", "example.com")].priority == 10
    assert by[("TXT", "example.com")].content.startswith("v=spf1 mx")
    assert by[("TXT", "mail.example.com")].content.startswith("v=spf1 a")
    assert by[("TXT", "_dmarc.example.com")].content.startswith("v=DMARC1; p=reject")
    assert by[("TXT", "_smtp._tls.example.com")].content.startswith("v=TLSRPTv1")
    assert by[("CNAME", "autoconfig.example.com")].content == "mail.example.com"
    assert by[("CNAME", "autodiscover.example.com")].content == "mail.example.com"
    assert by[("SRV", "_imaps._tcp.example.com")].content == "1 993 mail.example.com"
    assert by[("SRV", "_submissions._tcp.example.com")].content == "1 465 mail.example.com"
    # The mail host has its own TXT, so a wildcard would not answer for it: it always gets an A record.
    assert by[("A", "mail.example.com")].content == "127.0.0.10"


def test_no_mail_records_without_stalwart(kit):
    records = plan(kit.order_spec("ghost"), kit.server_target(), load_catalog())
    assert not [r for r in records if r.type in {"MX", "TXT", "SRV", "CNAME"}]


def test_an_unknown_tool_is_an_error(kit):
    with pytest.raises(KeyError):
        plan(kit.order_spec("not_a_tool"), kit.server_target(), load_catalog())
