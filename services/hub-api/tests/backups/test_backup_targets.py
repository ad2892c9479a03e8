"""A tenant's off-site backup target, issued by the hub: the same one each time, its keys sealed at rest under a key
of that tenant alone, refused without the scope, and a clear 409 when no off-site storage is configured."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select

from hub_testing import hub_app
from hub_testing.servers import servers_settings, token
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.backups import endpoints, service
from letsbe_hub.backups.models import BackupTarget

S3_SECRET = "platform-s3-secret-key"
KEY = Fernet.generate_key().decode()


def settings_for(database_url: str, **extra):
    base = {
        "credentials_key": KEY,
        "offsite_s3_endpoint": "https://s3.eu-central-1.example.net",
        "offsite_s3_access_key_id": "AKIDLETSBE",
        "offsite_s3_secret_access_key": S3_SECRET,
    }
    return servers_settings(database_url, **{**base, **extra})


@pytest_asyncio.fixture
async def api(database_url):
    app = hub_app(settings_for(database_url), routers=endpoints.routers)
    async with LifespanManager(app) as m:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=m.app), base_url="http://hub") as client:
            yield client


async def test_a_tenant_gets_one_target_with_its_own_prefix_and_key(api, sessions, database_url):
    headers = await token(sessions, Scope.TENANTS_ENROLL)
    a, b = uuid.uuid4(), uuid.uuid4()
    first = await api.post(f"/api/v1/admin/tenants/{a}/backup-target", headers=headers)
    again = await api.post(f"/api/v1/admin/tenants/{a}/backup-target", headers=headers)
    other = await api.post(f"/api/v1/admin/tenants/{b}/backup-target", headers=headers)
    assert first.status_code == again.status_code == other.status_code == 200, first.text
    assert first.json() == again.json()  # asked again (a re-run of step 8): the same target and key
    assert first.json()["prefix"] == f"tenants/{a}" and other.json()["prefix"] == f"tenants/{b}"
    assert first.json()["crypt_password"] != other.json()["crypt_password"]
    assert first.json()["bucket"] == "letsbe-tenant-backups" and first.json()["secret_access_key"] == S3_SECRET

    async with sessions() as s:
        rows = {r.tenant_id: r for r in (await s.execute(select(BackupTarget))).scalars()}
    assert set(rows) == {a, b}
    sealed = rows[a].sealed
    assert first.json()["crypt_password"] not in sealed and S3_SECRET not in sealed
    settings = settings_for(database_url)
    assert json.loads(service.tenant_box(settings, a).decrypt(sealed.encode()))["crypt_password"] == (
        first.json()["crypt_password"]
    )
    with pytest.raises(InvalidToken):  # another tenant's key does not open it, nor does the hub's key itself
        service.tenant_box(settings, b).decrypt(sealed.encode())
    with pytest.raises(InvalidToken):
        Fernet(KEY.encode()).decrypt(sealed.encode())


async def test_without_the_scope_or_a_token_nothing_is_issued(api, sessions):
    tenant = uuid.uuid4()
    reader = await token(sessions, Scope.FLEET_READ)
    assert (await api.post(f"/api/v1/admin/tenants/{tenant}/backup-target", headers=reader)).status_code == 403
    assert (await api.post(f"/api/v1/admin/tenants/{tenant}/backup-target")).status_code == 401
    assert (await api.post("/api/v1/admin/tenants/not-a-uuid/backup-target", headers=reader)).status_code in (403, 422)
    async with sessions() as s:
        assert (await s.execute(select(BackupTarget))).first() is None


async def test_without_off_site_storage_the_answer_is_a_clear_409(database_url, sessions):
    app = hub_app(settings_for(database_url, offsite_s3_endpoint=None), routers=endpoints.routers)
    async with LifespanManager(app) as m:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=m.app), base_url="http://hub") as client:
            r = await client.post(
                f"/api/v1/admin/tenants/{uuid.uuid4()}/backup-target",
                headers=await token(sessions, Scope.TENANTS_ENROLL),
            )
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert "off-site" in r.json()["detail"]
    async with sessions() as s:
        assert (await s.execute(select(BackupTarget))).first() is None
