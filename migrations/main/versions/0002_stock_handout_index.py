"""The hand-out index covers the hand-out query's whole ORDER BY (created_at, id).

`take_free_units` orders free units by `(created_at, id)` and takes the first few. The old index
stopped at `created_at`, and an import gives every unit of a file the same `created_at` (one
transaction), so PostgreSQL had to read and sort every free unit of the product to find the
lowest ids: with 200,000 keys in stock a purchase got ten times slower. With `id` in the index
the query reads just the rows it returns (plus any units other buyers hold).

Built CONCURRENTLY, so a live shop keeps selling while a large stock table is indexed.

Revision ID: 0002_stock_handout_index
Revises: 0001_seed_schema
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0002_stock_handout_index"
down_revision = "0001_seed_schema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS idx_product_stocks_handout")
        op.execute(
            "CREATE INDEX CONCURRENTLY idx_product_stocks_handout"
            " ON product_stocks (product_id, created_at, id)"
            " WHERE NOT is_sold AND order_id IS NULL")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS idx_product_stocks_available")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_product_stocks_available"
            " ON product_stocks (product_id, created_at) WHERE NOT is_sold AND order_id IS NULL")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS idx_product_stocks_handout")
