"""HTTP of the backups context: the provisioner asks for a tenant's off-site target when it renders step 8."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from letsbe_contracts.hub import BackupTarget
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.backups import service
from letsbe_platform.web import SessionDep, problems

admin_router = APIRouter(prefix="/api/v1/admin/tenants", tags=["tenants"])


@admin_router.post("/{tenant_id}/backup-target", name="issue_backup_target", responses=problems(409))
async def issue_backup_target(
    tenant_id: uuid.UUID, request: Request, session: SessionDep, _: Authorized(Scope.TENANTS_ENROLL)
) -> BackupTarget:
    """The tenant's off-site backup target: created the first time, the same one after (its keys included, for the
    provisioner to render; never logged). 409 when no off-site storage is configured."""
    return await service.issue(session, tenant_id, request.app.state.settings)


routers = [admin_router]
