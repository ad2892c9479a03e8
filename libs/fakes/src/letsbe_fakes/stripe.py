"""A loopback fake of the Stripe API for Checkout, speaking Stripe's REST wire format, plus signed webhooks.

HTTP (what the official ``stripe`` SDK sends): ``POST /v1/checkout/sessions`` (form-encoded, nested keys like
``line_items[0][price_data][currency]``), ``GET /v1/checkout/sessions/{id}``, ``POST
/v1/checkout/sessions/{id}/expire``. Auth is ``Authorization: Bearer <secret key>``. Errors use Stripe's
envelope ``{"error": {"type", "code", "message", "param"}}`` with Stripe's statuses (400 invalid request,
401 bad key, 404 resource_missing, 5xx api_error). ``Idempotency-Key`` replays the first response for the same
parameters and refuses different parameters (``idempotency_error``), as Stripe does.

Webhooks: :meth:`StripeFake.complete`, :meth:`expire_event`, :meth:`payment_failed` and :meth:`refund` change the
fake's state like the customer's action would and return the event Stripe would send;
:func:`signature_header` signs a payload exactly as Stripe does (``t=<unix>,v1=<hex HMAC-SHA256 of
"<t>.<payload>">``). With ``webhook_url`` set, ``POST /_fake/checkout/sessions/{id}/complete`` pays a session and
delivers the signed ``checkout.session.completed`` to it (a ``stripe trigger`` for the sandbox); the expire route
delivers ``checkout.session.expired`` the same way.

Test switches: :meth:`fail_next` (the next N API requests get a given error status).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from letsbe_fakes.state import StateFile, saving_after_each_request

API_VERSION = "2025-09-30.clover"
DEFAULT_API_KEY = "sk_test_letsbe_fake_key"
DEFAULT_WEBHOOK_SECRET = "whsec_letsbe_fake_webhook_secret"  # noqa: S105 - a fake's test value


def signature_header(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe sends with ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    body = payload.decode() if isinstance(payload, bytes) else payload
    mac = hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


class _StripeError(Exception):
    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None, param: str | None = None):
        self.status, self.type, self.message, self.code, self.param = status, type_, message, code, param

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        return JSONResponse({"error": error}, status_code=self.status, headers={"Request-Id": _id("req")})


def _missing(param: str) -> _StripeError:
    return _StripeError(
        400, "invalid_request_error", f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def _invalid(param: str, message: str) -> _StripeError:
    return _StripeError(400, "invalid_request_error", message, code="parameter_invalid", param=param)


_KEY_PART = re.compile(r"\[([^\[\]]*)\]")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt: Any = value if last else ([] if parts[i + 1].isdigit() else {})
            if isinstance(node, list):
                idx = int(part)
                while len(node) <= idx:
                    node.append(None)
                if node[idx] is None or last:
                    node[idx] = nxt
                node = node[idx]
            else:
                if part not in node or last:
                    node[part] = nxt
                node = node[part]
    return root


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    status: int


@dataclass
class StripeFake:
    api_key: str = DEFAULT_API_KEY
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_url: str | None = None
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    # Customers and their invoices (GET /v1/customers?email=, GET /v1/invoices?customer=), added by add_invoice.
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Sessions, events and what belongs to them survive a restart (letsbe_fakes.state); None: in memory only.
    state_dir: Path | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._idempotency: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = {}
        self._failures: list[tuple[int, str]] = []
        self._intent_metadata: dict[str, dict[str, str]] = {}
        self.app = self._build_app()
        self._state = StateFile(self.state_dir / "stripe.json") if self.state_dir else None
        if self._state is not None:
            data = self._state.load() or {}
            self.sessions.update(data.get("sessions", {}))
            self.events.extend(data.get("events", []))
            self._intent_metadata.update(data.get("intent_metadata", {}))
            self._idempotency.update({k: tuple(v) for k, v in data.get("idempotency", {}).items()})
            self.app = saving_after_each_request(self.app, self.save_state)

    def save_state(self) -> None:
        assert self._state is not None
        with self._lock:
            self._state.save(
                {
                    "sessions": self.sessions,
                    "events": self.events,
                    "intent_metadata": self._intent_metadata,
                    "idempotency": self._idempotency,
                }
            )

    # --- test switches and webhook helpers -----------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every session, event, request and switch (a server shared by many tests starts each one clean)."""
        with self._lock:
            self.sessions.clear()
            self.events.clear()
            self.customers.clear()
            self.invoices.clear()
            self.requests.clear()
            self._idempotency.clear()
            self._failures.clear()
            self._intent_metadata.clear()

    def add_invoice(
        self, email: str, amount_cents: int, *, status: str = "paid", currency: str = "eur", description: str = ""
    ) -> dict[str, Any]:
        """An invoice of the customer with this email (the customer is created on first use), as Stripe lists it."""
        with self._lock:
            customer = next((c for c in self.customers.values() if c["email"] == email), None)
            if customer is None:
                customer = {"id": _id("cus"), "object": "customer", "email": email, "created": int(time.time())}
                self.customers[customer["id"]] = customer
            number = f"LB-{len(self.invoices) + 1:04d}"
            iid = _id("in")
            invoice = {
                "id": iid,
                "object": "invoice",
                "customer": customer["id"],
                "customer_email": email,
                "number": number,
                "status": status,
                "currency": currency,
                "amount_due": amount_cents,
                "amount_paid": amount_cents if status == "paid" else 0,
                "total": amount_cents,
                "description": description or None,
                "created": int(time.time()) + len(self.invoices),  # distinct, increasing: newest first sorts
                "hosted_invoice_url": f"https://invoice.stripe.com/i/{iid}",
                "invoice_pdf": f"https://pay.stripe.com/invoice/{iid}/pdf",
                "livemode": False,
            }
            self.invoices[iid] = invoice
            return invoice

    def fail_next(self, times: int = 1, status: int = 500, message: str = "An unknown error occurred") -> None:
        with self._lock:
            self._failures.extend([(status, message)] * times)

    def event(self, type_: str, obj: dict[str, Any]) -> dict[str, Any]:
        evt = {
            "id": _id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }
        self.events.append(evt)
        return evt

    def signed(
        self, event: dict[str, Any], *, secret: str | None = None, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of Stripe's webhook request for ``event``."""
        payload = json.dumps(event, indent=2).encode()  # Stripe sends pretty-printed JSON
        header = signature_header(payload, secret or self.webhook_secret, timestamp)
        return payload, {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"}

    def complete(self, session_id: str, *, payment_status: str = "paid") -> dict[str, Any]:
        """The customer paid: the session completes and ``checkout.session.completed`` is returned."""
        with self._lock:
            s = self._session(session_id)
            if s["status"] != "open":
                raise ValueError(f"session {session_id} is {s['status']}")
            pi = _id("pi")
            self._intent_metadata[pi] = s.pop("_intent_metadata", {})
            s.update(status="complete", payment_status=payment_status, payment_intent=pi)
            obj = self._public(s)
        return self.event("checkout.session.completed", obj)

    def expire_event(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            s = self._session(session_id)
            if s["status"] == "open":
                s.update(status="expired")
            obj = self._public(s)
        return self.event("checkout.session.expired", obj)

    def payment_failed(self, session_id: str, message: str = "Your card was declined.") -> dict[str, Any]:
        with self._lock:
            s = self._session(session_id)
            pi = s.get("payment_intent") or _id("pi")
            metadata = s.get("_intent_metadata") or self._intent_metadata.get(pi, {})
        obj = {
            "id": pi,
            "object": "payment_intent",
            "amount": s["amount_total"],
            "currency": s["currency"],
            "status": "requires_payment_method",
            "metadata": metadata,
            "last_payment_error": {"type": "card_error", "code": "card_declined", "message": message},
        }
        return self.event("payment_intent.payment_failed", obj)

    def refund(self, session_id: str, amount: int | None = None) -> dict[str, Any]:
        with self._lock:
            s = self._session(session_id)
            pi = s.get("payment_intent")
            if not pi:
                raise ValueError("the session was not paid")
            refunded = min(s["amount_total"], s.get("_refunded", 0) + (amount or s["amount_total"]))
            s["_refunded"] = refunded
            metadata = self._intent_metadata.get(pi, {})
        obj = {
            "id": _id("ch"),
            "object": "charge",
            "amount": s["amount_total"],
            "amount_refunded": refunded,
            "currency": s["currency"],
            "payment_intent": pi,
            "metadata": metadata,
            "refunded": refunded == s["amount_total"],
            "status": "succeeded",
        }
        return self.event("charge.refunded", obj)

    def deliver(self, event: dict[str, Any], url: str | None = None) -> httpx.Response:
        """POST the signed event to the webhook endpoint (blocking; for scripts and the sandbox)."""
        target = url or self.webhook_url
        if not target:
            raise ValueError("no webhook url")
        body, headers = self.signed(event)
        return httpx.post(target, content=body, headers=headers, timeout=10)

    # --- state -------------------------------------------------------------------------------------------------

    def _session(self, session_id: str) -> dict[str, Any]:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise _StripeError(
                404,
                "invalid_request_error",
                f"No such checkout.session: '{session_id}'",
                code="resource_missing",
                param="session",
            ) from None

    @staticmethod
    def _public(s: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in s.items() if not k.startswith("_")}

    def _create_session(self, p: dict[str, Any]) -> dict[str, Any]:
        mode = p.get("mode")
        if not mode:
            raise _missing("mode")
        if mode not in ("payment", "setup", "subscription"):
            raise _invalid("mode", "Invalid mode: must be one of payment, setup, or subscription")
        if not p.get("success_url"):
            raise _missing("success_url")
        items = p.get("line_items")
        if mode != "setup" and not items:
            raise _missing("line_items")
        total, currency = 0, None
        for i, item in enumerate(items or []):
            if not isinstance(item, dict):
                raise _invalid(f"line_items[{i}]", "Invalid object")
            qty = item.get("quantity", "1")
            if not str(qty).isdigit() or int(qty) < 1:
                raise _invalid(f"line_items[{i}][quantity]", "Invalid integer: " + str(qty))
            pd = item.get("price_data")
            if pd is None:
                raise _missing(f"line_items[{i}][price_data]")  # this fake has no Price objects
            for key in ("currency", "unit_amount"):
                if key not in pd:
                    raise _missing(f"line_items[{i}][price_data][{key}]")
            if not str(pd["unit_amount"]).isdigit():
                raise _invalid(f"line_items[{i}][price_data][unit_amount]", f"Invalid integer: {pd['unit_amount']}")
            if not (pd.get("product_data") or {}).get("name") and not pd.get("product"):
                raise _missing(f"line_items[{i}][price_data][product_data][name]")
            if currency and pd["currency"] != currency:
                raise _invalid("line_items", "All line items must share one currency.")
            currency = pd["currency"].lower()
            total += int(pd["unit_amount"]) * int(qty)
        sid = _id("cs")
        now = int(time.time())
        session = {
            "id": sid,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": p.get("cancel_url"),
            "client_reference_id": p.get("client_reference_id"),
            "created": now,
            "currency": currency,
            "customer_email": p.get("customer_email"),
            "expires_at": now + 24 * 3600,
            "livemode": False,
            "metadata": p.get("metadata") or {},
            "mode": mode,
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": p["success_url"],
            "url": f"https://checkout.stripe.com/c/pay/{sid}",
            "_intent_metadata": (p.get("payment_intent_data") or {}).get("metadata") or {},
        }
        self.sessions[sid] = session
        return self._public(session)

    # --- HTTP ----------------------------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="fake Stripe API", openapi_url=None, docs_url=None, redoc_url=None)

        @app.middleware("http")
        async def stripe_errors(request: Request, call_next):
            if request.url.path.startswith("/v1/"):
                auth = request.headers.get("authorization", "")
                if not auth.startswith("Bearer ") or not hmac.compare_digest(auth[7:], self.api_key):
                    shown = auth[7:][-4:] if auth.startswith("Bearer ") else ""
                    return _StripeError(
                        401, "invalid_request_error", f"Invalid API Key provided: sk_****{shown}"
                    ).response()
                with self._lock:
                    failure = self._failures.pop(0) if self._failures else None
                if failure is not None:
                    key = request.headers.get("idempotency-key")
                    self.requests.append(RecordedRequest(request.method, request.url.path, {}, key, failure[0]))
                    return _StripeError(failure[0], "api_error", failure[1]).response()
            try:
                return await call_next(request)
            except _StripeError as exc:  # pragma: no cover - handlers convert their own
                return exc.response()

        async def handle(request: Request, op) -> JSONResponse:
            body = (await request.body()).decode()
            params = decode_form(parse_qsl(body, keep_blank_values=True)) if body else {}
            key = request.headers.get("idempotency-key")
            scoped = f"{request.method} {request.url.path} {key}" if key else None
            with self._lock:
                if scoped and scoped in self._idempotency:
                    first_params, status, saved = self._idempotency[scoped]
                    if first_params != params:
                        err = _StripeError(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same parameters they were first "
                            f"used with. Try using a key other than '{key}' if you meant to execute a different "
                            "request.",
                        )
                        self.requests.append(RecordedRequest(request.method, request.url.path, params, key, 400))
                        return err.response()
                    self.requests.append(RecordedRequest(request.method, request.url.path, params, key, status))
                    return JSONResponse(saved, status_code=status, headers={"Idempotent-Replayed": "true"})
                try:
                    result, status = op(params), 200
                except _StripeError as exc:
                    self.requests.append(RecordedRequest(request.method, request.url.path, params, key, exc.status))
                    if scoped and exc.status < 500:
                        self._idempotency[scoped] = (params, exc.status, json.loads(exc.response().body))
                    return exc.response()
                if scoped:
                    self._idempotency[scoped] = (params, status, result)
                self.requests.append(RecordedRequest(request.method, request.url.path, params, key, status))
            return JSONResponse(result, status_code=status, headers={"Request-Id": _id("req")})

        @app.post("/v1/checkout/sessions")
        async def create_session(request: Request) -> JSONResponse:
            return await handle(request, self._create_session)

        @app.get("/v1/checkout/sessions/{session_id}")
        async def get_session(session_id: str, request: Request) -> JSONResponse:
            return await handle(request, lambda _p: self._public(self._session(session_id)))

        @app.post("/v1/checkout/sessions/{session_id}/expire")
        async def expire_session(session_id: str, request: Request) -> JSONResponse:
            def op(_p: dict[str, Any]) -> dict[str, Any]:
                s = self._session(session_id)
                if s["status"] != "open":
                    raise _invalid(
                        "session",
                        f'Only Checkout Sessions with a status in ["open"] can be expired. '
                        f'This Checkout Session has a status of "{s["status"]}".',
                    )
                s["status"] = "expired"
                return self._public(s)

            response = await handle(request, op)
            if response.status_code == 200 and self.webhook_url:
                await self._deliver_async(self.event("checkout.session.expired", json.loads(response.body)))
            return response

        def page(items: list[dict[str, Any]], url: str, limit: str | None) -> dict[str, Any]:
            n = min(max(int(limit or 10), 1), 100)
            return {"object": "list", "url": url, "has_more": len(items) > n, "data": items[:n]}

        @app.get("/v1/customers")
        async def list_customers(request: Request) -> JSONResponse:
            q = request.query_params
            found = [c for c in self.customers.values() if q.get("email") in (None, c["email"])]
            return JSONResponse(page(found, "/v1/customers", q.get("limit")))

        @app.get("/v1/invoices")
        async def list_invoices(request: Request) -> JSONResponse:
            q = request.query_params
            found = [i for i in self.invoices.values() if q.get("customer") in (None, i["customer"])]
            found.sort(key=lambda i: i["created"], reverse=True)
            return JSONResponse(page(found, "/v1/invoices", q.get("limit")))

        @app.post("/_fake/checkout/sessions/{session_id}/complete")
        async def complete_session(session_id: str) -> JSONResponse:
            """Pay the session as the customer would, and deliver the webhook if a url is configured."""
            try:
                event = self.complete(session_id)
            except _StripeError as exc:
                return exc.response()
            except ValueError as exc:
                return _invalid("session", str(exc)).response()
            delivered = await self._deliver_async(event) if self.webhook_url else None
            return JSONResponse({"event": event, "webhook_status": delivered})

        return app

    async def _deliver_async(self, event: dict[str, Any]) -> int:
        assert self.webhook_url
        body, headers = self.signed(event)
        async with httpx.AsyncClient(timeout=10) as client:
            return (await client.post(self.webhook_url, content=body, headers=headers)).status_code
