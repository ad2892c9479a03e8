from letsbe_platform.errors import Conflict, NotFound


class CommandNotFound(NotFound):
    type, title = "command-not-found", "Command not found"


class CommandStateConflict(Conflict):
    type, title = "command-state-conflict", "Command is in another state"


class TenantDecommissioned(Conflict):
    type, title = "tenant-decommissioned", "The tenant is decommissioned"
