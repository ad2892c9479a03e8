"""§9.2 routing and delivery against real receivers on loopback: an SMTP server (aiosmtpd), a Slack-compatible
incoming webhook, a signed-webhook receiver that checks the signature itself, and the customer push gateway."""

import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from letsbe_fakes import LoopbackServer
from letsbe_fakes.push_gateway import FakePushGateway
from letsbe_fakes.slack import FakeSlackWebhook
from letsbe_fakes.smtp import FakeSmtp
from letsbe_fakes.webhook import WebhookReceiver
from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.notify.channels import DeliveryFailed, build_channels
from letsbe_monitor.notify.worker import DeliveryWorker
from letsbe_platform.db import unit_of_work

from ..conftest import Monitor, details

WEBHOOK_SECRET = "whsec_test_" + "x" * 24


class Receivers:
    def __init__(self):
        self.smtp = FakeSmtp()
        self.slack = FakeSlackWebhook()
        self.webhook = WebhookReceiver(WEBHOOK_SECRET)
        self.push = FakePushGateway()

    def by_channel(self):
        return {
            "email": len(self.smtp.messages),
            "slack": len(self.slack.messages),
            "webhook": len(self.webhook.accepted),
            "push": len(self.push.pushes),
        }


class Swappable:
    """An ASGI app that forwards to whichever fake the current test installed (servers start once per module)."""

    def __init__(self):
        self.app = None

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def receiver_servers():
    apps = {name: Swappable() for name in ("slack", "webhook", "push")}
    with LoopbackServer(apps["slack"]) as a, LoopbackServer(apps["webhook"]) as b, LoopbackServer(apps["push"]) as c:
        yield apps, {"slack": a.url, "webhook": b.url, "push": c.url}


@pytest.fixture
def receivers(receiver_servers):
    apps, bases = receiver_servers
    r = Receivers()
    for name, fake in (("slack", r.slack), ("webhook", r.webhook), ("push", r.push)):
        apps[name].app = fake.app
    r.urls = {name: getattr(r, name).url(bases[name]) for name in bases}
    with r.smtp:
        yield r


@pytest.fixture
async def env(make_settings, sessions, clock, receivers):
    settings = make_settings(
        smtp_host=receivers.smtp.host,
        smtp_port=receivers.smtp.port,
        staff_emails=["ops@letsbe.biz", "oncall@letsbe.biz"],
        slack_webhook_url=receivers.urls["slack"],
        webhook_url=receivers.urls["webhook"],
        webhook_secret=WEBHOOK_SECRET,
        push_gateway_url=receivers.urls["push"],
        push_gateway_token=receivers.push.token,
        delivery_backoff_base_seconds=30,
        startup_grace_seconds=0,
        offline_settle_seconds=0,
    )
    async with httpx.AsyncClient(timeout=5) as http:
        monitor = Monitor(sessions, settings, clock)
        monitor.worker = DeliveryWorker(sessions, settings, build_channels(settings, http), clock)
        monitor.receivers = receivers
        yield monitor


async def drain(monitor) -> None:
    while await monitor.worker.once():
        pass


async def test_soft_alerts_reach_the_dashboard_only(env):
    tid = await env.provision()
    await env.beat(tid, details(memory=97))
    await drain(env)
    assert [a.rule for a in await env.alerts()] == ["memory.usage"]
    assert len(await env.events("alert-raised")) == 1  # the hub's dashboard
    assert await env.deliveries() == []
    assert env.receivers.by_channel() == {"email": 0, "slack": 0, "webhook": 0, "push": 0}


async def test_medium_emails_staff_and_pushes_the_customer_on_the_third_consecutive_failure(env, clock):
    tid = await env.provision(domain="acme.example")
    counts = []
    for _ in range(4):
        await env.beat(tid, details(disk=92))
        await drain(env)
        counts.append(env.receivers.by_channel())
        clock.advance(300)
    assert [c["email"] for c in counts] == [1, 1, 1, 1]
    assert [c["push"] for c in counts] == [0, 0, 1, 1]  # the third failure, not before, and once
    assert counts[-1]["slack"] == counts[-1]["webhook"] == 0

    [mail] = env.receivers.smtp.messages
    assert mail["Subject"] == "[MEDIUM] acme.example: Disk almost full"
    assert mail["To"] == "ops@letsbe.biz, oncall@letsbe.biz" and "92.0 %" in mail.get_content()
    [push] = env.receivers.push.pushes
    assert push["tenant_id"] == str(tid) and push["severity"] == "medium" and push["kind"] == "escalated"


async def test_hard_goes_to_customer_and_every_staff_channel_at_once_with_a_valid_signature(env, clock):
    tid = await env.provision()
    clock.advance(181)
    from letsbe_monitor.alerts.worker import Sweep

    await Sweep(env.sessions, env.engine, env.settings, clock).once()
    await drain(env)
    assert env.receivers.by_channel() == {"email": 1, "slack": 1, "webhook": 1, "push": 1}
    [alert] = await env.alerts("heartbeat.stale")
    [hook] = env.receivers.webhook.accepted  # the receiver verified HMAC-SHA256 over "<t>.<body>" itself
    assert hook["json"]["type"] == "alert.raised" and hook["json"]["alert"]["alert_id"] == str(alert.id)
    assert hook["headers"]["x-letsbe-delivery"] == hook["json"]["delivery_id"]
    assert env.receivers.slack.messages[0]["text"].startswith("*[HARD] example.com: Tenant offline*")
    assert env.receivers.push.pushes[0]["tenant_id"] == str(tid)

    await env.beat(tid)  # back online: a resolved notice to everyone who heard
    await drain(env)
    assert env.receivers.by_channel() == {"email": 2, "slack": 2, "webhook": 2, "push": 2}
    assert env.receivers.smtp.messages[1]["Subject"].startswith("[RESOLVED] example.com")
    assert env.receivers.webhook.accepted[1]["json"]["type"] == "alert.resolved"


async def test_a_tampered_or_replayed_webhook_is_rejected_by_the_receiver(receivers):
    from letsbe_fakes.webhook import verify
    from letsbe_monitor.notify.channels import sign

    body = b'{"type":"alert.raised"}'
    header = sign(WEBHOOK_SECRET.encode(), body, timestamp=1_800_000_000)
    assert verify(WEBHOOK_SECRET.encode(), header, body, now=1_800_000_010)
    assert not verify(WEBHOOK_SECRET.encode(), header, body + b" ", now=1_800_000_010)
    assert not verify(b"another secret", header, body, now=1_800_000_010)
    assert not verify(WEBHOOK_SECRET.encode(), header, body, now=1_800_000_000 + 301)


async def raise_offline(env, clock):
    from letsbe_monitor.alerts.worker import Sweep

    tid = await env.provision()
    clock.advance(181)
    await Sweep(env.sessions, env.engine, env.settings, clock).once()
    return tid


def by_channel(deliveries):
    return {d.channel: d for d in deliveries}


async def test_failed_deliveries_retry_with_backoff_without_holding_up_rule_evaluation(env, clock):
    receivers = env.receivers
    receivers.smtp.stop()  # the SMTP server is down
    receivers.slack.fail_next(1, status=429, retry_after=120)  # Slack rate-limits
    receivers.webhook.fail_next(1, status=503)
    await raise_offline(env, clock)
    assert len(await env.alerts("heartbeat.stale")) == 1 and len(await env.events("alert-raised")) == 1

    await drain(env)
    rows = by_channel(await env.deliveries())
    assert rows["push"].status == "sent"
    for channel in ("email", "slack", "webhook"):
        assert rows[channel].status == "pending" and rows[channel].attempts == 1 and rows[channel].last_error
    assert rows["email"].next_attempt_at >= clock.now + timedelta(seconds=15)  # 30 s base, jittered down to half
    assert rows["slack"].next_attempt_at >= clock.now + timedelta(seconds=120)  # Retry-After honoured
    assert await env.worker.once() == 0  # nothing is due yet: no hammering

    receivers.smtp = FakeSmtp(port=receivers.smtp.port).start()  # the SMTP server is back
    try:
        clock.advance(121)
        await drain(env)
        rows = by_channel(await env.deliveries())
        assert {c: (d.status, d.attempts) for c, d in rows.items()} == {
            "push": ("sent", 1),
            "email": ("sent", 2),
            "slack": ("sent", 2),
            "webhook": ("sent", 2),
        }
        assert receivers.by_channel() == {"email": 1, "slack": 1, "webhook": 1, "push": 1}
    finally:
        receivers.smtp.stop()


async def test_a_permanent_refusal_is_not_retried(env, clock):
    env.receivers.push.token = "rotated-elsewhere"  # the gateway now refuses our token: 401
    await raise_offline(env, clock)
    await drain(env)
    clock.advance(3600)
    await drain(env)
    rows = by_channel(await env.deliveries())
    assert (rows["push"].status, rows["push"].attempts) == ("failed", 1)
    assert "401" in rows["push"].last_error and rows["email"].status == "sent"


async def test_a_worker_killed_mid_send_leaves_a_lease_that_expires(env, clock):
    await raise_offline(env, clock)
    async with unit_of_work(env.sessions) as s:
        leased = await env.worker._lease(s, clock())  # taken, then the process dies before sending
    assert len(leased) == 4 and await env.worker.once() == 0
    clock.advance(env.settings.delivery_lease_seconds + 1)
    await drain(env)
    assert env.receivers.by_channel() == {"email": 1, "slack": 1, "webhook": 1, "push": 1}


async def test_acknowledged_stops_staff_notifications_and_silence_stops_all(env, clock):
    tid = await env.provision()
    await env.beat(tid, details(disk=92))
    [alert] = await env.alerts("disk.usage")
    async with unit_of_work(env.sessions) as s:
        assert await env.engine.acknowledge(s, alert.id, "ops-alice", clock())
    for _ in range(3):  # the third failure still reaches the customer: ack is about staff
        clock.advance(300)
        await env.beat(tid, details(disk=92))
    await drain(env)
    assert env.receivers.by_channel() == {"email": 0, "slack": 0, "webhook": 0, "push": 1}
    assert by_channel(await env.deliveries())["email"].status == "suppressed"

    other = await env.provision()
    await env.beat(other, details(disk=92))
    [second] = [a for a in await env.alerts("disk.usage") if a.tenant_id == other]
    async with unit_of_work(env.sessions) as s:
        assert await env.engine.silence(s, second.id, clock() + timedelta(hours=2), "ops-alice")
    for _ in range(3):
        clock.advance(300)
        await env.beat(other, details(disk=92))
    await drain(env)
    assert env.receivers.by_channel() == {"email": 0, "slack": 0, "webhook": 0, "push": 1}

    clock.advance(2 * 3600)  # the silence ends: the (tenant, rule)'s next alert is heard again
    await env.beat(other, details(disk=10))
    clock.advance(60)
    await env.beat(other, details(disk=93))
    await drain(env)
    assert env.receivers.by_channel()["email"] == 1


async def test_an_alert_resolved_before_its_notice_went_out_sends_nothing(env, clock):
    tid = await raise_offline(env, clock)
    await env.beat(tid)  # back before the delivery worker ran
    await drain(env)
    assert env.receivers.by_channel() == {"email": 0, "slack": 0, "webhook": 0, "push": 0}
    assert {d.status for d in await env.deliveries()} == {"cancelled"}


def test_no_channel_settings_means_no_deliveries():
    from letsbe_monitor.config import MonitorSettings
    from letsbe_monitor.notify.routing import available_channels

    assert available_channels(MonitorSettings()) == frozenset()


RESOLVED = {"kind": "resolved", "rule": "heartbeat.stale", "summary": "back", "alert_id": "a", "domain": "shop.test"}


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_a_receivers_retry_after_is_read_in_either_form(form):
    slack = FakeSlackWebhook()
    header = "60" if form == "seconds" else format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    slack.fail_next(1, status=429, retry_after=header)
    with LoopbackServer(slack.app) as server:
        settings = MonitorSettings.model_validate({"slack_webhook_url": slack.url(server.url)})
        async with httpx.AsyncClient() as client:
            with pytest.raises(DeliveryFailed) as failed:
                await build_channels(settings, client)["slack"].send(uuid.uuid4(), RESOLVED)
    assert failed.value.retryable and 50 <= failed.value.retry_after <= 60
