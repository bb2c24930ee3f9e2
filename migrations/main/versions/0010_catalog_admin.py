"""Catalog administration: discounts, voucher kinds, broadcasts, admin groups, low-stock alerts.

Placeholder reserved for issue 23's schema (filled in by that work; a no-op until then),
so that parallel work keeps one linear chain of revisions.

Revision ID: 0010_catalog_admin
Revises: 0009_after_sales
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "0010_catalog_admin"
down_revision = "0009_after_sales"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
