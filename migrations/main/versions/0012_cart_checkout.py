"""Checkout: what multi-product orders and the full bill need in the schema.

Placeholder reserved for issue 21's schema (filled in by that work; a no-op until then),
so that parallel work keeps one linear chain of revisions.

Revision ID: 0012_cart_checkout
Revises: 0011_fraud_and_admin_audit
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "0012_cart_checkout"
down_revision = "0011_fraud_and_admin_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
