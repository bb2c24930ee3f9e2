"""Notices for admins who have not opened the bot yet, kept until they do.

Telegram refuses a message to a user who never started the bot ("chat not found"). An admin
named in ADMIN_IDS who has not sent /start yet would lose every notice (new orders, alerts,
digests). They are kept here, at most `KEEP_PER_CHAT` per admin, newest kept (see
quickcart/services/admin_inbox.py), and sent when that admin first contacts the bot.

Revision ID: 0007_admin_pending_notices
Revises: 0006_orders_born_paid
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0007_admin_pending_notices"
down_revision = "0006_orders_born_paid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE admin_pending_notices (
    id          BIGSERIAL    PRIMARY KEY,
    chat_id     BIGINT       NOT NULL,
    -- The failed send's once key: a redelivered send keeps the notice once.
    once_key    VARCHAR(255) UNIQUE,
    key         VARCHAR(100) NOT NULL,
    params      JSONB        NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_admin_pending_notices_chat ON admin_pending_notices (chat_id, id);
""")


def downgrade() -> None:
    op.execute("DROP TABLE admin_pending_notices")
