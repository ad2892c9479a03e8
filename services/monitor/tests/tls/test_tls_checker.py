"""The TLS checker reads the certificate actually served (SNI, real TLS on loopback), for the tenant's domain and
every tool subdomain, and alerts under 14 days."""

from datetime import UTC, datetime, timedelta

import pytest

from letsbe_fakes.tls_endpoint import FakeTlsEndpoint
from letsbe_monitor.tenants import service as tenants
from letsbe_monitor.tenants.models import Tenant
from letsbe_monitor.tls.probe import TlsProbeError, served_not_after
from letsbe_monitor.tls.service import TlsChecker
from letsbe_platform.db import unit_of_work

from ..conftest import FakeClock, Monitor, details, heartbeat

DOMAIN = "acme.example"
HOSTS = ("acme.example", "files.acme.example", "blog.acme.example")  # nextcloud → files, ghost → blog (catalog)


@pytest.fixture
def endpoint():
    with FakeTlsEndpoint() as ep:
        yield ep


@pytest.fixture
def tls_env(make_settings, sessions, endpoint):
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    settings = make_settings(tls_connect_host=endpoint.host, tls_port=endpoint.port, tls_timeout_seconds=3)
    monitor = Monitor(sessions, settings, clock)
    monitor.checker = TlsChecker(sessions, monitor.engine, settings, clock)
    return monitor


def serve_all(endpoint, clock, days):
    for host in HOSTS:
        endpoint.serve(host, clock.now + timedelta(days=days.get(host, 80)))


async def test_the_probe_reads_the_certificate_served_for_each_name(endpoint):
    soon, later = datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 6, 1, tzinfo=UTC)
    endpoint.serve("a.example", soon)
    endpoint.serve("b.example", later)
    got = [
        await served_not_after(n, connect_host="127.0.0.1", port=endpoint.port, timeout=3)
        for n in ("a.example", "b.example")
    ]
    assert got == [soon, later] and endpoint.handshakes[-2:] == ["a.example", "b.example"]


async def test_an_expiring_certificate_served_over_tls_raises_the_alert_and_renewal_resolves_it(tls_env, endpoint):
    clock = tls_env.clock
    serve_all(endpoint, clock, {"blog.acme.example": 5})
    tid = await tls_env.provision(domain=DOMAIN, tools=("nextcloud", "ghost"))
    assert await tls_env.checker.once() == 1
    assert set(endpoint.handshakes) >= set(HOSTS)
    [alert] = await tls_env.alerts("tls.expiry")
    assert alert.tenant_id == tid and alert.severity == "medium" and 4.9 < alert.value <= 5
    assert "blog.acme.example in 5.0 days" in alert.summary and "files.acme.example" not in alert.summary

    endpoint.serve("blog.acme.example", clock.now + timedelta(days=90))  # certbot renewed it
    assert await tls_env.checker.once() == 0  # not due again before tls_check_interval
    clock.advance(tls_env.settings.tls_check_interval_seconds + 1)
    assert await tls_env.checker.once() == 1
    [alert] = await tls_env.alerts("tls.expiry")
    assert alert.resolved_at is not None


async def test_certificates_with_two_weeks_or_more_left_raise_nothing(tls_env, endpoint):
    serve_all(endpoint, tls_env.clock, dict.fromkeys(HOSTS, 15))
    await tls_env.provision(domain=DOMAIN, tools=("nextcloud", "ghost"))
    await tls_env.checker.once()
    assert await tls_env.alerts() == []


async def test_what_is_served_counts_not_what_the_tenant_believes(tls_env, endpoint):
    clock = tls_env.clock
    serve_all(endpoint, clock, {"acme.example": 3})
    tid = await tls_env.provision(domain=DOMAIN, tools=("nextcloud", "ghost"))
    belief = details().model_copy(update={"tls_not_after": clock.now + timedelta(days=85)})
    async with unit_of_work(tls_env.sessions) as s:  # the agent reports what certbot installed
        await tenants.record_heartbeat(
            s, tls_env.engine, tls_env.settings, heartbeat(tid, clock.now, det=belief, domain=DOMAIN), clock.now
        )
    await tls_env.checker.check_tenant(tid)
    [alert] = await tls_env.alerts("tls.expiry")
    assert "acme.example in 3.0 days" in alert.summary


async def test_an_unreachable_host_decides_nothing_and_is_recorded(make_settings, sessions, endpoint):
    endpoint.stop()  # nothing listens any more
    clock = FakeClock(datetime.now(UTC))
    settings = make_settings(tls_connect_host="127.0.0.1", tls_port=endpoint.port, tls_timeout_seconds=1)
    monitor = Monitor(sessions, settings, clock)
    tid = await monitor.provision(domain=DOMAIN, tools=())
    await TlsChecker(sessions, monitor.engine, settings, clock).once()
    assert await monitor.alerts() == []
    async with sessions() as s:
        tenant = await s.get(Tenant, tid)
    assert tenant.tls_checked_at is not None and "acme.example" in tenant.tls_error
    with pytest.raises(TlsProbeError):
        await served_not_after(DOMAIN, connect_host="127.0.0.1", port=endpoint.port, timeout=1)
