from letsbe_hub.tenants.testing import admin  # noqa: F401 - fixtures
