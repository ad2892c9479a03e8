"""Why an approval operation was refused (types the Safety Wrapper branches on)."""

from letsbe_platform.errors import Conflict, Forbidden, NotFound


class ApprovalNotFound(NotFound):
    type, title = "approval-not-found", "Approval not found"


class ApprovalMismatch(Forbidden):
    type, title = "approval-mismatch", "The approval is bound to a different call"


class ApprovalExpired(Conflict):
    type, title = "approval-expired", "The approval has expired"


class ApprovalUsed(Conflict):
    type, title = "approval-used", "The approval was already used"


class ApprovalNotApproved(Conflict):
    type, title = "approval-not-approved", "The approval is not approved"


class ApprovalDecided(Conflict):
    type, title = "approval-decided", "The approval was already decided"


class WrongAgent(Forbidden):
    type, title = "approval-wrong-agent", "Only the Safety Wrapper asks for approvals"
