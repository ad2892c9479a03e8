from hub_testing.tenants import admin  # noqa: F401 - fixtures
