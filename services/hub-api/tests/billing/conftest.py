from hub_testing.billing import billing_hub, hub_settings  # noqa: F401 - fixtures
from hub_testing.orders import _stripe_server, operator, smtp_server, stripe_fake  # noqa: F401 - fixtures
from hub_testing.tenants import admin  # noqa: F401 - fixture
