"""After-sales: support tickets, deliveries re-sent, warranty claims, refunds.

The data contract's tables keep every column; one column is added (order_items.warranty_claims,
the claim count of an order line) and the rest are tables of their own:

- support_tickets / support_messages: a shopper's message to the admins (text, at most one
  image as a Telegram file id) and the admins' answers; state open / answered / closed.
- support_relays: where each copy of a ticket message landed (chat, message id), so a
  Telegram reply to it finds its ticket. Routing data, not a business record: not audited.
- order_actions: an admin's re-send of a delivery or re-check of a payment, recorded once per
  button press (its idempotency key).
- warranty_claims: a delivered unit reported dead. A replaced unit stays sold on its order
  (never free again, so never sold twice); the order line points at the replacement, and the
  claim names both units.
- order_refunds: an admin's refund proposal, then (after the confirm button) its payment as a
  ledger credit with reason 'refund'. The sum paid per order is capped by what the buyer paid
  for the goods (subtotal - voucher discount), checked under the order's lock.
- refund_formula: the calculator's multipliers and period (one row; absent = the specified
  defaults), changed by /setformula.

Business tables get the audit capture triggers (as 0008 does); the actor is the admin (or the
shopper) the unit of work names.

Revision ID: 0009_after_sales
Revises: 0008_admin_grants
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0009_after_sales"
down_revision = "0008_admin_grants"
branch_labels = None
depends_on = None

AUDITED = ("support_tickets", "support_messages", "order_actions", "warranty_claims",
           "order_refunds", "refund_formula")

UPGRADE = """
ALTER TABLE order_items ADD COLUMN warranty_claims INT NOT NULL DEFAULT 0
    CONSTRAINT order_items_warranty_claims_non_negative CHECK (warranty_claims >= 0);

CREATE TABLE support_tickets (
    id          BIGSERIAL    PRIMARY KEY,
    user_id     BIGINT       NOT NULL REFERENCES users (id),
    order_id    INT          REFERENCES orders (id),
    status      VARCHAR(10)  NOT NULL DEFAULT 'open',
    closed_by   BIGINT,
    closed_at   TIMESTAMPTZ,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    updated_at  TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    CONSTRAINT support_tickets_status_check CHECK (status IN ('open', 'answered', 'closed')),
    CONSTRAINT support_tickets_closed_complete CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
CREATE INDEX idx_support_tickets_user_id ON support_tickets (user_id, id);
CREATE INDEX idx_support_tickets_order_id ON support_tickets (order_id) WHERE order_id IS NOT NULL;
CREATE TRIGGER update_timestamp BEFORE UPDATE ON support_tickets
    FOR EACH ROW EXECUTE FUNCTION update_timestamp();

CREATE TABLE support_messages (
    id              BIGSERIAL    PRIMARY KEY,
    ticket_id       BIGINT       NOT NULL REFERENCES support_tickets (id),
    direction       VARCHAR(10)  NOT NULL,
    author_id       BIGINT       NOT NULL,
    body            TEXT         NOT NULL DEFAULT '',
    photo_file_id   TEXT,
    idempotency_key VARCHAR(200) NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    CONSTRAINT support_messages_direction_check CHECK (direction IN ('shopper', 'admin')),
    CONSTRAINT support_messages_not_empty CHECK (length(btrim(body)) > 0 OR photo_file_id IS NOT NULL)
);
CREATE INDEX idx_support_messages_ticket_id ON support_messages (ticket_id, id);
-- The shopper's rate limit counts their messages of the last minutes.
CREATE INDEX idx_support_messages_author_recent ON support_messages (author_id, created_at)
    WHERE direction = 'shopper';

CREATE TABLE support_relays (
    chat_id     BIGINT      NOT NULL,
    message_id  BIGINT      NOT NULL,
    ticket_id   BIGINT      NOT NULL REFERENCES support_tickets (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (chat_id, message_id)
);

CREATE TABLE order_actions (
    id              BIGSERIAL    PRIMARY KEY,
    order_id        INT          NOT NULL REFERENCES orders (id),
    -- not "kind": the audit capture triggers have a PL/pgSQL variable of that name
    action          VARCHAR(20)  NOT NULL,
    actor_id        BIGINT       NOT NULL,
    outcome         VARCHAR(40),
    idempotency_key VARCHAR(200) NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    CONSTRAINT order_actions_action_check CHECK (action IN ('resend', 'recheck'))
);
CREATE INDEX idx_order_actions_order_id ON order_actions (order_id, id);

CREATE TABLE warranty_claims (
    id              BIGSERIAL    PRIMARY KEY,
    order_id        INT          NOT NULL REFERENCES orders (id),
    order_item_id   INT          NOT NULL REFERENCES order_items (id),
    old_stock_id    UUID         NOT NULL REFERENCES product_stocks (id),
    new_stock_id    UUID         REFERENCES product_stocks (id),
    status          VARCHAR(10)  NOT NULL DEFAULT 'open',
    ticket_id       BIGINT       REFERENCES support_tickets (id),
    created_by      BIGINT       NOT NULL,
    resolved_by     BIGINT,
    created_at      TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    resolved_at     TIMESTAMPTZ,
    CONSTRAINT warranty_claims_status_check CHECK (status IN ('open', 'replaced', 'refunded')),
    CONSTRAINT warranty_claims_replaced_complete
        CHECK ((status = 'replaced') = (new_stock_id IS NOT NULL)),
    CONSTRAINT warranty_claims_new_unit_differs CHECK (new_stock_id IS DISTINCT FROM old_stock_id)
);
CREATE INDEX idx_warranty_claims_order_id ON warranty_claims (order_id, id);
-- A unit is replaced at most once, a replacement replaces one unit, and a unit has at most
-- one open claim.
CREATE UNIQUE INDEX uq_warranty_claims_replaced_unit ON warranty_claims (old_stock_id)
    WHERE status = 'replaced';
CREATE UNIQUE INDEX uq_warranty_claims_new_unit ON warranty_claims (new_stock_id)
    WHERE new_stock_id IS NOT NULL;
CREATE UNIQUE INDEX uq_warranty_claims_open_unit ON warranty_claims (old_stock_id)
    WHERE status = 'open';

CREATE TABLE order_refunds (
    id           BIGSERIAL     PRIMARY KEY,
    order_id     INT           NOT NULL REFERENCES orders (id),
    user_id      BIGINT        NOT NULL REFERENCES users (id),
    amount       DECIMAL(15,2) NOT NULL,
    status       VARCHAR(10)   NOT NULL DEFAULT 'proposed',
    note         TEXT,
    proposed_by  BIGINT        NOT NULL,
    decided_by   BIGINT,
    created_at   TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    decided_at   TIMESTAMPTZ,
    CONSTRAINT order_refunds_amount_positive CHECK (amount > 0 AND amount = trunc(amount)),
    CONSTRAINT order_refunds_status_check CHECK (status IN ('proposed', 'paid', 'cancelled')),
    CONSTRAINT order_refunds_decided_complete
        CHECK ((status = 'proposed') = (decided_at IS NULL))
);
CREATE INDEX idx_order_refunds_order_id ON order_refunds (order_id, id);

CREATE TABLE refund_formula (
    id              INT          PRIMARY KEY DEFAULT 1,
    period_days     INT          NOT NULL DEFAULT 30,
    early           NUMERIC(4,3) NOT NULL DEFAULT 0.8,
    late            NUMERIC(4,3) NOT NULL DEFAULT 0.7,
    claims_1_2      NUMERIC(4,3) NOT NULL DEFAULT 0.6,
    claims_3        NUMERIC(4,3) NOT NULL DEFAULT 0.5,
    claims_more     NUMERIC(4,3) NOT NULL DEFAULT 0.4,
    updated_by      BIGINT,
    updated_at      TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    CONSTRAINT refund_formula_one_row CHECK (id = 1),
    CONSTRAINT refund_formula_period CHECK (period_days >= 1),
    CONSTRAINT refund_formula_multipliers CHECK (
        early > 0 AND early <= 1 AND late > 0 AND late <= 1 AND claims_1_2 > 0
        AND claims_1_2 <= 1 AND claims_3 > 0 AND claims_3 <= 1 AND claims_more > 0
        AND claims_more <= 1)
);
"""


def _audit_triggers() -> str:
    return "".join(
        f"CREATE TRIGGER audit_trigger_insert AFTER INSERT ON {table}"
        f" REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
        f" EXECUTE FUNCTION audit_capture_insert();\n"
        f"CREATE TRIGGER audit_trigger_update AFTER UPDATE ON {table}"
        f" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
        f" EXECUTE FUNCTION audit_capture_update();\n"
        f"CREATE TRIGGER audit_trigger_delete AFTER DELETE ON {table}"
        f" REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
        f" EXECUTE FUNCTION audit_capture_delete();\n"
        for table in AUDITED)


DOWNGRADE = """
DROP TABLE IF EXISTS refund_formula, order_refunds, warranty_claims, order_actions,
    support_relays, support_messages, support_tickets;
ALTER TABLE order_items DROP COLUMN IF EXISTS warranty_claims;
"""


def _run(sql: str) -> None:
    # Raw driver SQL: no bind-parameter parsing of the DDL.
    op.get_bind().exec_driver_sql(sql, execution_options={"no_parameters": True})


def upgrade() -> None:
    _run(UPGRADE)
    _run(_audit_triggers())


def downgrade() -> None:
    _run(DOWNGRADE)
