"""Which records a domain gets, from the order and the catalog (no I/O)."""

from __future__ import annotations

import pytest

from letsbe_contracts import load_catalog
from letsbe_dns.records.plan import mail_plan, plan

DKIM = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 348


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
def test_no_mail_record_is_published_when_the_server_is_allocated(kit, wildcard):
    # Stalwart is not running yet and the firewall not open: an MX or a p=reject DMARC now would lose mail.
    records = plan(kit.order_spec("stalwart", "ghost"), kit.server_target(), load_catalog(), wildcard=wildcard)
    assert {r.type for r in records} == {"A"}
    assert not [r for r in records if r.purpose.startswith("mail")]


def test_mail_ready_brings_the_mail_records_stalwart_documents_with_its_dkim_key(kit):
    records = mail_plan(
        kit.order_spec("stalwart"), kit.server_target(), load_catalog(), dkim_selector="letsbe", dkim_public_key=DKIM
    )
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
    assert by[("TXT", "letsbe._domainkey.example.com")].content == f"v=DKIM1; k=rsa; p={DKIM}"
    assert by[("TXT", "letsbe._domainkey.example.com")].same_slot("v=DKIM1; k=rsa; p=an-older-key")
    assert not [r for r in records if r.name.startswith("mta-sts.") or r.name.startswith("_mta-sts.")]


def test_no_mail_records_without_stalwart(kit):
    records = plan(kit.order_spec("ghost"), kit.server_target(), load_catalog())
    assert not [r for r in records if r.type in {"MX", "TXT", "SRV", "CNAME"}]
    order, server = kit.order_spec("ghost"), kit.server_target()
    assert mail_plan(order, server, load_catalog(), dkim_selector="s", dkim_public_key=DKIM) == []


def test_an_unknown_tool_is_an_error(kit):
    with pytest.raises(KeyError):
        plan(kit.order_spec("not_a_tool"), kit.server_target(), load_catalog())
