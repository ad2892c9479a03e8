from hub_testing.tenants import admin, hub, hub_settings  # noqa: F401 - fixtures
