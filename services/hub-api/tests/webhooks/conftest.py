from hub_testing.orders import (  # noqa: F401 - fixtures
    _stripe_server,
    hub_settings,
    operator,
    orders_hub,
    smtp_server,
    stripe_fake,
)
