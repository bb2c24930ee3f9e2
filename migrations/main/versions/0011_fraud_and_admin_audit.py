"""Anti-fraud settings, risk assessments, the review queue and the admin action audit.

- `fraud_settings`: every threshold, score, band and the master switch, one row per setting
  (name, text value); the code's defaults (quickcart/services/fraud_settings.py) fill any row
  that is missing, and the upgrade writes them all so admins see and change real rows.
- `risk_assessments`: every evaluation where a rule fired (score > 0), at creation and at
  confirmation; a clean evaluation writes nothing (the purchase path stays one write lighter).
- `risk_reviews`: held orders and deposits (review or block after the money arrived), with
  the admins' decision. Its order/deposit keys are DEFERRABLE: a balance order is screened
  (and held) under the user lock before its row is inserted in the same transaction.
- `admin_actions`: one row per admin command (its request key makes a redelivered task one
  row) and per non-admin attempt; it is the journal the audit DB receives explicit events from
  (entity 'admin_action', keyed by the command's subject), not a business table, so it has no
  capture triggers.
- `users.reseller_since`: set by a trigger when a customer becomes a reseller (the
  role-escalation rule reads it under the user lock; the audit DB is never read on that path).
- Indexes for the rules: a user's paid orders and deposits by paid_at (partial, covering the
  amounts), so every rule is an index range scan whatever the size of the tables.
- Payment events into the audit trail: a trigger on payment_events records each webhook
  received (with its verification inputs, without the raw payload) and its processing outcome
  under entity 'payment_webhook' keyed by invoice, next to the refusals webhooks.py records.

Revision ID: 0011_fraud_and_admin_audit
Revises: 0010_catalog_admin
Create Date: 2026-12-06
"""

from __future__ import annotations

import json

from alembic import op

revision = "0011_fraud_and_admin_audit"
down_revision = "0010_catalog_admin"
branch_labels = None
depends_on = None

# The defaults as of this revision (the code keeps its own copy for missing rows).
DEFAULTS = {
    "enabled": "1",
    "velocity_count": "5", "velocity_window_minutes": "60", "velocity_score": "30",
    "velocity_action": "flag",
    "amount_limit": "5000000", "amount_window_hours": "24", "amount_score": "70",
    "amount_action": "block",
    "large_amount": "1000000", "large_score": "40", "large_action": "review",
    "structuring_below": "10000", "structuring_count": "10",
    "structuring_window_minutes": "60", "structuring_score": "60",
    "structuring_action": "review",
    "new_account_hours": "24", "new_account_amount": "500000", "new_account_score": "50",
    "new_account_action": "review",
    "escalation_score": "35", "escalation_action": "flag",
    "band_block": "80", "band_review": "50", "band_flag": "30",
    "renotify_minutes": "30",
}

_CAPTURE = """
CREATE TRIGGER audit_trigger_insert AFTER INSERT ON {t}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION audit_capture_insert();
CREATE TRIGGER audit_trigger_update AFTER UPDATE ON {t}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION audit_capture_update();
CREATE TRIGGER audit_trigger_delete AFTER DELETE ON {t}
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION audit_capture_delete();
"""

UPGRADE = """
CREATE TABLE fraud_settings (
    name        VARCHAR(50) PRIMARY KEY,
    value       TEXT        NOT NULL,
    updated_by  BIGINT      NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- The capture triggers key each audit record on a column named id.
    id          VARCHAR(50) GENERATED ALWAYS AS (name) STORED
);

CREATE TABLE risk_assessments (
    id          BIGSERIAL     PRIMARY KEY,
    user_id     BIGINT        NOT NULL REFERENCES users (id),
    -- Not "kind": the capture triggers' PL/pgSQL has a variable of that name.
    payment_kind VARCHAR(10)  NOT NULL CHECK (payment_kind IN ('order', 'deposit')),
    stage       VARCHAR(10)   NOT NULL CHECK (stage IN ('create', 'confirm')),
    order_id    INT           NULL REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,
    deposit_id  INT           NULL REFERENCES deposits (id) DEFERRABLE INITIALLY DEFERRED,
    amount      DECIMAL(15,2) NOT NULL,
    score       INT           NOT NULL CHECK (score BETWEEN 0 AND 100),
    rules       JSONB         NOT NULL,
    outcome     VARCHAR(10)   NOT NULL CHECK (outcome IN ('pass', 'flag', 'review', 'block')),
    created_at  TIMESTAMPTZ   NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_risk_assessments_user ON risk_assessments (user_id, created_at);
CREATE INDEX idx_risk_assessments_flagged ON risk_assessments (created_at)
    WHERE outcome = 'flag';

CREATE TABLE risk_reviews (
    id            SERIAL        PRIMARY KEY,
    assessment_id BIGINT        NOT NULL REFERENCES risk_assessments (id),
    user_id       BIGINT        NOT NULL REFERENCES users (id),
    payment_kind  VARCHAR(10)   NOT NULL CHECK (payment_kind IN ('order', 'deposit')),
    order_id      INT           NULL REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,
    deposit_id    INT           NULL REFERENCES deposits (id) DEFERRABLE INITIALLY DEFERRED,
    amount        DECIMAL(15,2) NOT NULL,
    score         INT           NOT NULL,
    rules         JSONB         NOT NULL,
    band          VARCHAR(10)   NOT NULL CHECK (band IN ('review', 'block')),
    status        VARCHAR(10)   NOT NULL DEFAULT 'open'
                  CHECK (status IN ('open', 'approved', 'refunded', 'kept')),
    reason        TEXT          NULL,
    decided_by    BIGINT        NULL,
    decided_at    TIMESTAMPTZ   NULL,
    notified_at   TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    created_at    TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    CONSTRAINT risk_reviews_one_subject CHECK ((order_id IS NULL) <> (deposit_id IS NULL)),
    CONSTRAINT risk_reviews_decided CHECK (status = 'open' OR decided_by IS NOT NULL)
);
CREATE UNIQUE INDEX uq_risk_reviews_order ON risk_reviews (order_id) WHERE order_id IS NOT NULL;
CREATE UNIQUE INDEX uq_risk_reviews_deposit ON risk_reviews (deposit_id)
    WHERE deposit_id IS NOT NULL;
CREATE INDEX idx_risk_reviews_queue ON risk_reviews (score DESC, created_at)
    WHERE status IN ('open', 'kept');

CREATE TABLE admin_actions (
    id           BIGSERIAL    PRIMARY KEY,
    request_key  VARCHAR(200) NOT NULL UNIQUE,
    actor_id     BIGINT       NOT NULL,
    command      VARCHAR(50)  NOT NULL,
    arguments    JSONB        NOT NULL DEFAULT '{}',
    target       VARCHAR(64)  NULL,
    outcome      VARCHAR(12)  NOT NULL
                 CHECK (outcome IN ('started', 'done', 'refused', 'failed', 'unauthorized')),
    detail       JSONB        NULL,
    alerted      BOOLEAN      NOT NULL DEFAULT false,
    created_at   TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    finished_at  TIMESTAMPTZ  NULL
);
CREATE INDEX idx_admin_actions_attempts ON admin_actions (actor_id, created_at)
    WHERE outcome = 'unauthorized';

-- The rules' reads: a user's paid payments in a window, amounts from the index alone.
CREATE INDEX idx_orders_user_paid ON orders (user_id, paid_at)
    INCLUDE (total_bill, payment_method) WHERE status = 'paid';
CREATE INDEX idx_deposits_user_paid ON deposits (user_id, paid_at)
    INCLUDE (amount) WHERE status = 'paid';

ALTER TABLE users ADD COLUMN reseller_since TIMESTAMPTZ NULL;
CREATE FUNCTION users_note_reseller_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.member_status = 'reseller' AND OLD.member_status = 'customer' THEN
        NEW.reseller_since := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER users_reseller_since BEFORE UPDATE OF member_status ON users
    FOR EACH ROW EXECUTE FUNCTION users_note_reseller_since();

-- Webhooks received and how each was settled, per invoice, in the audit trail.
CREATE FUNCTION audit_payment_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO audit_outbox (actor_id, actor_type, entity_type, entity_id, action,
                                  after_state, context)
        VALUES (NULL, 'system', 'payment_webhook', left(NEW.invoice_id, 50), 'webhook_received',
                jsonb_build_object('event_id', NEW.id, 'provider', NEW.provider,
                                   'status', NEW.status, 'amount', NEW.amount,
                                   'verified', 'project, invoice and amount match'),
                jsonb_build_object('ip', host(NEW.source_ip)));
    ELSIF NEW.outcome IS DISTINCT FROM OLD.outcome AND NEW.outcome IS NOT NULL THEN
        INSERT INTO audit_outbox (actor_id, actor_type, entity_type, entity_id, action,
                                  after_state, context)
        VALUES (NULL, 'system', 'payment_webhook', left(NEW.invoice_id, 50),
                CASE NEW.outcome WHEN 'paid' THEN 'payment_confirmed'
                                 WHEN 'held' THEN 'payment_confirmed_held'
                                 WHEN 'credited_late' THEN 'late_credit'
                                 WHEN 'not_paid' THEN 'webhook_unverified'
                                 ELSE 'webhook_' || left(NEW.outcome, 40) END,
                jsonb_build_object('event_id', NEW.id, 'outcome', NEW.outcome,
                                   'gateway_checked', true),
                NULL);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER payment_events_audit AFTER INSERT OR UPDATE OF outcome ON payment_events
    FOR EACH ROW EXECUTE FUNCTION audit_payment_event();
""" + _CAPTURE.format(t="fraud_settings") + _CAPTURE.format(t="risk_assessments") \
    + _CAPTURE.format(t="risk_reviews")

SEED = """
SELECT set_config('quickcart.actor_type', 'system', true),
       set_config('quickcart.audit_context', '{"reason": "migration 0011 defaults"}', true);
INSERT INTO fraud_settings (name, value)
SELECT key, value FROM jsonb_each_text(%(defaults)s::jsonb);
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS payment_events_audit ON payment_events;
DROP FUNCTION IF EXISTS audit_payment_event();
DROP TRIGGER IF EXISTS users_reseller_since ON users;
DROP FUNCTION IF EXISTS users_note_reseller_since();
ALTER TABLE users DROP COLUMN IF EXISTS reseller_since;
DROP INDEX IF EXISTS idx_orders_user_paid;
DROP INDEX IF EXISTS idx_deposits_user_paid;
DROP TABLE IF EXISTS admin_actions, risk_reviews, risk_assessments, fraud_settings;
"""


def upgrade() -> None:
    bind = op.get_bind()
    # Raw driver SQL: PL/pgSQL bodies hold colons that bind-parameter parsing would eat.
    bind.exec_driver_sql(UPGRADE, execution_options={"no_parameters": True})
    bind.exec_driver_sql(SEED, {"defaults": json.dumps(DEFAULTS)})


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE, execution_options={"no_parameters": True})
