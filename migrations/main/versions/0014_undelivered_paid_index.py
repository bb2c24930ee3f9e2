"""Paid orders not yet delivered: a small partial index for the redelivery sweep and beat's
check of it (delivery.UNDELIVERED), which otherwise scan every order, since nearly all orders are
paid and idx_orders_status cannot narrow them.

Revision ID: 0014_undelivered_paid_index
Revises: 0013_broadcast_status_message
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0014_undelivered_paid_index"
down_revision = "0013_broadcast_status_message"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Holds only the few orders between payment and delivery, so it stays tiny; ordered by
    # paid_at as the sweep reads them (oldest first).
    op.execute("CREATE INDEX IF NOT EXISTS idx_orders_paid_undelivered ON orders (paid_at)"
               " WHERE status = 'paid' AND delivered_at IS NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS idx_orders_paid_undelivered")
