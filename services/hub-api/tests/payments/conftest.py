from letsbe_hub.orders.testing import hub_settings, operator, orders_hub, smtp_server, stripe_fake  # noqa: F401 - fixtures
