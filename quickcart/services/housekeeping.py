"""Cheap "is there anything to do?" checks for the periodic housekeeping tasks.

Beat asks these before sending a housekeeping task (workers.housekeeping), so an idle shop sends
(and logs, and shows in Flower) almost nothing. Each check is a single indexed `EXISTS` and must
be a superset of what its task would act on: a check that says "nothing" when its task would
have done something delays that work until the check says "yes", so each one repeats its task's
own filter, never a narrower one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from quickcart.db.sql import sql
from quickcart.services import broadcast


def _exists(conn: Connection, query: str, **params: object) -> bool:
    return bool(conn.execute(sql("SELECT EXISTS (" + query + ")"), params).scalar())


def outbox_unpublished(conn: Connection, min_age_seconds: float) -> bool:
    """Rows the relay would lease now (`outbox.lease`'s filter; idx_outbox_unpublished)."""
    return _exists(conn, "SELECT 1 FROM outbox WHERE published_at IS NULL"
                         " AND (leased_until IS NULL OR leased_until < now())"
                         " AND created_at <= now() - make_interval(secs => :age)",
                   age=min_age_seconds)


def overdue_pending(conn: Connection) -> bool:
    """Pending orders or deposits past expires_at (the expiry sweep's `due_orders` and
    `due_deposits`; both partial indexes on pending rows)."""
    return _exists(conn, "SELECT 1 FROM orders WHERE status = 'pending' AND expires_at <= now()"
                         " UNION ALL SELECT 1 FROM deposits WHERE status = 'pending'"
                         " AND expires_at <= now()")


def audit_unshipped(conn: Connection) -> bool:
    """Captured changes waiting in audit_outbox (shipping empties it)."""
    return _exists(conn, "SELECT 1 FROM audit_outbox")


def sold_deltas(conn: Connection) -> bool:
    """Sale deltas not yet folded into products.sold_count (the roll-up empties the table)."""
    return _exists(conn, "SELECT 1 FROM sold_count_deltas")


def undelivered_paid(conn: Connection, grace_seconds: int) -> bool:
    """Paid orders the redelivery sweep would re-send (`delivery.undelivered_orders`)."""
    return _exists(conn, "SELECT 1 FROM orders WHERE status = 'paid' AND delivered_at IS NULL"
                         " AND paid_at <= now() - make_interval(secs => :g)"
                         " AND (delivery_claimed_until IS NULL"
                         " OR delivery_claimed_until < now())", g=grace_seconds)


def reconcilable(conn: Connection, older_than_seconds: int) -> bool:
    """Pending rows reconciliation would look at: QRIS rows with a QR to ask the gateway about
    (`payments.pending_for_reconciliation`) or without one to restart
    (`payments.pending_without_qr`)."""
    return _exists(conn, "SELECT 1 FROM orders WHERE status = 'pending'"
                         " AND (payment_number IS NOT NULL OR payment_method = 'qris')"
                         " AND created_at <= now() - make_interval(secs => :s)"
                         " UNION ALL SELECT 1 FROM deposits WHERE status = 'pending'"
                         " AND created_at <= now() - make_interval(secs => :s)",
                   s=older_than_seconds)


def outbox_purgeable(conn: Connection, older_than_hours: int) -> bool:
    """Outbox rows `outbox.purge_published` would delete (idx_outbox_published_at)."""
    return _exists(conn, "SELECT 1 FROM outbox"
                         " WHERE published_at < now() - make_interval(hours => :h)",
                   h=older_than_hours)


def order_activity_since(conn: Connection, since: datetime) -> bool:
    """Any order the sales digest would count in a window starting at `since` (paid, created
    or expired since then; `digest.sales_between`'s filter)."""
    return _exists(conn, "SELECT 1 FROM orders WHERE paid_at >= :since"
                         " OR created_at >= :since"
                         " OR (status = 'expired' AND expires_at >= :since)", since=since)


def low_stock_changes(conn: Connection) -> bool:
    """Products whose low-stock alert would change (`stock_admin._LOW_STOCK`): free stock at or
    below the threshold and not alerted yet, or alerted and back above it."""
    return _exists(conn, "SELECT 1 FROM (SELECT p.low_stock_threshold AS threshold,"
                         " (SELECT count(*) FROM (SELECT 1 FROM product_stocks s"
                         "   WHERE s.product_id = p.id AND NOT s.is_sold AND s.order_id IS NULL"
                         "   LIMIT p.low_stock_threshold + 1) AS f) AS free,"
                         " EXISTS (SELECT 1 FROM low_stock_alerts a WHERE a.product_id = p.id)"
                         "   AS alerted"
                         " FROM products p WHERE p.is_active AND p.low_stock_threshold > 0) l"
                         " WHERE (l.free <= l.threshold) <> l.alerted")


def orphaned_broadcasts(conn: Connection) -> bool:
    """Running broadcasts whose runner is gone (`broadcast.running`'s very filter)."""
    return _exists(conn, "SELECT 1 " + broadcast.ORPHANED)


def open_reviews(conn: Connection) -> bool:
    """Open risk reviews (a superset of those `review.remind` re-notifies: it also waits for
    the renotify setting, read by the task)."""
    return _exists(conn, "SELECT 1 FROM risk_reviews WHERE status = 'open'")
