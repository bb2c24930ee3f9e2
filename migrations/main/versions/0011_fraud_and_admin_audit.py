"""Anti-fraud settings, risk assessments, the review queue and the admin action audit.

Placeholder reserved for issue 24's schema (filled in by that work; a no-op until then),
so that parallel work keeps one linear chain of revisions.

Revision ID: 0011_fraud_and_admin_audit
Revises: 0010_catalog_admin
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "0011_fraud_and_admin_audit"
down_revision = "0010_catalog_admin"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
