from enum import StrEnum


class Scope(StrEnum):
    ORDERS_READ = "orders:read"
    ORDERS_WRITE = "orders:write"
    SERVERS_READ = "servers:read"
    SERVERS_WRITE = "servers:write"
    FLEET_READ = "fleet:read"
    FLEET_WRITE = "fleet:write"
    ALERTS_READ = "alerts:read"
    ALERTS_WRITE = "alerts:write"
    TENANTS_ENROLL = "tenants:enroll"  # the provisioner: mint registration tokens, see registration state
    TOKENS_ADMIN = "tokens:admin"
