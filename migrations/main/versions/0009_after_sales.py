"""After-sales: support tickets, deliveries re-sent, warranty claims, refunds.

Placeholder reserved for issue 22's schema (filled in by that work; a no-op until then),
so that parallel work keeps one linear chain of revisions.

Revision ID: 0009_after_sales
Revises: 0008_admin_grants
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "0009_after_sales"
down_revision = "0008_admin_grants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
