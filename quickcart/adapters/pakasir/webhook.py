"""Checking a Pakasir webhook body: strict field validation into a `WebhookNotification`.

Pakasir does not sign its webhooks, so a valid body is only a claim: callers confirm it with the
transaction detail API before trusting it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from quickcart.adapters.pakasir.mapping import (
    STATUS_COMPLETED,
    check_order_id,
    normalise_status,
    optional_timestamp,
    require_str,
)
from quickcart.domain.money import MAX_AMOUNT, ZERO


@dataclass(frozen=True)
class WebhookNotification:
    """A validated (but unsigned, hence untrusted) Pakasir webhook body."""

    order_id: str
    amount: Decimal
    project: str
    status: str
    payment_method: str
    completed_at: datetime | None

    @property
    def is_completed(self) -> bool:
        """True when the notification claims the payment completed (verify via the detail API)."""
        return self.status == STATUS_COMPLETED


_WEBHOOK_FIELDS: Final = ("amount", "order_id", "project", "status", "payment_method")


def parse_webhook(body: Mapping[str, object]) -> WebhookNotification:
    """Validate a webhook body strictly; raises ValueError naming the offending field."""
    if not isinstance(body, Mapping):
        raise ValueError("webhook body must be a JSON object")
    missing = [name for name in (*_WEBHOOK_FIELDS, "completed_at") if name not in body]
    if missing:
        raise ValueError(f"webhook body is missing field(s): {', '.join(missing)}")
    raw_amount = body["amount"]
    if isinstance(raw_amount, bool) or not isinstance(raw_amount, int | Decimal):
        raise ValueError(
            f"webhook amount must be an integer number of rupiah, got {type(raw_amount).__name__}"
        )
    amount = Decimal(raw_amount)
    if not amount.is_finite() or amount != amount.to_integral_value():
        raise ValueError("webhook amount must be whole rupiah")
    if amount <= ZERO or amount > MAX_AMOUNT:
        raise ValueError("webhook amount must be positive and within range")
    try:
        order_id = check_order_id(body["order_id"])
    except TypeError:
        raise ValueError("webhook order_id must be a string") from None
    except ValueError as exc:
        raise ValueError(f"webhook order_id invalid: {exc}") from None
    project = require_str(body, "project")
    status = normalise_status(require_str(body, "status"))
    payment_method = require_str(body, "payment_method")
    try:
        completed_at = optional_timestamp(body, "completed_at")
    except ValueError as exc:
        raise ValueError(f"webhook completed_at invalid: {exc}") from None
    if status == STATUS_COMPLETED and completed_at is None:
        raise ValueError("webhook completed_at is required when status is completed")
    return WebhookNotification(
        order_id=order_id,
        amount=amount.quantize(Decimal("1")),
        project=project,
        status=status,
        payment_method=payment_method,
        completed_at=completed_at,
    )
