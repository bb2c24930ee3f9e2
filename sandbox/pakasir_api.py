"""The Pakasir sandbox's public API: ``/api/*`` in Pakasir's own wire format, with its faults.

Requests are authorised like the real gateway (project and API key) and the API faults set
through the control API (gateway down, the next N calls failing, latency) apply here only.
The request-reading helpers are shared with the control API.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from quickcart.domain.money import qris_fee
from sandbox.pakasir_qris import build_qris_payload
from sandbox.pakasir_state import (
    CANCELED,
    COMPLETED,
    PENDING,
    ApiError,
    SandboxState,
    Transaction,
    complete,
    lookup,
)
from sandbox.pakasir_webhooks import WebhookSender

_REF_ALPHABET = string.ascii_uppercase + string.digits


def add_api_routes(app: FastAPI, state: SandboxState, sender: WebhookSender) -> None:
    """Register the fault middleware and the ``/api/*`` endpoints on `app`."""

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

    @app.post("/api/transactioncreate/{method}")
    async def transaction_create(method: str, request: Request) -> JSONResponse:
        order_id, amount = authorise(state, await json_body(request))
        if method != "qris":
            raise ApiError(400, f"payment method {method!r} is not supported by the sandbox")
        with state.lock:
            now = state.now()
            existing = state.transactions.get(order_id)
            if existing is not None:
                status = existing.status_at(now)
                if existing.amount != amount and status in (PENDING, COMPLETED):
                    raise ApiError(409, "order_id already used with a different amount")
                if status == PENDING:
                    return JSONResponse({"payment": existing.payment_json()})
                if status == COMPLETED:
                    raise ApiError(409, "transaction already completed")
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
        order_id, amount = authorise(state, dict(request.query_params), amount_from_query=True)
        with state.lock:
            tx = lookup(state, order_id, amount)
            return JSONResponse({"transaction": tx.transaction_json(state.now())})

    @app.post("/api/transactioncancel")
    async def transaction_cancel(request: Request) -> JSONResponse:
        order_id, amount = authorise(state, await json_body(request))
        with state.lock:
            tx = lookup(state, order_id, amount)
            now = state.now()
            status = tx.status_at(now)
            if status == COMPLETED:
                raise ApiError(409, "transaction already completed")
            if status == PENDING:
                tx.status = CANCELED
            return JSONResponse({"success": True, "transaction": tx.transaction_json(now)})

    @app.post("/api/paymentsimulation")
    async def payment_simulation(request: Request) -> JSONResponse:
        order_id, amount = authorise(state, await json_body(request))
        body = complete(state, order_id, amount)
        if body is not None:
            sender.dispatch(body, source="paymentsimulation")
        with state.lock:
            tx = state.transactions[order_id]
            return JSONResponse({"success": True, "transaction": tx.transaction_json(state.now())})


# --------------------------------------------------------------------------- request reading


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); 400 when it is not a JSON object."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(400, "body must be JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object")
    return data


def authorise(
    state: SandboxState, data: dict[str, Any], *, amount_from_query: bool = False
) -> tuple[str, int]:
    """Check project and api_key like the real gateway; return (order_id, amount)."""
    for name in ("project", "order_id", "amount", "api_key"):
        if data.get(name) in (None, ""):
            raise ApiError(400, f"missing parameter: {name}")
    if data["project"] != state.project:
        raise ApiError(400, "project not found")
    if not isinstance(data["api_key"], str) or not secrets.compare_digest(
        data["api_key"].encode(), state.api_key.encode()
    ):
        raise ApiError(401, "invalid api_key")
    order_id = data["order_id"]
    if not isinstance(order_id, str) or len(order_id) > 255:
        raise ApiError(400, "order_id must be a string of at most 255 characters")
    raw_amount = data["amount"]
    if amount_from_query:
        if not isinstance(raw_amount, str) or not raw_amount.isdigit():
            raise ApiError(400, "amount must be a whole number")
        amount = int(raw_amount)
    else:
        if isinstance(raw_amount, bool) or not isinstance(raw_amount, int):
            raise ApiError(400, "amount must be an integer (whole rupiah)")
        amount = raw_amount
    if amount <= 0:
        raise ApiError(400, "amount must be positive")
    return order_id, amount


def int_field(data: dict[str, Any], name: str, default: int, *, minimum: int) -> int:
    """`data[name]` (else `default`) as an integer >= `minimum`; 400 otherwise."""
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ApiError(400, f"{name} must be an integer >= {minimum}")
    return value


def float_field(data: dict[str, Any], name: str, default: float) -> float:
    """`data[name]` (else `default`) as a non-negative number; 400 otherwise."""
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ApiError(400, f"{name} must be a non-negative number")
    return float(value)

