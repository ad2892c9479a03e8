from hub_testing.servers import (  # noqa: F401 - fixtures
    admin,
    allocator,
    api,
    fake_hetzner,
    hetzner,
    settings,
    ssh_target,
)
