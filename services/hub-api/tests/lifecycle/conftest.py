from hub_testing.servers import fake_hetzner  # noqa: F401 - fixtures
