"""The Pakasir sandbox's control API: ``/sandbox/*`` JSON endpoints that tests drive it with.

Reset, configuration, the webhook URL, queued webhook faults (drop, delay, duplicate), gateway
faults (down, failing calls, latency), the clock, marking a transaction paid without a webhook,
forging webhooks, and what was sent and asked so far.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sandbox.pakasir_api import float_field, int_field, json_body
from sandbox.pakasir_state import (
    ApiError,
    SandboxState,
    Transaction,
    WebhookPlan,
    pay,
    rfc3339_utc,
    rfc3339_wib,
    transaction_or_404,
)
from sandbox.pakasir_webhooks import forge


def add_control_routes(app: FastAPI, state: SandboxState) -> None:
    """Register the ``/sandbox/*`` control endpoints on `app`."""

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
                "now": rfc3339_utc(state.now()),
            }

    @app.post("/sandbox/webhook-url")
    async def set_webhook_url(request: Request) -> dict[str, Any]:
        data = await json_body(request)
        url = data.get("url")
        if url is not None and not isinstance(url, str):
            raise ApiError(400, "url must be a string or null")
        with state.lock:
            state.webhook_url = url or None
            return {"webhook_url": state.webhook_url}

    @app.post("/sandbox/faults/webhook")
    async def webhook_fault(request: Request) -> dict[str, Any]:
        data = await json_body(request)
        plan = WebhookPlan(
            copies=int_field(data, "copies", 1, minimum=1),
            delay_seconds=float_field(data, "delay_seconds", 0.0),
            drop=bool(data.get("drop", False)),
        )
        return _queue_plans(state, plan, int_field(data, "count", 1, minimum=1))

    @app.post("/sandbox/faults/webhook/duplicate")
    async def webhook_duplicate(request: Request) -> dict[str, Any]:
        data = await json_body(request)
        plan = WebhookPlan(copies=int_field(data, "copies", 2, minimum=1))
        return _queue_plans(state, plan, int_field(data, "count", 1, minimum=1))

    @app.post("/sandbox/faults/webhook/delay")
    async def webhook_delay(request: Request) -> dict[str, Any]:
        data = await json_body(request)
        plan = WebhookPlan(delay_seconds=float_field(data, "seconds", 1.0))
        return _queue_plans(state, plan, int_field(data, "count", 1, minimum=1))

    @app.post("/sandbox/faults/webhook/drop")
    async def webhook_drop(request: Request) -> dict[str, Any]:
        data = await json_body(request)
        return _queue_plans(state, WebhookPlan(drop=True), int_field(data, "count", 1, minimum=1))

    @app.delete("/sandbox/faults/webhook")
    async def clear_webhook_faults() -> dict[str, Any]:
        with state.lock:
            state.webhook_plans.clear()
        return {"pending_webhook_faults": 0}

    @app.post("/sandbox/down")
    async def gateway_down(request: Request) -> dict[str, Any]:
        data = await json_body(request)
        status = int_field(data, "status", 503, minimum=400)
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
        data = await json_body(request)
        with state.lock:
            state.fail_next = int_field(data, "fail_next", 0, minimum=0)
            state.fail_status = int_field(data, "status", 503, minimum=400)
            state.latency_seconds = float_field(data, "latency_seconds", 0.0)
            return {
                "fail_next": state.fail_next,
                "status": state.fail_status,
                "latency_seconds": state.latency_seconds,
            }

    @app.post("/sandbox/clock/advance")
    async def advance_clock(request: Request) -> dict[str, Any]:
        data = await json_body(request)
        seconds = float_field(data, "seconds", 0.0)
        with state.lock:
            state.clock_offset += timedelta(seconds=seconds)
            return {"now": rfc3339_utc(state.now())}

    @app.get("/sandbox/transactions")
    async def list_transactions() -> dict[str, Any]:
        with state.lock:
            now = state.now()
            return {"transactions": [_tx_summary(tx, now) for tx in state.transactions.values()]}

    @app.get("/sandbox/transactions/{order_id}")
    async def get_transaction(order_id: str) -> JSONResponse:
        with state.lock:
            tx = transaction_or_404(state, order_id)
            return JSONResponse(_tx_summary(tx, state.now()))

    @app.post("/sandbox/transactions/{order_id}/mark-paid")
    async def mark_paid(order_id: str) -> JSONResponse:
        pay(state, order_id)  # deliberately no webhook: "webhook lost"
        with state.lock:
            return JSONResponse(_tx_summary(state.transactions[order_id], state.now()))

    @app.post("/sandbox/webhooks/forge")
    async def forge_webhook(request: Request) -> dict[str, Any]:
        data = await json_body(request)
        body = data.get("body")
        with state.lock:
            url = data.get("url") or state.webhook_url
        if not isinstance(url, str):
            raise ApiError(400, "no webhook URL configured and none given")
        record = await asyncio.to_thread(forge, url, body)
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


def _queue_plans(state: SandboxState, plan: WebhookPlan, count: int) -> dict[str, Any]:
    with state.lock:
        for _ in range(count):
            state.webhook_plans.append(
                WebhookPlan(copies=plan.copies, delay_seconds=plan.delay_seconds, drop=plan.drop)
            )
        return {"pending_webhook_faults": len(state.webhook_plans)}


def _tx_summary(tx: Transaction, now: datetime) -> dict[str, Any]:
    return {
        "order_id": tx.order_id,
        "project": tx.project,
        "amount": tx.amount,
        "fee": tx.fee,
        "total_payment": tx.total_payment,
        "status": tx.status_at(now),
        "payment_number": tx.payment_number,
        "created_at": rfc3339_utc(tx.created_at),
        "expired_at": rfc3339_utc(tx.expired_at),
        "completed_at": rfc3339_wib(tx.completed_at) if tx.completed_at else None,
        "webhooks_sent": tx.webhooks_sent,
    }

