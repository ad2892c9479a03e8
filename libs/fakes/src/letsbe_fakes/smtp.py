"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives: for email tests and the sandbox.

``with FakeSmtp() as smtp: ... smtp.host, smtp.port``; received mail is in ``smtp.messages`` (parsed
``email.message.EmailMessage``) and ``smtp.envelopes`` ((mail_from, rcpt_tos)). ``fail_next(n, code)`` answers
the next n messages with an SMTP error (4xx transient, 5xx permanent) instead of accepting them. With ``spool_dir``
each accepted message is also written there as one ``.eml`` file (the sandbox's mailbox, readable from outside).
"""

from __future__ import annotations

import threading
import time
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from letsbe_platform.testing import eventually, free_port


class _Handler:
    def __init__(self, fake: FakeSmtp):
        self.fake = fake

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it by this name
        with self.fake._lock:
            if self.fake._failures:
                code = self.fake._failures.pop(0)
                return f"{code} {'Try again later' if code < 500 else 'Message refused'}"
            raw = envelope.original_content or envelope.content
            self.fake.messages.append(message_from_bytes(raw, policy=policy.default))  # type: ignore[arg-type]
            self.fake.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            if self.fake.spool_dir is not None:
                name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
                self.fake.spool_dir.mkdir(parents=True, exist_ok=True)
                (self.fake.spool_dir / name).write_bytes(raw)
        return "250 Message accepted for delivery"


class FakeSmtp:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, spool_dir: Path | None = None):
        self.host = host
        self.spool_dir = spool_dir
        self.port = port or free_port(host)
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._running = False
        self._controller = Controller(_Handler(self), hostname=host, port=self.port)

    def fail_next(self, times: int = 1, code: int = 451) -> None:
        with self._lock:
            self._failures.extend([code] * times)

    def start(self) -> FakeSmtp:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop listening (a test can take the server down mid-way); harmless when already stopped."""
        if self._running:
            self._controller.stop()
            self._running = False

    def __enter__(self) -> FakeSmtp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def await_messages(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """The messages, once at least ``count`` have arrived."""
        await eventually(lambda: len(self.messages) >= count, f"{count} messages", timeout=timeout, every=0.02)
        return list(self.messages)
