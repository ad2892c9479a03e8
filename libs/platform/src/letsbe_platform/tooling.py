"""Environment variables of the development and test tooling (a module without pydantic: the agents read it)."""

# Read by the development and test tooling (devstack, `make run`, the sandbox), never by a service's settings. They
# are declared here so that an agent, which refuses unknown LETSBE_ variables, does not take them for a typo.
TOOLING_VARIABLES = frozenset(
    {
        "LETSBE_DATA_DIR",
        "LETSBE_PG_PORT",
        "LETSBE_PG_BIN_DIR",
        "LETSBE_PG_ADMIN_URL",
        "LETSBE_NATS_PORT",
        "LETSBE_NATS_CLUSTER",
        "LETSBE_REPLICAS",
        "LETSBE_SANDBOX_DIR",
        "LETSBE_SANDBOX_SSH_PORT",
        "LETSBE_SANDBOX_SLOW_SECONDS",
    }
)
