"""One recurring Stripe Price per tier and region: configured (``stripe_price_ids``) or found/created by lookup_key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from letsbe_contracts.enums import Region, Tier
from letsbe_hub.config import HubSettings
from letsbe_hub.orders.models import Order
from letsbe_hub.payments.errors import PaymentsNotConfigured
from letsbe_hub.payments.gateway import PaymentGateway, PriceSpec
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

WEBSITE = "website"  # the creator of orders from the public route: each is a subscription


def lookup_key(tier: str, region: str, currency: str) -> str:
    return f"letsbe_{tier}_{region}_monthly_{currency}"


def tier_of_lookup_key(key: str | None) -> tuple[Tier, Region] | None:
    """(tier, region) of one of our lookup keys; None for anything else."""
    parts = (key or "").split("_")
    if len(parts) != 5 or parts[0] != "letsbe" or parts[3] != "monthly":
        return None
    try:
        return Tier(parts[1]), Region(parts[2])
    except ValueError:
        return None


class PriceBook:
    def __init__(self, gateway: PaymentGateway | None, settings: HubSettings):
        self.gateway = gateway
        self.settings = settings
        self._ids: dict[str, str] = dict(settings.stripe_price_ids)
        self._lock = asyncio.Lock()

    async def price_for(self, tier: Tier, region: Region) -> str:
        key = f"{tier.value}:{region.value}"
        if key in self._ids:
            return self._ids[key]
        if self.gateway is None:
            raise PaymentsNotConfigured("Set LETSBE_HUB_STRIPE_SECRET_KEY to take subscriptions.")
        async with self._lock:  # one Stripe look-up per pair, however many requests wait for it
            if key not in self._ids:
                currency = self.settings.stripe_currency
                self._ids[key] = await self.gateway.ensure_price(
                    PriceSpec(
                        lookup_key=lookup_key(tier.value, region.value, currency),
                        product_name=f"LetsBe {tier.value.title()} server ({region.value.upper()})",
                        unit_amount=self.settings.tier_prices_cents[tier],
                        currency=currency,
                    )
                )
                log.info("stripe price ready", tier=tier.value, region=region.value, price_id=self._ids[key])
        return self._ids[key]

    async def price_for_order(self, order: Order) -> str | None:
        """The Price of a website (subscription) order; None for an operator's one-time order."""
        if order.created_by != WEBSITE:
            return None
        return await self.price_for(Tier(order.tier), Region(order.region))

    def tier_of(self, price_id: str, price_lookup_key: str | None) -> tuple[Tier, Region] | None:
        found = tier_of_lookup_key(price_lookup_key)
        if found is not None:
            return found
        for key, known in self._ids.items():
            if known == price_id:
                tier, _, region = key.partition(":")
                return Tier(tier), Region(region)
        return None

    async def warm(self, stopping: Callable[[], bool] = lambda: False) -> None:
        """Resolve every pair at start-up, so the first customers do not wait on Stripe (failures retry lazily).
        Gives up between pairs once ``stopping()``: a hub shutting down does not wait for Stripe first."""
        for tier in Tier:
            for region in Region:
                if stopping():
                    return
                try:
                    await self.price_for(tier, region)
                except Exception as exc:  # Stripe unreachable now: the order route tries again when asked
                    log.warning("stripe price not ready", tier=tier.value, region=region.value, error=repr(exc))
                    return
