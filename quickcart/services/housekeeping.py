"""Cheap "is there anything to do?" checks for the periodic housekeeping tasks.

Beat asks these before sending a housekeeping task (workers.housekeeping), so an idle shop sends
(and logs, and shows in Flower) almost nothing. Each check must see everything its task would
act on: a check that says "nothing" when its task would have done something delays that work
until the check says "yes". So no check writes a filter of its own: the module owning the task's
query exports the query's FROM/WHERE fragment (outbox.RELAYABLE, orders.DUE, …), the task's
query is built on it, and the check here is `SELECT EXISTS (SELECT 1 <fragment>)` with the same
bound parameters; changing a task's filter changes its check. Row locks, ordering and limits
stay in the task's query. Each fragment is served by an index (named where it is defined), so a
check is one indexed `EXISTS`. `audit_unshipped`, `sold_deltas` and `open_reviews` ask whether a
table (or its open rows) is empty: their tasks take every row there.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection

from quickcart.db import outbox
from quickcart.db.sql import sql
from quickcart.services import broadcast, delivery, digest, orders, payments, stock_admin


def _exists(conn: Connection, query: str, **params: object) -> bool:
    return bool(conn.execute(sql("SELECT EXISTS (" + query + ")"), params).scalar())


def outbox_unpublished(conn: Connection, min_age_seconds: float) -> bool:
    """Rows the relay would lease now (`outbox.lease`'s filter, outbox.RELAYABLE)."""
    return _exists(conn, "SELECT 1 " + outbox.RELAYABLE, age=min_age_seconds)


def overdue_pending(conn: Connection, now: datetime | None = None) -> bool:
    """Pending orders or deposits past expires_at (the expiry sweep's `due_orders` and
    `due_deposits`: orders.DUE, payments.DUE_DEPOSITS), by this process' clock as theirs."""
    return _exists(conn, "SELECT 1 " + orders.DUE + " UNION ALL SELECT 1 "
                   + payments.DUE_DEPOSITS, now=now or datetime.now(UTC))


def audit_unshipped(conn: Connection) -> bool:
    """Captured changes waiting in audit_outbox (shipping empties it)."""
    return _exists(conn, "SELECT 1 FROM audit_outbox")


def sold_deltas(conn: Connection) -> bool:
    """Sale deltas not yet folded into products.sold_count (the roll-up empties the table)."""
    return _exists(conn, "SELECT 1 FROM sold_count_deltas")


def undelivered_paid(conn: Connection, grace_seconds: int) -> bool:
    """Paid orders the redelivery sweep would re-send (`delivery.undelivered_orders`'s filter,
    delivery.UNDELIVERED)."""
    return _exists(conn, "SELECT 1 " + delivery.UNDELIVERED, g=grace_seconds)


def reconcilable(conn: Connection, older_than_seconds: int) -> bool:
    """Pending rows reconciliation would look at: with a QR to ask the gateway about
    (`payments.pending_for_reconciliation`) or QRIS ones without one to restart
    (`payments.pending_without_qr`); payments.RECONCILABLE lists their filters."""
    return _exists(conn, " UNION ALL ".join("SELECT 1 " + rows for rows in payments.RECONCILABLE),
                   s=older_than_seconds)


def outbox_purgeable(conn: Connection, older_than_hours: int) -> bool:
    """Outbox rows `outbox.purge_published` would delete (outbox.PURGEABLE)."""
    return _exists(conn, "SELECT 1 " + outbox.PURGEABLE, h=older_than_hours)


def order_activity_since(conn: Connection, since: datetime) -> bool:
    """Any order the sales digest would read in a window starting at `since` (paid, created
    or expired since then; `digest.sales_between`'s filter, digest.ACTIVITY_SINCE)."""
    return _exists(conn, "SELECT 1 " + digest.ACTIVITY_SINCE, since=since)


def low_stock_changes(conn: Connection) -> bool:
    """Products whose low-stock alert `stock_admin.check_low_stock` would change (its levels and
    crossing test): low and not alerted yet, or alerted and back above the threshold."""
    return _exists(conn, "WITH " + stock_admin.LOW_STOCK_LEVELS + " SELECT 1 FROM levels l"
                   " WHERE (" + stock_admin.IS_LOW + ") <> EXISTS (SELECT 1 FROM"
                   " low_stock_alerts a WHERE a.product_id = l.id)", ids=None)


def orphaned_broadcasts(conn: Connection) -> bool:
    """Running broadcasts whose runner is gone (`broadcast.running`'s very filter)."""
    return _exists(conn, "SELECT 1 " + broadcast.ORPHANED)


def open_reviews(conn: Connection) -> bool:
    """Open risk reviews (a superset of those `review.remind` re-notifies: it also waits for
    the renotify setting, read by the task)."""
    return _exists(conn, "SELECT 1 FROM risk_reviews WHERE status = 'open'")
