"""The notification channels (§9.2), each a small class behind one protocol, built from settings in lifespan.

- email: staff addresses over SMTP (aiosmtplib); Message-ID is the delivery id, so a retry is recognisable.
- slack: a Slack-compatible incoming webhook (``{"text": ...}``).
- webhook: a generic JSON webhook signed like Stripe's: ``X-LetsBe-Signature: t=<unix>,v1=<hex>`` where hex is
  HMAC-SHA256(secret, "<t>.<raw body>"); receivers reject old timestamps to stop replays.
- push: the customer push gateway (Bearer token; ``Idempotency-Key`` = delivery id).

A channel raises :class:`DeliveryFailed`; ``retryable`` says whether trying again can help.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib
import httpx

from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.notify.models import EMAIL, PUSH, SLACK, WEBHOOK
from letsbe_monitor.notify.routing import available_channels, render, title
from letsbe_platform.waiting import parse_retry_after

SIGNATURE_HEADER = "X-LetsBe-Signature"
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


class DeliveryFailed(Exception):
    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Channel(Protocol):
    name: str

    async def send(self, delivery_id: uuid.UUID, payload: dict[str, Any]) -> None: ...


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def _check_response(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    retryable = response.status_code >= 500 or response.status_code in RETRYABLE_STATUS
    # The body may echo what we sent; keep the error short and free of it.
    raise DeliveryFailed(f"{what} answered HTTP {response.status_code}", retryable=retryable, retry_after=retry_after)


async def _post(client: httpx.AsyncClient, url: str, what: str, **kwargs: Any) -> None:
    try:
        response = await client.post(url, **kwargs)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{what} unreachable: {type(exc).__name__}") from exc
    _check_response(response, what)


class EmailChannel:
    name = EMAIL

    def __init__(self, settings: MonitorSettings):
        self.settings = settings

    async def send(self, delivery_id: uuid.UUID, payload: dict[str, Any]) -> None:
        s = self.settings
        subject, body = render(payload)
        msg = EmailMessage()
        msg["From"] = s.mail_from
        msg["To"] = ", ".join(s.staff_emails)
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{delivery_id}@monitor.letsbe.biz>"
        msg["X-LetsBe-Alert"] = str(payload["alert_id"])
        msg.set_content(body)
        try:
            await aiosmtplib.send(
                msg,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls,
                use_tls=s.smtp_use_tls,
                timeout=s.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx is the server's final word (bad recipient, refused); 4xx is "try later".
            raise DeliveryFailed(f"SMTP {exc.code}: {exc.message[:200]}", retryable=exc.code < 500) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"SMTP: {type(exc).__name__}: {str(exc)[:200]}") from exc


class SlackChannel:
    name = SLACK

    def __init__(self, settings: MonitorSettings, client: httpx.AsyncClient):
        assert settings.slack_webhook_url is not None
        self.url = settings.slack_webhook_url.get_secret_value()
        self.client = client

    async def send(self, delivery_id: uuid.UUID, payload: dict[str, Any]) -> None:
        subject, body = render(payload)
        await _post(self.client, self.url, "Slack webhook", json={"text": f"*{subject}*\n{body}"})


class WebhookChannel:
    name = WEBHOOK

    def __init__(self, settings: MonitorSettings, client: httpx.AsyncClient):
        assert settings.webhook_url and settings.webhook_secret is not None
        self.url = settings.webhook_url
        self.secret = settings.webhook_secret.get_secret_value().encode()
        self.client = client

    async def send(self, delivery_id: uuid.UUID, payload: dict[str, Any]) -> None:
        event_type = f"alert.{payload['kind']}"
        body = json.dumps(
            {"type": event_type, "delivery_id": str(delivery_id), "alert": payload}, separators=(",", ":")
        ).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body),
            "X-LetsBe-Event": event_type,
            "X-LetsBe-Delivery": str(delivery_id),
        }
        await _post(self.client, self.url, "Webhook", content=body, headers=headers)


class PushChannel:
    name = PUSH

    def __init__(self, settings: MonitorSettings, client: httpx.AsyncClient):
        assert settings.push_gateway_url
        self.url = settings.push_gateway_url
        self.token = settings.push_gateway_token.get_secret_value() if settings.push_gateway_token else None
        self.client = client

    async def send(self, delivery_id: uuid.UUID, payload: dict[str, Any]) -> None:
        resolved = payload["kind"] == "resolved"
        message = {
            "tenant_id": payload["tenant_id"],
            "alert_id": payload["alert_id"],
            "kind": payload["kind"],
            "severity": payload["severity"],
            "rule": payload["rule"],
            "title": ("Resolved: " if resolved else "") + title(payload["rule"]),
            "body": payload["summary"],
        }
        headers = {"Idempotency-Key": str(delivery_id)}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        await _post(self.client, self.url, "Push gateway", json=message, headers=headers)


def build_channels(settings: MonitorSettings, client: httpx.AsyncClient) -> dict[str, Channel]:
    available = available_channels(settings)
    channels: dict[str, Channel] = {}
    if EMAIL in available:
        channels[EMAIL] = EmailChannel(settings)
    if SLACK in available:
        channels[SLACK] = SlackChannel(settings, client)
    if WEBHOOK in available:
        channels[WEBHOOK] = WebhookChannel(settings, client)
    if PUSH in available:
        channels[PUSH] = PushChannel(settings, client)
    return channels
