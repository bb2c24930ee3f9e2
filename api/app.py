"""The webhook API: Pakasir callbacks land here and are enqueued; health and metrics for ops."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api.metrics import ShopCollector, registry, webhooks_total
from quickcart.config import get_settings
from quickcart.services.webhooks import WebhookVerdict, receive_pakasir_webhook
from workers import runtime
from workers.publish import publish_committed_unsafe

log = logging.getLogger(__name__)

WEBHOOK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["amount", "order_id", "project", "status"],
    "properties": {
        "amount": {"type": "integer", "minimum": 1},
        "order_id": {"type": "string", "maxLength": 64},
        "project": {"type": "string", "maxLength": 100},
        "status": {"type": "string", "enum": ["completed"]},
        "payment_method": {"type": "string"},
        "completed_at": {"type": "string", "format": "date-time"},
    },
}
ANSWERS = {
    "queued": "accepted", "duplicate": "already received", "malformed": "malformed notification",
    "wrong_project": "project or amount does not match", "wrong_amount":
    "project or amount does not match", "unknown_invoice": "unknown order",
}


def create_app() -> FastAPI:
    """Build the API (the Pakasir project must be configured: webhooks are checked against it)."""
    settings = get_settings()
    settings.require("api")
    app = FastAPI(title="QuickCart webhook API", version="1.0")
    _register_collector()

    @app.post(
        "/webhooks/pakasir",
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": WEBHOOK_SCHEMA}}}},
        responses={200: {"description": "Accepted or already received"},
                   400: {"description": "Project or amount mismatch"},
                   404: {"description": "Unknown order"},
                   422: {"description": "Malformed notification"}},
    )
    async def pakasir_webhook(request: Request) -> JSONResponse:
        """Store the notification (deduplicated) and enqueue its confirmation; never waits on
        the gateway."""
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        client = request.client.host if request.client else None
        # The database and broker calls block: run them off the event loop, so one slow
        # notification never holds up the others.
        verdict = await run_in_threadpool(_receive, body, settings.pakasir_project or "", client)
        return JSONResponse({"status": ANSWERS.get(verdict.outcome, verdict.outcome)},
                            status_code=verdict.status_code)

    @app.get("/health")
    def health() -> JSONResponse:
        """Database, audit database, Redis, broker and gateway, each ok or failing."""
        checks = {
            "database": _check(lambda: _select_one(runtime.engine())),
            "audit_database": _check(lambda: _select_one(runtime.audit_engine())),
            "redis": _check(lambda: runtime.redis_client().ping()),
            "broker": _check(lambda: _broker_ping()),
            "gateway": _check(lambda: _gateway_reachable(settings.pakasir_base_url)),
        }
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if healthy else "degraded", "checks": checks},
                            status_code=200 if healthy else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus exposition."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _receive(body: Any, project: str, client: str | None) -> WebhookVerdict:
    """Store and check one notification, then publish its committed confirmation task."""
    verdict = receive_pakasir_webhook(runtime.engine(), body, project, client)
    webhooks_total.labels(verdict.outcome).inc()
    publish_committed_unsafe(verdict.outbox)
    return verdict


_collector: list[ShopCollector] = []


def _register_collector() -> None:
    """Register the shop gauges once per process (tests build several apps)."""
    if not _collector:
        _collector.append(ShopCollector(runtime.engine))
        registry.register(_collector[0])


def _check(probe: Any) -> str:
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
        return f"failing: {type(exc).__name__}"
    return "ok"


def _select_one(engine: Any) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _broker_ping() -> None:
    from workers.app import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _gateway_reachable(base_url: str) -> None:
    # Any HTTP answer means the gateway is up; only a network failure is "down".
    httpx.get(base_url, timeout=3.0)
