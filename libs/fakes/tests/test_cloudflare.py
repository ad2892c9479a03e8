"""The Cloudflare fake speaks the v4 envelope and codes, and its DNS server answers like an authoritative server."""

from __future__ import annotations

from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import httpx
import pytest

from letsbe_fakes import LoopbackServer
from letsbe_fakes.cloudflare import FakeCloudflare


@pytest.fixture
def cf() -> Iterator[tuple[FakeCloudflare, httpx.Client, int]]:
    fake = FakeCloudflare(default_per_page=2)
    fake.add_zone("example.com")
    with LoopbackServer(fake.app) as srv, fake.dns_server() as ns:
        headers = {"Authorization": f"Bearer {fake.token}"}
        with httpx.Client(base_url=srv.url + "/client/v4", headers=headers) as client:
            yield fake, client, ns.port


def zone_id(fake: FakeCloudflare) -> str:
    return fake.zone("example.com").id


def answers(port: int, name: str, rtype: str) -> tuple[str, list[str]]:
    response = dns.query.udp(dns.message.make_query(name, rtype), "127.0.0.1", port=port, timeout=2)
    return dns.rcode.to_text(response.rcode()), sorted(rd.to_text() for rrset in response.answer for rd in rrset)


def test_errors_use_cloudflares_envelope_and_codes(cf):
    fake, client, _ = cf
    no_auth = httpx.get(str(client.base_url) + "/zones")
    assert no_auth.status_code == 400
    assert no_auth.json() == {
        "success": False,
        "errors": [{"code": 9106, "message": "Missing X-Auth-Key, X-Auth-Email or Authorization headers"}],
        "messages": [],
        "result": None,
    }
    wrong = client.get("/zones", headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["errors"][0]["code"]) == (403, 10000)
    assert client.get("/zones/not-an-id/dns_records").json()["errors"][0]["code"] == 7003
    missing = client.delete(f"/zones/{zone_id(fake)}/dns_records/{'0' * 32}")
    assert (missing.status_code, missing.json()["errors"][0]["code"]) == (404, 81044)


def test_create_validates_and_refuses_duplicates(cf):
    fake, client, _ = cf
    url = f"/zones/{zone_id(fake)}/dns_records"
    ok = client.post(url, json={"type": "A", "name": "www", "content": "127.0.0.5", "ttl": 1})
    assert ok.json()["success"] is True
    assert ok.json()["result"]["name"] == "www.example.com"
    dup = client.post(url, json={"type": "A", "name": "www.example.com", "content": "127.0.0.5"})
    assert dup.json()["errors"][0]["code"] == 81058
    cname = client.post(url, json={"type": "CNAME", "name": "www", "content": "elsewhere.example.net"})
    assert cname.json()["errors"][0]["code"] == 81053
    bad = client.post(url, json={"type": "A", "name": "x", "content": "not-an-ip"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["code"] == 1004
    assert bad.json()["errors"][0]["error_chain"][0]["code"] == 9005


def test_wildcard_refusal_is_a_validation_error(cf):
    fake, client, _ = cf
    fake.refuse_wildcards("example.com")
    r = client.post(f"/zones/{zone_id(fake)}/dns_records", json={"type": "A", "name": "*", "content": "127.0.0.5"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["error_chain"][0]["code"] == 9021
    assert fake.records("example.com") == []


def test_list_filters_and_paginates_with_result_info(cf):
    fake, client, _ = cf
    for i in range(5):
        fake.add_record("example.com", "A", f"h{i}", f"127.0.0.{i + 1}")
    fake.add_record("example.com", "TXT", "@", "hello")
    page = client.get(f"/zones/{zone_id(fake)}/dns_records", params={"type": "A", "page": 3}).json()
    assert page["result_info"] == {"page": 3, "per_page": 2, "count": 1, "total_count": 5, "total_pages": 3}
    one = client.get(f"/zones/{zone_id(fake)}/dns_records", params={"name.exact": "h2.example.com"}).json()
    assert [r["content"] for r in one["result"]] == ["127.0.0.3"]


def test_rate_limit_answers_429_with_retry_after_then_recovers(cf):
    fake, client, _ = cf
    fake.rate_limit_next(1, retry_after=7)
    limited = client.get("/zones")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert limited.json()["errors"][0]["code"] == 971
    assert client.get("/zones").status_code == 200


def test_dns_serves_current_records_authoritatively(cf):
    fake, client, port = cf
    url = f"/zones/{zone_id(fake)}/dns_records"
    client.post(url, json={"type": "A", "name": "*", "content": "127.0.0.7"})
    rec = client.post(url, json={"type": "A", "name": "www", "content": "127.0.0.8"}).json()["result"]
    client.post(url, json={"type": "TXT", "name": "www", "content": "v=spf1 a -all"})
    client.post(url, json={"type": "MX", "name": "@", "content": "mail.example.com", "priority": 10})

    assert answers(port, "www.example.com", "A") == ("NOERROR", ["127.0.0.8"])
    assert answers(port, "anything.example.com", "A") == ("NOERROR", ["127.0.0.7"])  # wildcard synthesis
    assert answers(port, "example.com", "MX") == ("NOERROR", ["10 mail.example.com."])
    assert answers(port, "www.example.com", "AAAA") == ("NOERROR", [])  # exists, no such type: NODATA
    assert answers(port, "elsewhere.org", "A")[0] == "REFUSED"

    client.patch(f"{url}/{rec['id']}", json={"content": "127.0.0.9"})
    assert answers(port, "www.example.com", "A") == ("NOERROR", ["127.0.0.9"])
    client.delete(f"{url}/{rec['id']}")
    # www still has its TXT, so the wildcard does not answer for it (RFC 4592).
    assert answers(port, "www.example.com", "A") == ("NOERROR", [])


def test_dns_without_a_wildcard_says_nxdomain(cf):
    _, _, port = cf
    assert answers(port, "missing.example.com", "A") == ("NXDOMAIN", [])


def test_dns_delay_holds_changes_back(cf):
    fake, client, port = cf
    fake.dns_delay(30)
    client.post(f"/zones/{zone_id(fake)}/dns_records", json={"type": "A", "name": "late", "content": "127.0.0.5"})
    assert answers(port, "late.example.com", "A") == ("NXDOMAIN", [])


def test_hold_dns_serves_changes_only_once_released(cf):
    fake, client, port = cf
    fake.hold_dns()
    client.post(f"/zones/{zone_id(fake)}/dns_records", json={"type": "A", "name": "held", "content": "127.0.0.6"})
    assert answers(port, "held.example.com", "A") == ("NXDOMAIN", [])
    fake.hold_dns(False)
    assert answers(port, "held.example.com", "A") == ("NOERROR", ["127.0.0.6"])
