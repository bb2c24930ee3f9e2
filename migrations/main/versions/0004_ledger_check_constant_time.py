"""Balance = ledger, checked in constant time: each ledger row continues its user's chain.

The deferred check summed every ledger row of the user, twice per balance move (once for the
user row, once for the ledger row). A shopper's purchase therefore cost PostgreSQL more with
every purchase before it: measured with the raw purchase transaction on 8 shoppers, 3.0 ms of
PostgreSQL CPU per order at first, 5.1 ms after 400 more orders, 6.2 ms after 800. A reseller
with ten thousand purchases would read twenty thousand rows per purchase.

The same rule, by induction over the append-only ledger (rows ordered by id; balance moves hold
the user row lock from their UPDATE to their commit, so a user's rows are numbered in the order
they committed):
- a new ledger row must say the balance became what the row before it left plus its amount
  (0 before the first row), and
- the user's balance must be what the user's latest ledger row says.
Then every user's latest `balance_after` is the sum of the user's amounts, and so is the
balance. Both lookups are one step down `idx_balance_ledger_user_id (user_id, id)`.

Revision ID: 0004_ledger_check_constant_time
Revises: 0003_stock_autovacuum
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004_ledger_check_constant_time"
down_revision = "0003_stock_autovacuum"
branch_labels = None
depends_on = None

CHAIN_CHECK = """
CREATE OR REPLACE FUNCTION check_balance_matches_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target_id BIGINT;
    current_balance NUMERIC;
    last_after NUMERIC;
    before_row NUMERIC;
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        target_id := NEW.id;
    ELSE
        target_id := NEW.user_id;
        SELECT balance_after INTO before_row FROM balance_ledger
            WHERE user_id = target_id AND id < NEW.id ORDER BY id DESC LIMIT 1;
        IF NEW.balance_after IS DISTINCT FROM coalesce(before_row, 0) + NEW.amount THEN
            RAISE EXCEPTION 'ledger row % of user % left a balance of %, not % + %',
                NEW.id, target_id, NEW.balance_after, coalesce(before_row, 0), NEW.amount
                USING ERRCODE = 'check_violation', CONSTRAINT = 'users_balance_matches_ledger';
        END IF;
    END IF;
    SELECT account_balance INTO current_balance FROM users WHERE id = target_id;
    SELECT balance_after INTO last_after FROM balance_ledger
        WHERE user_id = target_id ORDER BY id DESC LIMIT 1;
    IF current_balance IS DISTINCT FROM coalesce(last_after, 0) THEN
        RAISE EXCEPTION 'balance of user % is % but its ledger ends at %',
            target_id, current_balance, coalesce(last_after, 0)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'users_balance_matches_ledger';
    END IF;
    RETURN NULL;
END $$;
"""

SUM_CHECK = """
CREATE OR REPLACE FUNCTION check_balance_matches_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target_id BIGINT;
    current_balance NUMERIC;
    ledger_sum NUMERIC;
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        target_id := NEW.id;
    ELSE
        target_id := NEW.user_id;
    END IF;
    SELECT account_balance INTO current_balance FROM users WHERE id = target_id;
    SELECT coalesce(sum(amount), 0) INTO ledger_sum FROM balance_ledger WHERE user_id = target_id;
    IF current_balance IS DISTINCT FROM ledger_sum THEN
        RAISE EXCEPTION 'balance of user % is % but its ledger sums to %',
            target_id, current_balance, ledger_sum
            USING ERRCODE = 'check_violation', CONSTRAINT = 'users_balance_matches_ledger';
    END IF;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.execute(CHAIN_CHECK)


def downgrade() -> None:
    op.execute(SUM_CHECK)
