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

Billing: Products and Prices (``lookup_key``, ``GET /v1/prices?lookup_keys[]=``), Customers, Checkout in
``subscription`` mode (``line_items[0][price]``; completing it creates the Customer, an active Subscription and its
first paid Invoice), Subscriptions (``GET``/``POST``/``DELETE /v1/subscriptions/{id}``), Invoices (``GET``, ``POST
/v1/invoices/{id}/pay``) and Billing Portal sessions, all in the shapes of API version ``API_VERSION`` (the
subscription's period lives on its items; an invoice names its subscription under ``parent.subscription_details``).
:meth:`renew`, :meth:`pay_invoice`, :meth:`cancel_subscription` and :meth:`change_price` play the billing cycle and
return the events Stripe sends (``invoice.paid``, ``invoice.payment_failed``, ``customer.subscription.deleted``,
``customer.subscription.updated``); the matching ``/_fake/...`` routes deliver them, signed, to ``webhook_url``.

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
from letsbe_platform.tls import client_context

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


_BILLING_TABLES = ("products", "prices", "customers", "subscriptions", "invoices", "portal_sessions")
MONTH = 30 * 24 * 3600


def _no_such(kind: str, object_id: str, param: str = "id") -> _StripeError:
    return _StripeError(
        404, "invalid_request_error", f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


def _subscription_of(invoice: dict[str, Any]) -> str | None:
    """The subscription an invoice bills (Stripe's 2025 shape: ``parent.subscription_details``), None for one-offs."""
    return ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")


def _list(url: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": False, "url": url}


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
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    portal_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
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
        self._pending_events: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        self.app = self._build_app()
        self._state = StateFile(self.state_dir / "stripe.json") if self.state_dir else None
        if self._state is not None:
            data = self._state.load() or {}
            self.sessions.update(data.get("sessions", {}))
            for name in _BILLING_TABLES:
                getattr(self, name).update(data.get(name, {}))
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
                    **{name: getattr(self, name) for name in _BILLING_TABLES},
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
            for name in _BILLING_TABLES:
                getattr(self, name).clear()
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
                "parent": None,  # a one-off invoice: no subscription
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
        """The customer paid: the session completes and ``checkout.session.completed`` is returned.

        In subscription mode this also creates the Customer, the Subscription and its first Invoice (paid); the
        ``invoice.paid`` Stripe sends alongside is in :attr:`events` (and :meth:`complete_subscription` returns both).
        """
        with self._lock:
            s = self._session(session_id)
            if s["status"] != "open":
                raise ValueError(f"session {session_id} is {s['status']}")
            if s["mode"] == "subscription":
                return self._complete_subscription(s)[0]
            pi = _id("pi")
            self._intent_metadata[pi] = s.pop("_intent_metadata", {})
            s.update(status="complete", payment_status=payment_status, payment_intent=pi)
            obj = self._public(s)
        return self.event("checkout.session.completed", obj)

    def complete_subscription(self, session_id: str) -> list[dict[str, Any]]:
        """Pay a subscription-mode session: ``[checkout.session.completed, invoice.paid]`` (Stripe sends both)."""
        with self._lock:
            s = self._session(session_id)
            if s["status"] != "open":
                raise ValueError(f"session {session_id} is {s['status']}")
            if s["mode"] != "subscription":
                raise ValueError(f"session {session_id} is in {s['mode']} mode")
            return self._complete_subscription(s)

    def _complete_subscription(self, s: dict[str, Any]) -> list[dict[str, Any]]:
        now = int(time.time())
        customer_id = s.get("customer")
        if not customer_id:
            customer_id = self._new_customer({"email": s.get("customer_email")})["id"]
        sub_id = _id("sub")
        price = self.prices[s["_price"]]
        item_id = _id("si")
        sub = {
            "id": sub_id,
            "object": "subscription",
            "billing_cycle_anchor": now,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": price["currency"],
            "customer": customer_id,
            "ended_at": None,
            "items": _list(
                f"/v1/subscription_items?subscription={sub_id}",
                [
                    {
                        "id": item_id,
                        "object": "subscription_item",
                        "created": now,
                        "current_period_start": now,
                        "current_period_end": now + MONTH,
                        "metadata": {},
                        "price": price,
                        "quantity": int(s.get("_quantity", 1)),
                        "subscription": sub_id,
                    }
                ],
            ),
            "latest_invoice": None,
            "livemode": False,
            "metadata": s.get("_subscription_metadata", {}),
            "start_date": now,
            "status": "active",
        }
        self.subscriptions[sub_id] = sub
        invoice = self._new_invoice(sub, "subscription_create", now, now + MONTH, paid=True)
        s.update(
            status="complete", payment_status="paid", customer=customer_id, subscription=sub_id, invoice=invoice["id"]
        )
        return [
            self.event("checkout.session.completed", self._public(s)),
            self.event("invoice.paid", dict(invoice)),
        ]

    def _new_customer(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = _id("cus")
        customer = {
            "id": cid,
            "object": "customer",
            "created": int(time.time()),
            "email": p.get("email"),
            "livemode": False,
            "metadata": p.get("metadata") or {},
            "name": p.get("name"),
        }
        self.customers[cid] = customer
        return customer

    def _new_invoice(self, sub: dict[str, Any], reason: str, start: int, end: int, *, paid: bool) -> dict[str, Any]:
        item = sub["items"]["data"][0]
        amount = int(item["price"]["unit_amount"]) * int(item["quantity"])
        inv_id = _id("in")
        now = int(time.time())
        invoice = {
            "id": inv_id,
            "object": "invoice",
            "amount_due": amount,
            "amount_paid": amount if paid else 0,
            "amount_remaining": 0 if paid else amount,
            "attempt_count": 1,
            "attempted": True,
            "billing_reason": reason,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": sub["currency"],
            "customer": sub["customer"],
            "customer_email": self.customers.get(sub["customer"], {}).get("email"),
            "hosted_invoice_url": f"https://invoice.stripe.com/i/{inv_id}",
            "lines": _list(
                f"/v1/invoices/{inv_id}/lines",
                [
                    {
                        "id": _id("il"),
                        "object": "line_item",
                        "amount": amount,
                        "currency": sub["currency"],
                        "period": {"start": start, "end": end},
                        "pricing": {"price_details": {"price": item["price"]["id"]}, "type": "price_details"},
                        "quantity": item["quantity"],
                    }
                ],
            ),
            "livemode": False,
            "next_payment_attempt": None if paid else now + 3 * 24 * 3600,
            "number": f"LB-{len(self.invoices) + 1:04d}",
            "parent": {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]},
            },
            "period_start": start,
            "period_end": end,
            "status": "paid" if paid else "open",
            "status_transitions": {"paid_at": now if paid else None, "finalized_at": now},
            "total": amount,
        }
        self.invoices[inv_id] = invoice
        sub["latest_invoice"] = inv_id
        if paid:
            self._advance(sub, start, end)
        else:
            sub["status"] = "past_due"
        return invoice

    @staticmethod
    def _advance(sub: dict[str, Any], start: int, end: int) -> None:
        item = sub["items"]["data"][0]
        item["current_period_start"], item["current_period_end"] = start, end
        sub["status"] = "active"

    def _subscription(self, sub_id: str) -> dict[str, Any]:
        try:
            return self.subscriptions[sub_id]
        except KeyError:
            raise _no_such("subscription", sub_id) from None

    def _invoice(self, invoice_id: str) -> dict[str, Any]:
        try:
            return self.invoices[invoice_id]
        except KeyError:
            raise _no_such("invoice", invoice_id) from None

    def renew(self, subscription_id: str, *, fail: bool = False) -> dict[str, Any]:
        """The next billing cycle: a new invoice for the next period, paid (``invoice.paid``) or declined
        (``invoice.payment_failed``, the subscription turns ``past_due``)."""
        with self._lock:
            sub = self._subscription(subscription_id)
            if sub["status"] == "canceled":
                raise ValueError(f"subscription {subscription_id} is canceled")
            start = sub["items"]["data"][0]["current_period_end"]
            invoice = self._new_invoice(sub, "subscription_cycle", start, start + MONTH, paid=not fail)
            obj = dict(invoice)
        return self.event("invoice.payment_failed" if fail else "invoice.paid", obj)

    def pay_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The customer paid an open invoice (new card, or Stripe's retry succeeded): ``invoice.paid``."""
        with self._lock:
            obj = self._pay(invoice_id)
        return self.event("invoice.paid", obj)

    def _pay(self, invoice_id: str) -> dict[str, Any]:
        inv = self._invoice(invoice_id)
        if inv["status"] != "open":
            raise _invalid("invoice", f"Invoice is already {inv['status']}.")
        now = int(time.time())
        inv.update(
            status="paid",
            amount_paid=inv["amount_due"],
            amount_remaining=0,
            next_payment_attempt=None,
            attempt_count=inv["attempt_count"] + 1,
        )
        inv["status_transitions"]["paid_at"] = now
        sub = self.subscriptions.get(inv["parent"]["subscription_details"]["subscription"])
        if sub is not None and sub["status"] != "canceled":
            self._advance(sub, inv["period_start"], inv["period_end"])
        return dict(inv)

    def cancel_subscription(self, subscription_id: str) -> dict[str, Any]:
        """The subscription ends now: ``customer.subscription.deleted``."""
        with self._lock:
            obj = self._cancel(subscription_id)
        return self.event("customer.subscription.deleted", obj)

    def _cancel(self, subscription_id: str) -> dict[str, Any]:
        sub = self._subscription(subscription_id)
        if sub["status"] == "canceled":
            raise _invalid(
                "subscription",
                f"A canceled subscription can only update its cancellation_details and metadata. ({subscription_id})",
            )
        now = int(time.time())
        sub.update(status="canceled", canceled_at=now, ended_at=now)
        return dict(sub)

    def change_price(self, subscription_id: str, price_id: str) -> dict[str, Any]:
        """A plan change (the Billing Portal's "update plan"): ``customer.subscription.updated``."""
        with self._lock:
            obj, previous = self._change_price(subscription_id, price_id)
        evt = self.event("customer.subscription.updated", obj)
        evt["data"]["previous_attributes"] = previous
        return evt

    def _change_price(self, subscription_id: str, price_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        sub = self._subscription(subscription_id)
        if price_id not in self.prices:
            raise _no_such("price", price_id, "items[0][price]")
        item = sub["items"]["data"][0]
        previous = {"items": {"data": [json.loads(json.dumps(item))]}}
        item["price"] = self.prices[price_id]
        return json.loads(json.dumps(sub)), previous

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
        if mode != "subscription" and p.get("subscription_data"):
            raise _invalid("subscription_data", "You can only pass `subscription_data` in `subscription` mode.")
        if p.get("customer") and p["customer"] not in self.customers:
            raise _no_such("customer", p["customer"], "customer")
        total, currency = 0, None
        for i, item in enumerate(items or []):
            if not isinstance(item, dict):
                raise _invalid(f"line_items[{i}]", "Invalid object")
            qty = item.get("quantity", "1")
            if not str(qty).isdigit() or int(qty) < 1:
                raise _invalid(f"line_items[{i}][quantity]", "Invalid integer: " + str(qty))
            if item.get("price"):
                price = self.prices.get(item["price"])
                if price is None:
                    raise _no_such("price", item["price"], f"line_items[{i}][price]")
                if mode == "subscription" and price["type"] != "recurring":
                    raise _invalid(
                        f"line_items[{i}][price]",
                        "You must provide at least one recurring price in `subscription` mode when using prices.",
                    )
                if currency and price["currency"] != currency:
                    raise _invalid("line_items", "All line items must share one currency.")
                currency = price["currency"]
                total += int(price["unit_amount"]) * int(qty)
                continue
            if mode == "subscription":
                raise _invalid(f"line_items[{i}][price]", "This fake takes subscription line items by price id.")
            pd = item.get("price_data")
            if pd is None:
                raise _missing(f"line_items[{i}][price_data]")
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
            "customer": p.get("customer"),
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
            "subscription": None,
            "invoice": None,
            "_intent_metadata": (p.get("payment_intent_data") or {}).get("metadata") or {},
        }
        if mode == "subscription":
            session["_price"] = items[0]["price"]
            session["_quantity"] = int(items[0].get("quantity", "1"))
            session["_subscription_metadata"] = (p.get("subscription_data") or {}).get("metadata") or {}
            session["payment_intent"] = None
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
            if request.method in ("GET", "DELETE"):
                body = request.url.query  # the SDK sends these parameters in the query string
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

        # --- billing objects ---------------------------------------------------------------------------------

        @app.post("/v1/products")
        async def create_product(request: Request) -> JSONResponse:
            return await handle(request, self._create_product)

        @app.get("/v1/products/{product_id}")
        async def get_product(product_id: str, request: Request) -> JSONResponse:
            def op(_p: dict[str, Any]) -> dict[str, Any]:
                if product_id not in self.products:
                    raise _no_such("product", product_id)
                return self.products[product_id]

            return await handle(request, op)

        @app.post("/v1/prices")
        async def create_price(request: Request) -> JSONResponse:
            return await handle(request, self._create_price)

        @app.get("/v1/prices")
        async def list_prices(request: Request) -> JSONResponse:
            def op(p: dict[str, Any]) -> dict[str, Any]:
                keys = p.get("lookup_keys")
                rows = [
                    x
                    for x in self.prices.values()
                    if (keys is None or x["lookup_key"] in keys)
                    and ("active" not in p or str(x["active"]).lower() == p["active"])
                ]
                return _list("/v1/prices", rows[: int(p.get("limit", 10))])

            return await handle(request, op)

        @app.get("/v1/prices/{price_id}")
        async def get_price(price_id: str, request: Request) -> JSONResponse:
            def op(_p: dict[str, Any]) -> dict[str, Any]:
                if price_id not in self.prices:
                    raise _no_such("price", price_id)
                return self.prices[price_id]

            return await handle(request, op)

        @app.post("/v1/customers")
        async def create_customer(request: Request) -> JSONResponse:
            return await handle(request, self._new_customer)

        @app.get("/v1/customers")
        async def list_customers(request: Request) -> JSONResponse:
            def op(p: dict[str, Any]) -> dict[str, Any]:
                rows = [c for c in self.customers.values() if p.get("email") in (None, c.get("email"))]
                return _list("/v1/customers", rows[: int(p.get("limit", 10))])

            return await handle(request, op)

        @app.get("/v1/customers/{customer_id}")
        async def get_customer(customer_id: str, request: Request) -> JSONResponse:
            def op(_p: dict[str, Any]) -> dict[str, Any]:
                if customer_id not in self.customers:
                    raise _no_such("customer", customer_id)
                return self.customers[customer_id]

            return await handle(request, op)

        @app.get("/v1/subscriptions/{subscription_id}")
        async def get_subscription(subscription_id: str, request: Request) -> JSONResponse:
            return await handle(request, lambda _p: self._subscription(subscription_id))

        @app.post("/v1/subscriptions/{subscription_id}")
        async def update_subscription(subscription_id: str, request: Request) -> JSONResponse:
            def op(p: dict[str, Any]) -> dict[str, Any]:
                items = p.get("items") or []
                price = items[0].get("price") if items and isinstance(items[0], dict) else None
                if not price:
                    raise _missing("items[0][price]")
                obj, previous = self._change_price(subscription_id, price)
                self._pending_events.append(("customer.subscription.updated", obj, previous))
                return obj

            return await self._and_deliver(await handle(request, op))

        @app.delete("/v1/subscriptions/{subscription_id}")
        async def cancel_subscription(subscription_id: str, request: Request) -> JSONResponse:
            def op(_p: dict[str, Any]) -> dict[str, Any]:
                obj = self._cancel(subscription_id)
                self._pending_events.append(("customer.subscription.deleted", obj, None))
                return obj

            return await self._and_deliver(await handle(request, op))

        @app.get("/v1/invoices")
        async def list_invoices(request: Request) -> JSONResponse:
            def op(p: dict[str, Any]) -> dict[str, Any]:
                rows = [
                    i
                    for i in self.invoices.values()
                    if (not p.get("customer") or i["customer"] == p["customer"])
                    and (not p.get("subscription") or _subscription_of(i) == p["subscription"])
                ]
                rows.sort(key=lambda i: i["created"], reverse=True)
                return _list("/v1/invoices", rows[: int(p.get("limit", 10))])

            return await handle(request, op)

        @app.get("/v1/invoices/{invoice_id}")
        async def get_invoice(invoice_id: str, request: Request) -> JSONResponse:
            return await handle(request, lambda _p: self._invoice(invoice_id))

        @app.post("/v1/invoices/{invoice_id}/pay")
        async def pay_invoice(invoice_id: str, request: Request) -> JSONResponse:
            def op(_p: dict[str, Any]) -> dict[str, Any]:
                obj = self._pay(invoice_id)
                self._pending_events.append(("invoice.paid", obj, None))
                return obj

            return await self._and_deliver(await handle(request, op))

        @app.post("/v1/billing_portal/sessions")
        async def create_portal_session(request: Request) -> JSONResponse:
            def op(p: dict[str, Any]) -> dict[str, Any]:
                customer = p.get("customer")
                if not customer:
                    raise _missing("customer")
                if customer not in self.customers:
                    raise _no_such("customer", customer, "customer")
                bps = _id("bps")
                portal = {
                    "id": bps,
                    "object": "billing_portal.session",
                    "configuration": "bpc_test_default",
                    "created": int(time.time()),
                    "customer": customer,
                    "flow": None,
                    "livemode": False,
                    "locale": None,
                    "on_behalf_of": None,
                    "return_url": p.get("return_url"),
                    "url": f"https://billing.stripe.com/p/session/{bps}",
                }
                self.portal_sessions[bps] = portal
                return portal

            return await handle(request, op)

        # --- the customer's side, for the sandbox (each delivers what Stripe would send) ------------------

        @app.post("/_fake/subscriptions/{subscription_id}/renew")
        async def fake_renew(subscription_id: str, fail: bool = False) -> JSONResponse:
            return await self._fake_action(lambda: [self.renew(subscription_id, fail=fail)])

        @app.post("/_fake/invoices/{invoice_id}/pay")
        async def fake_pay(invoice_id: str) -> JSONResponse:
            return await self._fake_action(lambda: [self.pay_invoice(invoice_id)])

        @app.post("/_fake/subscriptions/{subscription_id}/cancel")
        async def fake_cancel(subscription_id: str) -> JSONResponse:
            return await self._fake_action(lambda: [self.cancel_subscription(subscription_id)])

        @app.post("/_fake/checkout/sessions/{session_id}/complete")
        async def complete_session(session_id: str) -> JSONResponse:
            """Pay the session as the customer would, and deliver the webhook if a url is configured."""
            try:
                with self._lock:
                    s = self._session(session_id)
                    subscription = s["mode"] == "subscription" and s["status"] == "open"
                events = self.complete_subscription(session_id) if subscription else [self.complete(session_id)]
            except _StripeError as exc:
                return exc.response()
            except ValueError as exc:
                return _invalid("session", str(exc)).response()
            statuses = [await self._deliver_async(e) for e in events] if self.webhook_url else []
            return JSONResponse(
                {"event": events[0], "events": events, "webhook_status": statuses[0] if statuses else None}
            )

        return app

    def _create_product(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("name"):
            raise _missing("name")
        pid = p.get("id") or _id("prod")
        if pid in self.products:
            raise _StripeError(
                400, "invalid_request_error", "Product already exists.", code="resource_already_exists", param="id"
            )
        product = {
            "id": pid,
            "object": "product",
            "active": True,
            "created": int(time.time()),
            "default_price": None,
            "description": p.get("description"),
            "livemode": False,
            "metadata": p.get("metadata") or {},
            "name": p["name"],
            "type": "service",
            "updated": int(time.time()),
        }
        self.products[pid] = product
        return product

    def _create_price(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("currency"):
            raise _missing("currency")
        if "unit_amount" not in p:
            raise _missing("unit_amount")
        if not str(p["unit_amount"]).isdigit():
            raise _invalid("unit_amount", f"Invalid integer: {p['unit_amount']}")
        product = p.get("product")
        if product is None and (p.get("product_data") or {}).get("name"):
            product = self._create_product({"name": p["product_data"]["name"]})["id"]
        if product is None:
            raise _missing("product")
        if product not in self.products:
            raise _no_such("product", product, "product")
        recurring = p.get("recurring")
        if recurring is not None:
            if recurring.get("interval") not in ("day", "week", "month", "year"):
                raise _invalid(
                    "recurring[interval]", "Invalid recurring[interval]: must be one of day, week, month, or year"
                )
        key = p.get("lookup_key")
        if key:
            holder = next((x for x in self.prices.values() if x["lookup_key"] == key), None)
            if holder is not None:
                if str(p.get("transfer_lookup_key")).lower() != "true":
                    raise _invalid(
                        "lookup_key",
                        f"A price (`{holder['id']}`) already uses that lookup key. Pass `transfer_lookup_key=true` "
                        "to move it to this price.",
                    )
                holder["lookup_key"] = None
        price_id = _id("price")
        price = {
            "id": price_id,
            "object": "price",
            "active": True,
            "billing_scheme": "per_unit",
            "created": int(time.time()),
            "currency": p["currency"].lower(),
            "livemode": False,
            "lookup_key": key or None,
            "metadata": p.get("metadata") or {},
            "nickname": p.get("nickname"),
            "product": product,
            "recurring": None
            if recurring is None
            else {
                "interval": recurring["interval"],
                "interval_count": int(recurring.get("interval_count", 1)),
                "usage_type": "licensed",
                "meter": None,
                "trial_period_days": None,
            },
            "tax_behavior": "unspecified",
            "type": "recurring" if recurring is not None else "one_time",
            "unit_amount": int(p["unit_amount"]),
            "unit_amount_decimal": str(p["unit_amount"]),
        }
        self.prices[price_id] = price
        return price

    async def _and_deliver(self, response: JSONResponse) -> JSONResponse:
        """Deliver the events an API call caused (a cancel, a plan change, a payment) once it was answered 2xx."""
        with self._lock:
            pending, self._pending_events[:] = list(self._pending_events), []
        if response.status_code == 200:
            for type_, obj, previous in pending:
                evt = self.event(type_, obj)
                if previous is not None:
                    evt["data"]["previous_attributes"] = previous
                if self.webhook_url:
                    await self._deliver_async(evt)
        return response

    async def _fake_action(self, make) -> JSONResponse:
        try:
            events = make()
        except _StripeError as exc:
            return exc.response()
        except ValueError as exc:
            return _invalid("id", str(exc)).response()
        statuses = [await self._deliver_async(e) for e in events] if self.webhook_url else []
        return JSONResponse({"events": events, "webhook_status": statuses})

    async def _deliver_async(self, event: dict[str, Any]) -> int:
        assert self.webhook_url
        body, headers = self.signed(event)
        async with httpx.AsyncClient(timeout=10, verify=client_context()) as client:
            return (await client.post(self.webhook_url, content=body, headers=headers)).status_code
