from letsbe_hub.tenants.testing import admin, hub, hub_settings  # noqa: F401 - fixtures
