"""An order paid from the balance (or owing nothing) may be created paid.

Such an order is settled in the transaction that creates it, so there was never a committed
moment in which it was pending. Writing it pending and then settling it made a second version
of the order row (a non-HOT update: status and paid_at are indexed, so every one of its ten
indexes took an entry), ran its row triggers and deferred total check again, and left one more
audit record that said nothing the first did not. The same held for each unit, reserved by one
UPDATE and sold by the next.

The state machine is otherwise unchanged: a row starts pending, except an order that is born
paid with its paid_at set and nothing owed to the gateway (`account_balance`, or a total of 0);
QRIS orders and deposits still start pending and settle only from pending.

Revision ID: 0006_orders_born_paid
Revises: 0005_audit_capture_once
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006_orders_born_paid"
down_revision = "0005_audit_capture_once"
branch_labels = None
depends_on = None

_UPDATE_RULES = """
    IF NEW.status IS DISTINCT FROM OLD.status
       AND NOT (OLD.status = 'pending' AND NEW.status IN ('paid', 'expired', 'cancelled')) THEN
        RAISE EXCEPTION 'illegal status change of % %: % -> %', TG_TABLE_NAME, OLD.invoice_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = TG_TABLE_NAME || '_status_transition';
    END IF;
    IF OLD.status <> 'pending' AND NEW.total_bill IS DISTINCT FROM OLD.total_bill THEN
        RAISE EXCEPTION 'the bill of settled % % cannot change', TG_TABLE_NAME, OLD.invoice_id
            USING ERRCODE = 'check_violation', CONSTRAINT = TG_TABLE_NAME || '_status_transition';
    END IF;
    RETURN NEW;
END $$;
"""

_REFUSE_START = """
        RAISE EXCEPTION '% % must start as pending, not %', TG_TABLE_NAME, NEW.invoice_id, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = TG_TABLE_NAME || '_status_transition';
"""

UPGRADE = """
CREATE OR REPLACE FUNCTION enforce_status_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status = 'pending' THEN
            RETURN NEW;
        END IF;
        -- Nested, not ANDed: deposits have no payment_method, and plpgsql does not promise
        -- to evaluate an AND's left side first.
        IF TG_TABLE_NAME = 'orders' AND NEW.status = 'paid' THEN
            IF NEW.paid_at IS NOT NULL
               AND (NEW.payment_method = 'account_balance' OR NEW.total_bill = 0) THEN
                RETURN NEW;
            END IF;
        END IF;""" + _REFUSE_START + """    END IF;""" + _UPDATE_RULES

DOWNGRADE = """
CREATE OR REPLACE FUNCTION enforce_status_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' THEN""" + _REFUSE_START + """        END IF;
        RETURN NEW;
    END IF;""" + _UPDATE_RULES


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
