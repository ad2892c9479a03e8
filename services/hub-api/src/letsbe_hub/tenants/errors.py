from letsbe_platform.errors import Conflict, NotFound, Unauthorized


class ReEnrol(Unauthorized):
    """The credential is unknown or revoked: the agent must register again with a new registration token."""

    type, title = "agent-re-enrol", "Agent must re-enrol"

    def __init__(self, detail: str = "This agent credential is unknown or revoked; register again."):
        super().__init__(detail, re_enrol=True)


class BadRegistrationToken(Unauthorized):
    type, title = "registration-token-invalid", "Registration token invalid"

    def __init__(self) -> None:
        super().__init__("The registration token is unknown, already used or expired.", re_enrol=False)


class TenantNotFound(NotFound):
    type, title = "tenant-not-found", "Tenant not found"


class TenantMismatch(Conflict):
    type, title = "tenant-mismatch", "Tenant exists with other details"
