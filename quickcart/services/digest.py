"""The admins' sales digest: one summary per window instead of a message per order.

At thousands of orders a message per order would flood every admin and spend the bot's
Telegram budget (about 30 messages/s in all) that shoppers' deliveries need. Money events that
need a human (late payments, gateway failures) still reach admins at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text

from quickcart.domain.money import as_text

LATEST_INVOICES = 10

#: Orders paid, created or expired at or after `:since` (idx_orders_paid_at,
#: idx_orders_created_at, idx_orders_expired_expires_at): the rows `sales_between` counts from,
#: and what beat's check (quickcart.services.housekeeping) asks about.
ACTIVITY_SINCE = ("FROM orders WHERE paid_at >= :since OR created_at >= :since"
                  " OR (status = 'expired' AND expires_at >= :since)")


@dataclass(frozen=True)
class SalesDigest:
    """What happened to orders in one window [since, until)."""

    since: datetime
    until: datetime
    paid: int
    paid_total: Decimal
    created_qris: int
    expired: int
    latest_paid: list[str]

    @property
    def empty(self) -> bool:
        """Nothing to tell."""
        return not (self.paid or self.created_qris or self.expired)

    def params(self, format_time: Any) -> dict[str, Any]:
        """Parameters of the `admin.sales_digest` catalog message."""
        return {"start": format_time(self.since), "end": format_time(self.until),
                "paid": self.paid, "paid_total": as_text(self.paid_total),
                "created": self.created_qris, "expired": self.expired,
                "latest": ", ".join(self.latest_paid) or "-"}


def sales_between(engine: Engine, since: datetime, until: datetime) -> SalesDigest:
    """Orders paid, QRIS orders created and orders expired in [since, until); locks nothing.

    Each count reads a column that is written once (paid_at, created_at, expires_at), so
    consecutive windows count every order exactly once."""
    window = {"since": since, "until": until}
    with engine.connect() as conn:
        counts = conn.execute(text(
            "SELECT"
            " count(*) FILTER (WHERE status = 'paid' AND paid_at >= :since"
            "   AND paid_at < :until) AS paid,"
            " coalesce(sum(total_bill) FILTER (WHERE status = 'paid' AND paid_at >= :since"
            "   AND paid_at < :until), 0) AS paid_total,"
            " count(*) FILTER (WHERE payment_method = 'qris' AND created_at >= :since"
            "   AND created_at < :until) AS created,"
            " count(*) FILTER (WHERE status = 'expired' AND expires_at >= :since"
            "   AND expires_at < :until) AS expired"
            " " + ACTIVITY_SINCE), window).one()
        latest = list(conn.execute(text(
            "SELECT invoice_id FROM orders WHERE status = 'paid' AND paid_at >= :since"
            " AND paid_at < :until ORDER BY paid_at DESC LIMIT :n"),
            {**window, "n": LATEST_INVOICES}).scalars())
    return SalesDigest(since, until, int(counts.paid), Decimal(counts.paid_total),
                       int(counts.created), int(counts.expired), latest)
