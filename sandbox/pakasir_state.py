"""The Pakasir sandbox's state: its transactions, fault settings and webhook plans, in memory.

Everything sits in one `SandboxState` behind one lock. `ApiError` is how any part refuses a
request (the app turns it into ``{"error": ...}`` with its status), and `complete` is the one
way a pending transaction becomes paid.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

WIB = timezone(timedelta(hours=7))
PENDING, COMPLETED, EXPIRED, CANCELED = "pending", "completed", "expired", "canceled"


def rfc3339_utc(moment: datetime) -> str:
    """`moment` as Pakasir writes UTC times: microseconds and a Z."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def rfc3339_wib(moment: datetime) -> str:
    """`moment` as Pakasir writes Jakarta times: milliseconds and +07:00."""
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
            "expired_at": rfc3339_utc(self.expired_at),
        }

    def transaction_json(self, now: datetime) -> dict[str, Any]:
        """The ``transaction`` object of transactiondetail."""
        return {
            "amount": self.amount,
            "order_id": self.order_id,
            "project": self.project,
            "status": self.status_at(now),
            "payment_method": "qris",
            "completed_at": rfc3339_wib(self.completed_at) if self.completed_at else None,
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
            "completed_at": rfc3339_wib(self.completed_at),
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


class ApiError(Exception):
    """A refused request: answered as ``{"error": message}`` with HTTP `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def lookup(state: SandboxState, order_id: str, amount: int) -> Transaction:
    """Find a transaction by order_id and amount (caller holds the lock)."""
    tx = state.transactions.get(order_id)
    if tx is None or tx.amount != amount:
        raise ApiError(404, "transaction not found")
    return tx


def complete(state: SandboxState, order_id: str, amount: int) -> dict[str, Any] | None:
    """Mark paid; return the webhook body, or None if it was already completed."""
    with state.lock:
        tx = lookup(state, order_id, amount)
        now = state.now()
        status = tx.status_at(now)
        if status == COMPLETED:
            return None
        if status != PENDING:
            raise ApiError(409, f"transaction is {status}, cannot be paid")
        tx.status = COMPLETED
        tx.completed_at = now
        tx.webhooks_sent += 1
        return tx.webhook_json()


def transaction_or_404(state: SandboxState, order_id: str) -> Transaction:
    """The transaction with `order_id`, whatever its amount (caller holds the lock)."""
    tx = state.transactions.get(order_id)
    if tx is None:
        raise ApiError(404, "transaction not found")
    return tx


def pay(state: SandboxState, order_id: str) -> dict[str, Any] | None:
    """Mark `order_id` paid at its own amount, as the customer would; see `complete`."""
    with state.lock:
        amount = transaction_or_404(state, order_id).amount
    return complete(state, order_id, amount)
