from hub_testing.servers import fake_hetzner, ssh_target  # noqa: F401 - fixtures
