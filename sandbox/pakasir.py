"""A local Pakasir sandbox: the public QRIS API plus a fault-injection control API under /sandbox.

Run it with ``python -m sandbox.pakasir --port 8990 --webhook-url http://127.0.0.1:8000/...``.
Everything lives in memory behind one lock. The ``/api/*`` endpoints speak Pakasir's wire
format (https://app.pakasir.com/p/docs); ``/sandbox/*`` is JSON for tests; ``GET /`` is a page
listing transactions with a "Bayar" button per pending one.

This module assembles the app and runs it; the parts are ``pakasir_api`` (``/api/*``),
``pakasir_control`` (``/sandbox/*``), ``pakasir_page`` (``GET /``), ``pakasir_webhooks``
(webhook delivery), ``pakasir_state`` (the in-memory state) and ``pakasir_qris`` (QR payloads).
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sandbox.pakasir_api import add_api_routes
from sandbox.pakasir_control import add_control_routes
from sandbox.pakasir_page import add_page_routes
from sandbox.pakasir_qris import build_qris_payload, crc16_ccitt, parse_tlv
from sandbox.pakasir_state import ApiError, SandboxState
from sandbox.pakasir_webhooks import WebhookSender

__all__ = ["SandboxState", "build_qris_payload", "create_app", "crc16_ccitt", "parse_tlv", "serve"]


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

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    add_api_routes(app, state, sender)
    add_control_routes(app, state)
    add_page_routes(app, state, sender)
    return app


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
