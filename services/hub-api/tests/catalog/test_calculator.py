"""The public catalog and the resource calculator (seed §5.1–5.3)."""

import pytest

from letsbe_contracts import LETSBE_OVERHEAD_MB, load_catalog
from letsbe_hub.catalog.service import size
from letsbe_platform.errors import Unprocessable


def test_the_smallest_tier_that_fits_is_recommended_with_the_headroom_left():
    s = size(["nextcloud", "chatwoot", "odoo"])
    assert s.tools_ram_mb == 768 + 1024 + 1280  # each tool's stack: the app plus its database/redis
    assert s.overhead_ram_mb == LETSBE_OVERHEAD_MB == 1536
    assert s.total_ram_mb == 768 + 1024 + 1280 + 1536
    assert s.disk_gb == 10 + 5 + 10
    assert s.recommended_tier == "lite"
    assert s.fit("lite").ram_headroom_mb == 8192 - s.total_ram_mb
    assert s.fit("build").ram_headroom_mb == 16384 - s.total_ram_mb


def test_no_tools_still_needs_the_overhead_and_duplicates_count_once():
    assert size([]).total_ram_mb == 1536
    assert size(["ghost", "ghost"]).tools == ("ghost",)


def test_a_heavier_selection_moves_up_a_tier_and_an_impossible_one_gets_none():
    def scaled(factor: int):
        c = load_catalog()
        return c.model_copy(
            update={"tools": tuple(t.model_copy(update={"stack_ram_mb": t.stack_ram_mb * factor}) for t in c.tools)}
        )

    s = size(["nextcloud", "chatwoot"], scaled(10))  # 17920 MB + overhead: more than build's 16 GB
    assert s.recommended_tier == "scale"
    assert [f.fits for f in s.tiers] == [False, False, True, True]
    huge = scaled(20)
    everything = size([t.name for t in huge.selectable], huge)
    assert everything.recommended_tier is None and not any(f.fits for f in everything.tiers)


def test_unknown_and_system_tools_are_refused_by_name():
    with pytest.raises(Unprocessable) as err:
        size(["nextcloud", "wordpress", "certbot"])
    assert err.value.extra["unknown_tools"] == ["wordpress", "certbot"]
    assert "wordpress, certbot" in err.value.detail


async def test_the_public_endpoints_need_no_token(orders_hub):
    tools = (await orders_hub.client.get("/api/v1/public/tools")).json()
    assert tools["overhead_ram_mb"] == 1536
    names = [t["name"] for t in tools["tools"]]
    assert "nextcloud" in names and "certbot" not in names
    assert [t["tier"] for t in tools["tiers"]] == ["lite", "build", "scale", "enterprise"]

    r = await orders_hub.client.post("/api/v1/public/calculate", json={"tools": ["nextcloud", "ghost"]})
    assert r.status_code == 200
    body = r.json()
    assert body["total_ram_mb"] == 768 + 384 + 1536
    assert body["recommended_tier"] == "lite" and body["ram_headroom_mb"] == 8192 - body["total_ram_mb"]
    assert len(body["tiers"]) == 4

    r = await orders_hub.client.post("/api/v1/public/calculate", json={"tools": ["nextcloud", "Nope!"]})
    assert r.status_code == 422
    assert r.json()["unknown_tools"] == ["Nope!"]
    r = await orders_hub.client.post("/api/v1/public/calculate", json={"tools": "nextcloud"})
    assert r.status_code == 422 and r.json()["type"].endswith("/validation")
