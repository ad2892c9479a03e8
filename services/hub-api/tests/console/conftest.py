from hub_testing.console import light_password_hashing  # noqa: F401 - fixture (autouse: every console test signs in)
from hub_testing.tenants import admin  # noqa: F401 - fixtures
