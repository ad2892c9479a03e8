from letsbe_hub.servers.testing import (  # noqa: F401 - fixtures
    admin,
    allocator,
    api,
    fake_hetzner,
    hetzner,
    settings,
    ssh_target,
)
