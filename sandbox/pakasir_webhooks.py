"""The Pakasir sandbox's webhook sender: background delivery under the queued fault plans.

Each paid transaction's webhook takes the next `WebhookPlan` (drop it, delay it, send several
copies), and every delivery, dropped or not, is recorded in the state for tests to inspect.
`forge` sends a hand-written body once, for tests of a webhook endpoint's validation.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import httpx

from sandbox.pakasir_state import SandboxState, WebhookPlan

logger = logging.getLogger(__name__)

_WEBHOOK_CONNECT_RETRIES = 3
_WEBHOOK_RETRY_DELAY = 0.2
_WEBHOOK_TIMEOUT = 5.0


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


def _delivered(response: httpx.Response, attempts: int, body: object) -> dict[str, Any]:
    """The delivery record of a POST the webhook URL answered (whatever its status)."""
    return {
        "outcome": "delivered",
        "attempts": attempts,
        "status_code": response.status_code,
        "response": response.text[:500],
        "body": body,
    }


def _failed(error: str | None, attempts: int, body: object) -> dict[str, Any]:
    """The delivery record of a POST that never reached the webhook URL."""
    return {
        "outcome": "failed",
        "attempts": attempts,
        "status_code": None,
        "error": error,
        "body": body,
    }


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
        return _delivered(response, attempt, body)
    return _failed(error, _WEBHOOK_CONNECT_RETRIES, body)


def forge(url: str, body: object) -> dict[str, Any]:
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
            return _failed(f"{type(exc).__name__}: {exc}", 1, body)
    return _delivered(response, 1, body)
