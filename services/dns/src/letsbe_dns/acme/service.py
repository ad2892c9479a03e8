"""DNS-01 for a tenant's own names: set / remove ``_acme-challenge.<domain>`` TXT and wait until it is served.

Only the tenant's domain or names below it; several values may coexist at one name (a certificate for
``example.com`` and ``*.example.com`` asks for two), so a challenge is matched by its exact value, never replaced.
"""

from __future__ import annotations

from letsbe_contracts.hub import AgentPrincipal
from letsbe_dns.acme.errors import ChallengeNotVisible, CloudflareRefused, NotYourDomain
from letsbe_dns.acme.schemas import AcmeChallenge, AcmeChallengeRecord
from letsbe_dns.cloudflare import CloudflareError
from letsbe_dns.records import repository
from letsbe_dns.records.plan import DesiredRecord
from letsbe_dns.records.service import RecordsService
from letsbe_dns.verify import NotVisible
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

PURPOSE = "acme-challenge"


def challenge_name(domain: str) -> str:
    return f"_acme-challenge.{domain}"


def check_domain(agent: AgentPrincipal, domain: str) -> None:
    if domain != agent.domain and not domain.endswith("." + agent.domain):
        raise NotYourDomain(f"{domain} is not {agent.domain} or a name below it")


class AcmeService:
    def __init__(self, records: RecordsService):
        self.records = records

    async def set(self, agent: AgentPrincipal, body: AcmeChallenge) -> AcmeChallengeRecord:
        check_domain(agent, body.domain)
        desired = DesiredRecord("TXT", challenge_name(body.domain), body.validation, PURPOSE, additive=True)
        try:
            async with self.records.domain_lock(agent.domain):
                zone = await self.records.provider.find_zone(body.domain)
                applied = await self.records.upsert(zone, desired, agent.tenant_id, agent.domain)
        except CloudflareError as exc:
            raise CloudflareRefused(exc.message) from None
        try:
            await self.records.verifier.wait_visible(
                zone, [applied.expected()], timeout=self.records.settings.acme_visible_timeout_seconds
            )
        except NotVisible as exc:
            raise ChallengeNotVisible(str(exc), record_id=applied.record.id) from None
        log.info("acme challenge set", tenant_id=str(agent.tenant_id), name=desired.name)
        return AcmeChallengeRecord(
            name=desired.name, content=desired.content, record_id=applied.record.id, visible=True
        )

    async def remove(self, agent: AgentPrincipal, body: AcmeChallenge) -> int:
        """Delete the challenge records with this value that we set for this tenant. Returns how many."""
        check_domain(agent, body.domain)
        name = challenge_name(body.domain)
        async with unit_of_work(self.records.sessions) as session:
            rows = await repository.live_challenges(session, agent.tenant_id, name, body.validation)
        removed = 0
        for row in rows:
            try:
                await self.records.provider.delete_record(row.zone_id, row.record_id)
            except CloudflareError as exc:
                raise CloudflareRefused(exc.message) from None
            async with unit_of_work(self.records.sessions) as session:
                await repository.mark_deleted(session, row.id)
            removed += 1
        log.info("acme challenge removed", tenant_id=str(agent.tenant_id), name=name, removed=removed)
        return removed
