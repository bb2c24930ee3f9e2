"""A local Pakasir sandbox: the public QRIS API plus a fault-injection control API under /sandbox.

Run it with ``python -m sandbox.pakasir --port 8990 --webhook-url http://127.0.0.1:8000/...``.
Everything lives in memory behind one lock. The ``/api/*`` endpoints speak Pakasir's wire
format (https://app.pakasir.com/p/docs); ``/sandbox/*`` is JSON for tests; ``GET /`` is a page
listing transactions with a "Bayar" button per pending one.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import logging
import os
import secrets
import string
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from quickcart.domain.money import format_idr, qris_fee

__all__ = ["SandboxState", "build_qris_payload", "create_app", "crc16_ccitt", "parse_tlv", "serve"]

logger = logging.getLogger(__name__)

WIB = timezone(timedelta(hours=7))
PENDING, COMPLETED, EXPIRED, CANCELED = "pending", "completed", "expired", "canceled"
_REF_ALPHABET = string.ascii_uppercase + string.digits
_WEBHOOK_CONNECT_RETRIES = 3
_WEBHOOK_RETRY_DELAY = 0.2
_WEBHOOK_TIMEOUT = 5.0


# --------------------------------------------------------------------------- QRIS payload


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), the checksum EMVCo QR codes end with."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _tlv(tag: str, value: str) -> str:
    if len(value) > 99:
        raise ValueError(f"EMVCo value for tag {tag} too long")
    return f"{tag}{len(value):02d}{value}"


def build_qris_payload(
    *, total: Decimal, reference: str, merchant: str = "PAKASIR SANDBOX", city: str = "JAKARTA"
) -> str:
    """A dynamic QRIS (EMVCo MPM) string for `total` rupiah, ending in tag 63 with its CRC."""
    body = "".join(
        [
            _tlv("00", "01"),
            _tlv("01", "12"),  # 12 = dynamic (single-use) QR
            _tlv(
                "26",
                _tlv("00", "ID.CO.SANDBOX.WWW")
                + _tlv("01", "936000000000000001")
                + _tlv("02", "SANDBOX0001")
                + _tlv("03", "UMI"),
            ),
            _tlv(
                "51",
                _tlv("00", "ID.CO.QRIS.WWW") + _tlv("02", "ID1020000000001") + _tlv("03", "UMI"),
            ),
            _tlv("52", "5816"),  # MCC: digital goods
            _tlv("53", "360"),  # IDR
            _tlv("54", f"{int(total)}.00"),  # Pakasir writes the amount with ".00"
            _tlv("58", "ID"),
            _tlv("59", merchant[:25]),
            _tlv("60", city[:15]),
            _tlv("61", "10110"),
            _tlv("62", _tlv("05", reference[:25])),
        ]
    )
    crc_input = body + "6304"
    return f"{crc_input}{crc16_ccitt(crc_input.encode('ascii')):04X}"


def parse_tlv(payload: str) -> dict[str, str]:
    """Split a flat EMVCo TLV string into {tag: value}; raises ValueError if truncated."""
    out: dict[str, str] = {}
    i = 0
    while i < len(payload):
        if i + 4 > len(payload):
            raise ValueError("truncated TLV header")
        tag, length = payload[i : i + 2], int(payload[i + 2 : i + 4])
        value = payload[i + 4 : i + 4 + length]
        if len(value) != length:
            raise ValueError(f"truncated TLV value for tag {tag}")
        out[tag] = value
        i += 4 + length
    return out


# --------------------------------------------------------------------------- state


def _rfc3339_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _rfc3339_wib(moment: datetime) -> str:
    return moment.astimezone(WIB).isoformat(timespec="milliseconds")


@dataclass
class Transaction:
    """One sandbox transaction."""

    project: str
    order_id: str
    amount: int
    fee: int
    total_payment: int
    payment_number: str
    created_at: datetime
    expired_at: datetime
    status: str = PENDING
    completed_at: datetime | None = None
    webhooks_sent: int = 0

    def status_at(self, now: datetime) -> str:
        """The status as reported now: a pending transaction past its expiry reads as expired."""
        if self.status == PENDING and now >= self.expired_at:
            return EXPIRED
        return self.status

    def payment_json(self) -> dict[str, Any]:
        """The ``payment`` object of transactioncreate."""
        return {
            "project": self.project,
            "order_id": self.order_id,
            "amount": self.amount,
            "fee": self.fee,
            "total_payment": self.total_payment,
            "payment_method": "qris",
            "payment_number": self.payment_number,
            "expired_at": _rfc3339_utc(self.expired_at),
        }

    def transaction_json(self, now: datetime) -> dict[str, Any]:
        """The ``transaction`` object of transactiondetail."""
        return {
            "amount": self.amount,
            "order_id": self.order_id,
            "project": self.project,
            "status": self.status_at(now),
            "payment_method": "qris",
            "completed_at": _rfc3339_wib(self.completed_at) if self.completed_at else None,
        }

    def webhook_json(self) -> dict[str, Any]:
        """The body Pakasir POSTs to the merchant's webhook URL."""
        assert self.completed_at is not None
        return {
            "amount": self.amount,
            "order_id": self.order_id,
            "project": self.project,
            "status": COMPLETED,
            "payment_method": "qris",
            "completed_at": _rfc3339_wib(self.completed_at),
        }


@dataclass
class WebhookPlan:
    """How the next webhook is delivered: dropped, delayed, and/or sent several times."""

    copies: int = 1
    delay_seconds: float = 0.0
    drop: bool = False


@dataclass
class SandboxState:
    """All mutable sandbox state; every access goes through `lock`."""

    project: str
    api_key: str
    initial_webhook_url: str | None
    expiry: timedelta
    lock: threading.Lock = field(default_factory=threading.Lock)
    webhook_url: str | None = None
    transactions: dict[str, Transaction] = field(default_factory=dict)
    webhook_plans: deque[WebhookPlan] = field(default_factory=deque)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    webhooks_in_flight: int = 0
    down_status: int | None = None
    fail_next: int = 0
    fail_status: int = 503
    latency_seconds: float = 0.0
    clock_offset: timedelta = timedelta(0)
    requests: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Start with the configured webhook URL."""
        self.webhook_url = self.initial_webhook_url

    def now(self) -> datetime:
        """Sandbox time: wall clock plus whatever /sandbox/clock/advance added."""
        return datetime.now(UTC) + self.clock_offset

    def reset(self) -> None:
        """Back to a freshly started sandbox (caller holds the lock)."""
        self.webhook_url = self.initial_webhook_url
        self.transactions.clear()
        self.webhook_plans.clear()
        self.deliveries.clear()
        self.down_status = None
        self.fail_next = 0
        self.fail_status = 503
        self.latency_seconds = 0.0
        self.clock_offset = timedelta(0)
        self.requests.clear()


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- webhook delivery


class WebhookSender:
    """Delivers webhooks on background threads, applying the queued fault plans."""

    def __init__(self, state: SandboxState) -> None:
        """Bind to the sandbox state."""
        self.state = state

    def dispatch(self, body: dict[str, Any], *, source: str) -> None:
        """Queue one webhook: consume the next fault plan and deliver it asynchronously."""
        with self.state.lock:
            plan = self.state.webhook_plans.popleft() if self.state.webhook_plans else WebhookPlan()
            url = self.state.webhook_url
            if plan.drop or url is None:
                self.state.deliveries.append(
                    {
                        "order_id": body.get("order_id"),
                        "source": source,
                        "outcome": "dropped" if plan.drop else "no_webhook_url",
                        "copy": 0,
                        "attempts": 0,
                        "status_code": None,
                        "body": body,
                    }
                )
                return
            self.state.webhooks_in_flight += 1
        thread = threading.Thread(
            target=self._deliver,
            args=(url, body, plan, source),
            name=f"sandbox-webhook-{body.get('order_id')}",
            daemon=True,
        )
        thread.start()

    def _deliver(self, url: str, body: dict[str, Any], plan: WebhookPlan, source: str) -> None:
        try:
            if plan.delay_seconds > 0:
                time.sleep(plan.delay_seconds)
            with httpx.Client(timeout=_WEBHOOK_TIMEOUT) as client:
                for copy in range(1, plan.copies + 1):
                    record = post_webhook(client, url, body)
                    record.update(
                        {"order_id": body.get("order_id"), "source": source, "copy": copy}
                    )
                    with self.state.lock:
                        self.state.deliveries.append(record)
        except Exception:  # a broken delivery must never kill the sandbox
            logger.exception("sandbox webhook delivery crashed")
        finally:
            with self.state.lock:
                self.state.webhooks_in_flight -= 1


def post_webhook(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST one webhook, retrying only on connection errors; returns a delivery record."""
    error: str | None = None
    for attempt in range(1, _WEBHOOK_CONNECT_RETRIES + 1):
        try:
            response = client.post(url, json=body)
        except httpx.TransportError as exc:
            error = f"{type(exc).__name__}: {exc}"
            if attempt < _WEBHOOK_CONNECT_RETRIES:
                time.sleep(_WEBHOOK_RETRY_DELAY * attempt)
            continue
        return {
            "outcome": "delivered",
            "attempts": attempt,
            "status_code": response.status_code,
            "response": response.text[:500],
            "body": body,
        }
    return {
        "outcome": "failed",
        "attempts": _WEBHOOK_CONNECT_RETRIES,
        "status_code": None,
        "error": error,
        "body": body,
    }


# --------------------------------------------------------------------------- the app


def create_app(
    project: str, api_key: str, *, webhook_url: str | None, expiry_minutes: int = 10
) -> FastAPI:
    """Build the sandbox ASGI app for one project/API key pair."""
    state = SandboxState(
        project=project,
        api_key=api_key,
        initial_webhook_url=webhook_url,
        expiry=timedelta(minutes=expiry_minutes),
    )
    sender = WebhookSender(state)
    app = FastAPI(title="Pakasir sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = state
    app.state.sender = sender

    @app.middleware("http")
    async def api_faults(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if not path.startswith("/api/"):
            response: Response = await call_next(request)
            return response
        with state.lock:
            state.requests[path] = state.requests.get(path, 0) + 1
            state.requests["total"] = state.requests.get("total", 0) + 1
            latency = state.latency_seconds
            fail_with = state.down_status
            if fail_with is None and state.fail_next > 0:
                state.fail_next -= 1
                fail_with = state.fail_status
        if latency > 0:
            await asyncio.sleep(latency)
        if fail_with is not None:
            return JSONResponse({"error": "service unavailable (sandbox fault)"}, fail_with)
        response = await call_next(request)
        return response

    @app.exception_handler(_ApiError)
    async def api_error(_: Request, exc: _ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    # ---------------------------------------------------------------- public API

    @app.post("/api/transactioncreate/{method}")
    async def transaction_create(method: str, request: Request) -> JSONResponse:
        order_id, amount = _authorise(state, await _json_body(request))
        if method != "qris":
            raise _ApiError(400, f"payment method {method!r} is not supported by the sandbox")
        with state.lock:
            now = state.now()
            existing = state.transactions.get(order_id)
            if existing is not None:
                status = existing.status_at(now)
                if existing.amount != amount and status in (PENDING, COMPLETED):
                    raise _ApiError(409, "order_id already used with a different amount")
                if status == PENDING:
                    return JSONResponse({"payment": existing.payment_json()})
                if status == COMPLETED:
                    raise _ApiError(409, "transaction already completed")
            fee = int(qris_fee(Decimal(amount)))
            total = amount + fee
            reference = "SB" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(17))
            tx = Transaction(
                project=state.project,
                order_id=order_id,
                amount=amount,
                fee=fee,
                total_payment=total,
                payment_number=build_qris_payload(total=Decimal(total), reference=reference),
                created_at=now,
                expired_at=now + state.expiry,
            )
            state.transactions[order_id] = tx
            return JSONResponse({"payment": tx.payment_json()})

    @app.get("/api/transactiondetail")
    async def transaction_detail(request: Request) -> JSONResponse:
        order_id, amount = _authorise(state, dict(request.query_params), amount_from_query=True)
        with state.lock:
            tx = _lookup(state, order_id, amount)
            return JSONResponse({"transaction": tx.transaction_json(state.now())})

    @app.post("/api/transactioncancel")
    async def transaction_cancel(request: Request) -> JSONResponse:
        order_id, amount = _authorise(state, await _json_body(request))
        with state.lock:
            tx = _lookup(state, order_id, amount)
            now = state.now()
            status = tx.status_at(now)
            if status == COMPLETED:
                raise _ApiError(409, "transaction already completed")
            if status == PENDING:
                tx.status = CANCELED
            return JSONResponse({"success": True, "transaction": tx.transaction_json(now)})

    @app.post("/api/paymentsimulation")
    async def payment_simulation(request: Request) -> JSONResponse:
        order_id, amount = _authorise(state, await _json_body(request))
        body = _complete(state, order_id, amount)
        if body is not None:
            sender.dispatch(body, source="paymentsimulation")
        with state.lock:
            tx = state.transactions[order_id]
            return JSONResponse({"success": True, "transaction": tx.transaction_json(state.now())})

    # ---------------------------------------------------------------- control API

    @app.post("/sandbox/reset")
    async def reset() -> dict[str, Any]:
        with state.lock:
            state.reset()
        return {"ok": True}

    @app.get("/sandbox/config")
    async def get_config() -> dict[str, Any]:
        with state.lock:
            return {
                "project": state.project,
                "webhook_url": state.webhook_url,
                "expiry_minutes": state.expiry.total_seconds() / 60,
                "down_status": state.down_status,
                "fail_next": state.fail_next,
                "latency_seconds": state.latency_seconds,
                "pending_webhook_faults": len(state.webhook_plans),
                "now": _rfc3339_utc(state.now()),
            }

    @app.post("/sandbox/webhook-url")
    async def set_webhook_url(request: Request) -> dict[str, Any]:
        data = await _json_body(request)
        url = data.get("url")
        if url is not None and not isinstance(url, str):
            raise _ApiError(400, "url must be a string or null")
        with state.lock:
            state.webhook_url = url or None
            return {"webhook_url": state.webhook_url}

    @app.post("/sandbox/faults/webhook")
    async def webhook_fault(request: Request) -> dict[str, Any]:
        data = await _json_body(request)
        plan = WebhookPlan(
            copies=_int_field(data, "copies", 1, minimum=1),
            delay_seconds=_float_field(data, "delay_seconds", 0.0),
            drop=bool(data.get("drop", False)),
        )
        return _queue_plans(state, plan, _int_field(data, "count", 1, minimum=1))

    @app.post("/sandbox/faults/webhook/duplicate")
    async def webhook_duplicate(request: Request) -> dict[str, Any]:
        data = await _json_body(request)
        plan = WebhookPlan(copies=_int_field(data, "copies", 2, minimum=1))
        return _queue_plans(state, plan, _int_field(data, "count", 1, minimum=1))

    @app.post("/sandbox/faults/webhook/delay")
    async def webhook_delay(request: Request) -> dict[str, Any]:
        data = await _json_body(request)
        plan = WebhookPlan(delay_seconds=_float_field(data, "seconds", 1.0))
        return _queue_plans(state, plan, _int_field(data, "count", 1, minimum=1))

    @app.post("/sandbox/faults/webhook/drop")
    async def webhook_drop(request: Request) -> dict[str, Any]:
        data = await _json_body(request)
        return _queue_plans(state, WebhookPlan(drop=True), _int_field(data, "count", 1, minimum=1))

    @app.delete("/sandbox/faults/webhook")
    async def clear_webhook_faults() -> dict[str, Any]:
        with state.lock:
            state.webhook_plans.clear()
        return {"pending_webhook_faults": 0}

    @app.post("/sandbox/down")
    async def gateway_down(request: Request) -> dict[str, Any]:
        data = await _json_body(request)
        status = _int_field(data, "status", 503, minimum=400)
        with state.lock:
            state.down_status = status
        return {"down_status": status}

    @app.post("/sandbox/up")
    async def gateway_up() -> dict[str, Any]:
        with state.lock:
            state.down_status = None
            state.fail_next = 0
            state.latency_seconds = 0.0
        return {"down_status": None}

    @app.post("/sandbox/faults/api")
    async def api_fault(request: Request) -> dict[str, Any]:
        data = await _json_body(request)
        with state.lock:
            state.fail_next = _int_field(data, "fail_next", 0, minimum=0)
            state.fail_status = _int_field(data, "status", 503, minimum=400)
            state.latency_seconds = _float_field(data, "latency_seconds", 0.0)
            return {
                "fail_next": state.fail_next,
                "status": state.fail_status,
                "latency_seconds": state.latency_seconds,
            }

    @app.post("/sandbox/clock/advance")
    async def advance_clock(request: Request) -> dict[str, Any]:
        data = await _json_body(request)
        seconds = _float_field(data, "seconds", 0.0)
        with state.lock:
            state.clock_offset += timedelta(seconds=seconds)
            return {"now": _rfc3339_utc(state.now())}

    @app.get("/sandbox/transactions")
    async def list_transactions() -> dict[str, Any]:
        with state.lock:
            now = state.now()
            return {"transactions": [_tx_summary(tx, now) for tx in state.transactions.values()]}

    @app.get("/sandbox/transactions/{order_id}")
    async def get_transaction(order_id: str) -> JSONResponse:
        with state.lock:
            tx = state.transactions.get(order_id)
            if tx is None:
                raise _ApiError(404, "transaction not found")
            return JSONResponse(_tx_summary(tx, state.now()))

    @app.post("/sandbox/transactions/{order_id}/mark-paid")
    async def mark_paid(order_id: str) -> JSONResponse:
        with state.lock:
            tx = state.transactions.get(order_id)
            if tx is None:
                raise _ApiError(404, "transaction not found")
            amount = tx.amount
        _complete(state, order_id, amount)  # deliberately no webhook: "webhook lost"
        with state.lock:
            return JSONResponse(_tx_summary(state.transactions[order_id], state.now()))

    @app.post("/sandbox/transactions/{order_id}/pay")
    async def pay_button(order_id: str) -> Response:
        with state.lock:
            tx = state.transactions.get(order_id)
            if tx is None:
                raise _ApiError(404, "transaction not found")
            amount = tx.amount
        body = _complete(state, order_id, amount)
        if body is not None:
            sender.dispatch(body, source="pay-button")
        return RedirectResponse("/", status_code=303)

    @app.post("/sandbox/webhooks/forge")
    async def forge_webhook(request: Request) -> dict[str, Any]:
        data = await _json_body(request)
        body = data.get("body")
        with state.lock:
            url = data.get("url") or state.webhook_url
        if not isinstance(url, str):
            raise _ApiError(400, "no webhook URL configured and none given")
        record = await asyncio.to_thread(_forge, url, body)
        record.update({"order_id": body.get("order_id") if isinstance(body, dict) else None})
        record.update({"source": "forged", "copy": 1})
        with state.lock:
            state.deliveries.append(record)
        return record

    @app.get("/sandbox/webhooks")
    async def webhook_log() -> dict[str, Any]:
        with state.lock:
            return {
                "in_flight": state.webhooks_in_flight,
                "pending_faults": len(state.webhook_plans),
                "deliveries": list(state.deliveries),
            }

    @app.get("/sandbox/stats")
    async def stats() -> dict[str, Any]:
        with state.lock:
            return {"requests": dict(state.requests)}

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        with state.lock:
            now = state.now()
            rows = [(tx, tx.status_at(now)) for tx in state.transactions.values()]
            hook = state.webhook_url
        return HTMLResponse(_render_index(state.project, hook, rows))

    return app


# --------------------------------------------------------------------------- helpers


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise _ApiError(400, "body must be JSON") from None
    if not isinstance(data, dict):
        raise _ApiError(400, "body must be a JSON object")
    return data


def _authorise(
    state: SandboxState, data: dict[str, Any], *, amount_from_query: bool = False
) -> tuple[str, int]:
    """Check project and api_key like the real gateway; return (order_id, amount)."""
    for name in ("project", "order_id", "amount", "api_key"):
        if data.get(name) in (None, ""):
            raise _ApiError(400, f"missing parameter: {name}")
    if data["project"] != state.project:
        raise _ApiError(400, "project not found")
    if not isinstance(data["api_key"], str) or not secrets.compare_digest(
        data["api_key"].encode(), state.api_key.encode()
    ):
        raise _ApiError(401, "invalid api_key")
    order_id = data["order_id"]
    if not isinstance(order_id, str) or len(order_id) > 255:
        raise _ApiError(400, "order_id must be a string of at most 255 characters")
    raw_amount = data["amount"]
    if amount_from_query:
        if not isinstance(raw_amount, str) or not raw_amount.isdigit():
            raise _ApiError(400, "amount must be a whole number")
        amount = int(raw_amount)
    else:
        if isinstance(raw_amount, bool) or not isinstance(raw_amount, int):
            raise _ApiError(400, "amount must be an integer (whole rupiah)")
        amount = raw_amount
    if amount <= 0:
        raise _ApiError(400, "amount must be positive")
    return order_id, amount


def _lookup(state: SandboxState, order_id: str, amount: int) -> Transaction:
    """Find a transaction by order_id and amount (caller holds the lock)."""
    tx = state.transactions.get(order_id)
    if tx is None or tx.amount != amount:
        raise _ApiError(404, "transaction not found")
    return tx


def _complete(state: SandboxState, order_id: str, amount: int) -> dict[str, Any] | None:
    """Mark paid; return the webhook body, or None if it was already completed."""
    with state.lock:
        tx = _lookup(state, order_id, amount)
        now = state.now()
        status = tx.status_at(now)
        if status == COMPLETED:
            return None
        if status != PENDING:
            raise _ApiError(409, f"transaction is {status}, cannot be paid")
        tx.status = COMPLETED
        tx.completed_at = now
        tx.webhooks_sent += 1
        return tx.webhook_json()


def _queue_plans(state: SandboxState, plan: WebhookPlan, count: int) -> dict[str, Any]:
    with state.lock:
        for _ in range(count):
            state.webhook_plans.append(
                WebhookPlan(copies=plan.copies, delay_seconds=plan.delay_seconds, drop=plan.drop)
            )
        return {"pending_webhook_faults": len(state.webhook_plans)}


def _int_field(data: dict[str, Any], name: str, default: int, *, minimum: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _ApiError(400, f"{name} must be an integer >= {minimum}")
    return value


def _float_field(data: dict[str, Any], name: str, default: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _ApiError(400, f"{name} must be a non-negative number")
    return float(value)


def _forge(url: str, body: object) -> dict[str, Any]:
    """Send an arbitrary body (any JSON, even malformed) to the webhook URL, synchronously."""
    with httpx.Client(timeout=_WEBHOOK_TIMEOUT) as client:
        try:
            response = client.post(
                url,
                content=json.dumps(body).encode(),
                headers={
                    "Content-Type": "application/json",
                },
            )
        except httpx.TransportError as exc:
            return {
                "outcome": "failed",
                "attempts": 1,
                "status_code": None,
                "error": f"{type(exc).__name__}: {exc}",
                "body": body,
            }
    return {
        "outcome": "delivered",
        "attempts": 1,
        "status_code": response.status_code,
        "response": response.text[:500],
        "body": body,
    }


def _tx_summary(tx: Transaction, now: datetime) -> dict[str, Any]:
    return {
        "order_id": tx.order_id,
        "project": tx.project,
        "amount": tx.amount,
        "fee": tx.fee,
        "total_payment": tx.total_payment,
        "status": tx.status_at(now),
        "payment_number": tx.payment_number,
        "created_at": _rfc3339_utc(tx.created_at),
        "expired_at": _rfc3339_utc(tx.expired_at),
        "completed_at": _rfc3339_wib(tx.completed_at) if tx.completed_at else None,
        "webhooks_sent": tx.webhooks_sent,
    }


def _qr_svg(payload: str) -> str:
    try:
        import segno
    except ImportError:  # segno is optional for the sandbox page
        return ""
    return str(segno.make(payload, error="m").svg_inline(scale=2))


def _render_index(
    project: str, webhook_url: str | None, rows: list[tuple[Transaction, str]]
) -> str:
    esc = html.escape
    body_rows = []
    for tx, status in sorted(rows, key=lambda r: r[0].created_at, reverse=True):
        action = ""
        qr = ""
        if status == PENDING:
            action = (
                f'<form method="post" action="/sandbox/transactions/{esc(tx.order_id, quote=True)}'
                '/pay"><button type="submit">Bayar</button></form>'
            )
            qr = f"<details><summary>QRIS</summary>{_qr_svg(tx.payment_number)}</details>"
        body_rows.append(
            "<tr>"
            f"<td><code>{esc(tx.order_id)}</code></td>"
            f"<td>{esc(format_idr(Decimal(tx.amount)))}</td>"
            f"<td>{esc(format_idr(Decimal(tx.fee)))}</td>"
            f"<td><b>{esc(format_idr(Decimal(tx.total_payment)))}</b></td>"
            f'<td class="{esc(status)}">{esc(status)}</td>'
            f"<td>{esc(tx.expired_at.astimezone(WIB).strftime('%Y-%m-%d %H:%M:%S WIB'))}</td>"
            f"<td>{action}{qr}</td>"
            "</tr>"
        )
    table = "".join(body_rows) or '<tr><td colspan="7">Belum ada transaksi.</td></tr>'
    return f"""<!doctype html>
<html lang="id"><head><meta charset="utf-8"><title>Pakasir sandbox: {esc(project)}</title>
<meta http-equiv="refresh" content="5">
<style>
body{{font-family:system-ui,sans-serif;margin:2rem}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.4rem .6rem;text-align:left;vertical-align:top}}
.pending{{color:#b58900}} .completed{{color:#2aa198}} .expired,.canceled{{color:#999}}
</style></head><body>
<h1>Pakasir sandbox</h1>
<p>Proyek <code>{esc(project)}</code> &middot;
webhook: <code>{esc(webhook_url or "(none)")}</code></p>
<table><thead><tr><th>Order ID</th><th>Jumlah</th><th>Biaya</th><th>Total</th><th>Status</th>
<th>Kedaluwarsa</th><th></th></tr></thead><tbody>{table}</tbody></table>
</body></html>"""


def serve(
    host: str = "127.0.0.1",
    port: int = 8990,
    *,
    project: str = "quickcart-sandbox",
    api_key: str = "sandbox-api-key",
    webhook_url: str | None = None,
    expiry_minutes: int = 10,
    log_level: str = "info",
) -> None:
    """Run the sandbox with uvicorn until interrupted (blocking)."""
    app = create_app(project, api_key, webhook_url=webhook_url, expiry_minutes=expiry_minutes)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: ``python -m sandbox.pakasir``."""
    parser = argparse.ArgumentParser(description="Local Pakasir sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8990)
    parser.add_argument("--project", default=os.environ.get("PAKASIR_PROJECT", "quickcart-sandbox"))
    parser.add_argument("--api-key", default=os.environ.get("PAKASIR_API_KEY", "sandbox-api-key"))
    parser.add_argument("--webhook-url", default=os.environ.get("PAKASIR_SANDBOX_WEBHOOK_URL"))
    parser.add_argument("--expiry-minutes", type=int, default=10)
    args = parser.parse_args(argv)
    serve(
        args.host,
        args.port,
        project=args.project,
        api_key=args.api_key,
        webhook_url=args.webhook_url,
        expiry_minutes=args.expiry_minutes,
    )


if __name__ == "__main__":
    main()
