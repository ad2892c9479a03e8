import json
from importlib import resources

import pytest
from pydantic import ValidationError

from letsbe_contracts import LETSBE_OVERHEAD_MB, Catalog, Tier, load_catalog

# Every tool the seed names: §3.3 (container layout), §5.3 (resource registry), §10.2 (subdomains).
SEED_TOOLS = {
    "nextcloud",
    "chatwoot",
    "ghost",
    "calcom",
    "stalwart",
    "odoo",
    "keycloak",
    "listmonk",
    "nocodb",
    "umami",
    "uptime_kuma",
    "portainer",
    "activepieces",
    "certbot",
    "bookstack",
}
SEED_SUBDOMAINS = {  # §10.2
    "nextcloud": "files",
    "chatwoot": "chat",
    "ghost": "blog",
    "calcom": "cal",
    "stalwart": "mail",
    "odoo": "erp",
    "bookstack": "wiki",
    "uptime_kuma": "status",
    "portainer": "portainer",
}
SEED_PORTS = {  # §3.3
    "nextcloud": 3023,
    "chatwoot": 3019,
    "ghost": 3025,
    "calcom": 3044,
    "stalwart": 3011,
    "odoo": 3035,
    "keycloak": 3043,
    "listmonk": 3026,
    "nocodb": 3037,
    "umami": 3029,
    "uptime_kuma": 3033,
    "portainer": 9443,
    "activepieces": 3040,
}
SEED_REGISTRY = {  # §5.3 ram_mb, disk_gb, requires_db, requires_redis
    "nextcloud": (512, 10, "postgres", False),
    "chatwoot": (768, 5, "postgres", True),
    "ghost": (256, 3, "mysql", False),
    "odoo": (1024, 10, "postgres", False),
    "calcom": (256, 2, "postgres", False),
    "stalwart": (256, 5, None, False),
    "keycloak": (512, 2, "postgres", False),
    "listmonk": (256, 2, "postgres", False),
    "nocodb": (256, 2, None, False),
    "umami": (192, 1, "postgres", False),
    "uptime_kuma": (128, 1, None, False),
    "portainer": (128, 1, None, False),
    "activepieces": (384, 3, "postgres", False),
}


def test_catalog_contains_every_tool_the_seed_names():
    assert {t.name for t in load_catalog().tools} >= SEED_TOOLS


@pytest.mark.parametrize(("tool", "subdomain"), SEED_SUBDOMAINS.items())
def test_subdomains_follow_the_seed(tool, subdomain):
    assert load_catalog().tool(tool).subdomain == subdomain


@pytest.mark.parametrize(("tool", "port"), SEED_PORTS.items())
def test_host_ports_follow_the_seed(tool, port):
    assert load_catalog().tool(tool).host_port == port


@pytest.mark.parametrize(("tool", "expected"), SEED_REGISTRY.items())
def test_resource_registry_follows_the_seed(tool, expected):
    t = load_catalog().tool(tool)
    assert (t.ram_mb, t.disk_gb, t.requires_db, t.requires_redis) == expected


def test_overhead_is_the_seeds_with_openclaw_as_measured_and_tiers_match_section_5_1():
    cat = load_catalog()
    assert sum(c.ram_mb for c in cat.overhead) == LETSBE_OVERHEAD_MB == 1536
    assert [(t.tier, t.ram_mb // 1024, t.cpu) for t in cat.tiers] == [
        (Tier.LITE, 8, 4),
        (Tier.BUILD, 16, 8),
        (Tier.SCALE, 32, 12),
        (Tier.ENTERPRISE, 64, 16),
    ]
    assert [t.hetzner_type for t in cat.tiers] == ["cpx21", "cpx31", "cpx41", "cpx51"]


def test_catalog_is_loaded_once():
    assert load_catalog() is load_catalog()


def test_unknown_names_are_reported_in_order():
    assert load_catalog().unknown(["ghost", "wordpress", "certbot", "odoo"]) == ["wordpress", "certbot"]


def _raw() -> dict:
    return json.loads(resources.files("letsbe_contracts").joinpath("catalog.json").read_text())


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda c: c["tools"].append(dict(c["tools"][0])),  # duplicate name
        lambda c: c["tools"][1].update(subdomain=c["tools"][0]["subdomain"]),  # duplicate subdomain
        lambda c: c["tools"][1].update(host_port=8200),  # collides with the Safety Wrapper
        lambda c: c["tools"][0].update(stack_ram_mb=1),  # stack smaller than the app
        lambda c: c["tools"][0].update(ram_mb=-5),
        lambda c: c["overhead"][0].update(ram_mb=1),  # overhead no longer LETSBE_OVERHEAD_MB
        lambda c: c["tools"][0].update(subdomain=None),  # a customer tool without a subdomain
        lambda c: c["tools"][0].update(colour="blue"),  # unknown field
    ],
)
def test_schema_rejects_a_corrupt_catalog(corrupt):
    raw = _raw()
    corrupt(raw)
    with pytest.raises(ValidationError):
        Catalog.model_validate(raw)
