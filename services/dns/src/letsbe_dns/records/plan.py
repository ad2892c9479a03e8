"""Which records a tenant's domain needs (seed §10.2, §10.3), as data: no I/O here.

``plan``: root A (+AAAA with IPv6) and a wildcard ``*.domain``; where the zone refuses wildcards, one record per
catalog subdomain of the selected tools instead. Published when the server is allocated.

``mail_plan``: with the ``stalwart`` tool, the mail records Stalwart's DNS guide lists (MX, SPF for the domain and
the mail host, DKIM, DMARC, TLS reporting, the RFC 6186 SRV records, the autoconfig / autodiscover names). Only
published on ``mail-ready``, once Stalwart runs behind open mail ports and signs with the key the DKIM record
carries: an MX and a ``p=reject`` DMARC before that would bounce or reject the domain's mail. No MTA-STS: the
tenant does not serve a policy at ``mta-sts.<domain>``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from letsbe_contracts import Catalog, OrderSpec, ServerTarget
from letsbe_contracts.mail import MAIL_SRV

MAIL_TOOL = "stalwart"
WILDCARD = "wildcard"


@dataclass(frozen=True)
class DesiredRecord:
    type: str
    name: str
    content: str
    purpose: str
    priority: int | None = None
    # How an existing record is recognised as "this one" (to leave it, or correct a stale value):
    # by type + name (A, AAAA, CNAME, SRV); for TXT by type + name + this prefix (an SPF record is the one
    # starting with "v=spf1"); additive types (MX) only by their exact content, so a customer's other MX stay.
    txt_prefix: str | None = None
    additive: bool = False

    def same_slot(self, content: str) -> bool:
        """Is an existing record of this type at this name the one this record should be?"""
        if self.additive:
            return self.equals(content, self.priority)
        if self.type == "TXT":
            return self.txt_prefix is not None and _txt(content).startswith(self.txt_prefix)
        return True

    def equals(self, content: str, priority: int | None) -> bool:
        if self.type in {"MX", "SRV"} and priority != self.priority:
            return False
        if self.type in {"A", "AAAA"}:
            try:
                return ipaddress.ip_address(content) == ipaddress.ip_address(self.content)
            except ValueError:
                return False
        if self.type == "TXT":
            return _txt(content) == self.content
        return content.lower().rstrip(".") == self.content.lower()


def _txt(content: str) -> str:
    # Cloudflare may list TXT content quoted; the value is the same.
    if len(content) >= 2 and content[0] == content[-1] == '"':
        return content[1:-1]
    return content


def plan(order: OrderSpec, server: ServerTarget, catalog: Catalog, *, wildcard: bool = True) -> list[DesiredRecord]:
    domain = order.domain
    out = _addresses(domain, server, "root")
    tools = [catalog.tool(name) for name in order.tools]  # KeyError: an unknown tool (caller decides)
    if wildcard:
        out += _addresses(f"*.{domain}", server, WILDCARD)
    else:
        for tool in tools:
            if tool.subdomain:
                out += _addresses(f"{tool.subdomain}.{domain}", server, f"tool:{tool.name}")
    return _unique(out)


def mail_plan(
    order: OrderSpec, server: ServerTarget, catalog: Catalog, *, dkim_selector: str, dkim_public_key: str
) -> list[DesiredRecord]:
    """The mail records of a tenant whose Stalwart runs and signs with ``dkim_public_key`` (RSA, base64 DER)."""
    if MAIL_TOOL not in order.tools:
        return []
    domain = order.domain
    mail_sub = catalog.tool(MAIL_TOOL).subdomain or "mail"
    mail = f"{mail_sub}.{domain}"
    # The SPF TXT on the mail host makes the name exist, and a wildcard never answers for an existing name
    # (RFC 4592): so the mail host gets its own address records even when a wildcard is there.
    out = _addresses(mail, server, "mail-host")
    postmaster = f"postmaster@{domain}"
    out += [
        DesiredRecord("MX", domain, mail, "mail-mx", priority=10, additive=True),
        DesiredRecord("TXT", domain, "v=spf1 mx ra=postmaster -all", "mail-spf", txt_prefix="v=spf1"),
        DesiredRecord("TXT", mail, "v=spf1 a ra=postmaster -all", "mail-host-spf", txt_prefix="v=spf1"),
        DesiredRecord(
            "TXT",
            f"{dkim_selector}._domainkey.{domain}",
            f"v=DKIM1; k=rsa; p={dkim_public_key}",
            "mail-dkim",
            txt_prefix="v=DKIM1",
        ),
        DesiredRecord(
            "TXT",
            f"_dmarc.{domain}",
            f"v=DMARC1; p=reject; rua=mailto:{postmaster}; ruf=mailto:{postmaster}",
            "mail-dmarc",
            txt_prefix="v=DMARC1",
        ),
        DesiredRecord(
            "TXT",
            f"_smtp._tls.{domain}",
            f"v=TLSRPTv1; rua=mailto:{postmaster}",
            "mail-tlsrpt",
            txt_prefix="v=TLSRPTv1",
        ),
        DesiredRecord("CNAME", f"autoconfig.{domain}", mail, "mail-autoconfig"),
        DesiredRecord("CNAME", f"autodiscover.{domain}", mail, "mail-autodiscover"),
    ]
    out += [
        DesiredRecord("SRV", f"{service}.{domain}", f"1 {port} {mail}", f"mail-srv:{service}", priority=0)
        for service, port in MAIL_SRV
    ]
    return _unique(out)


def _addresses(name: str, server: ServerTarget, purpose: str) -> list[DesiredRecord]:
    out = [DesiredRecord("A", name, str(server.ipv4), purpose)]
    if server.ipv6 is not None:
        out.append(DesiredRecord("AAAA", name, str(server.ipv6), purpose))
    return out


def _unique(records: list[DesiredRecord]) -> list[DesiredRecord]:
    unique: dict[tuple[str, str, str], DesiredRecord] = {}
    for record in records:
        unique.setdefault((record.type, record.name, record.content), record)
    return list(unique.values())
