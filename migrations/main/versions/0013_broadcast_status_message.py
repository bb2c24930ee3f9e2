"""Broadcasts: the admin's status message, edited in place from "⏳ Diproses…" through the
progress to the final report; and the execution that holds a broadcast's lease, so that two
deliveries of one slice message never send at the same time (docs/adr/0065).

Revision ID: 0013_broadcast_status_message
Revises: 0012_cart_checkout
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0013_broadcast_status_message"
down_revision = "0012_cart_checkout"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Additive and nullable: a broadcast without one (a giveaway, or one started before this
    # revision) gets a status message at its first progress step.
    op.execute("ALTER TABLE broadcasts ADD COLUMN IF NOT EXISTS status_message_id bigint")
    # NULL between two slices of a chain (the next may start at once); a slice's own id while
    # it sends (another execution waits for the lease to lapse).
    op.execute("ALTER TABLE broadcast_runners ADD COLUMN IF NOT EXISTS execution text")


def downgrade() -> None:
    op.execute("ALTER TABLE broadcast_runners DROP COLUMN IF EXISTS execution")
    op.execute("ALTER TABLE broadcasts DROP COLUMN IF EXISTS status_message_id")
