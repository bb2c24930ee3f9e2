"""Main database: the seed schema (06-data-schema.md) plus the tables and rules it implies.

Every business rule the seed states is enforced by PostgreSQL itself (constraints, partial unique
indexes, triggers), so no code path — ours, an admin's psql session, a future service — can break
it. The reasons for each addition are in docs/adr/0001 and 0002.

Revision ID: 0001_seed_schema
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0001_seed_schema"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
-- ---------------------------------------------------------------- shared trigger functions
CREATE FUNCTION update_timestamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- ---------------------------------------------------------------- users
CREATE TABLE users (
    id               BIGINT        PRIMARY KEY,
    name             VARCHAR(255)  NOT NULL,
    username         VARCHAR(255)  UNIQUE,
    email            VARCHAR(255)  UNIQUE,
    whatsapp_number  VARCHAR(20),
    member_status    VARCHAR(10)   NOT NULL DEFAULT 'customer',
    bank_id          VARCHAR(10)   NOT NULL UNIQUE,
    account_balance  DECIMAL(15,2) NOT NULL DEFAULT 0.00,
    is_banned        BOOLEAN       NOT NULL DEFAULT false,
    language         VARCHAR(5)    NOT NULL DEFAULT 'id',
    erased_at        TIMESTAMPTZ,
    created_at       TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    updated_at       TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    CONSTRAINT users_member_status_check CHECK (member_status IN ('customer', 'reseller', 'admin')),
    CONSTRAINT users_bank_id_format CHECK (bank_id ~ '^[0-9]{6}$'),
    CONSTRAINT users_balance_non_negative CHECK (account_balance >= 0),
    CONSTRAINT users_balance_whole_rupiah CHECK (account_balance = trunc(account_balance)),
    CONSTRAINT users_language_check CHECK (language IN ('id', 'en'))
);
CREATE INDEX idx_users_member_status ON users (member_status);
CREATE INDEX idx_users_bank_id ON users (bank_id);
CREATE INDEX idx_users_email ON users (email) WHERE email IS NOT NULL;

-- ---------------------------------------------------------------- products
CREATE TABLE products (
    id              INT           PRIMARY KEY,
    name            VARCHAR(255)  NOT NULL,
    description     TEXT,
    category        VARCHAR(255)  NOT NULL DEFAULT 'Uncategorized',
    customer_price  DECIMAL(15,2) NOT NULL,
    reseller_price  DECIMAL(15,2),
    sold_count      INT           NOT NULL DEFAULT 0,
    is_active       BOOLEAN       NOT NULL DEFAULT true,
    created_at      TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    updated_at      TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    CONSTRAINT products_id_positive CHECK (id > 0),
    CONSTRAINT products_customer_price_positive
        CHECK (customer_price > 0 AND customer_price = trunc(customer_price)),
    CONSTRAINT products_reseller_price_positive
        CHECK (reseller_price IS NULL OR (reseller_price > 0 AND reseller_price = trunc(reseller_price))),
    CONSTRAINT products_sold_count_non_negative CHECK (sold_count >= 0)
);
CREATE INDEX idx_products_category ON products (category);
CREATE INDEX idx_products_is_active ON products (is_active);
CREATE INDEX idx_products_sold_count ON products (sold_count DESC);

-- ---------------------------------------------------------------- orders
CREATE TABLE orders (
    id                SERIAL        PRIMARY KEY,
    invoice_id        VARCHAR(20)   NOT NULL UNIQUE,
    user_id           BIGINT        NOT NULL REFERENCES users (id),
    subtotal          DECIMAL(15,2) NOT NULL,
    voucher_discount  DECIMAL(15,2) NOT NULL DEFAULT 0.00,
    payment_fee       DECIMAL(15,2) NOT NULL DEFAULT 0.00,
    total_bill        DECIMAL(15,2) NOT NULL,
    payment_method    VARCHAR(20)   NOT NULL,
    status            VARCHAR(10)   NOT NULL DEFAULT 'pending',
    expires_at        TIMESTAMPTZ   NOT NULL DEFAULT NOW() + INTERVAL '10 minutes',
    paid_at           TIMESTAMPTZ,
    fee_estimate      DECIMAL(15,2),
    payment_number    TEXT,
    amount_paid       DECIMAL(15,2),
    delivered_at      TIMESTAMPTZ,
    delivery_count    INT           NOT NULL DEFAULT 0,
    delivery_claimed_until TIMESTAMPTZ,
    delivery_claimed_by VARCHAR(64),
    qr_message_id     BIGINT,
    created_at        TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    updated_at        TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    CONSTRAINT orders_status_check CHECK (status IN ('pending', 'paid', 'expired', 'cancelled')),
    CONSTRAINT orders_payment_method_check CHECK (payment_method IN ('qris', 'account_balance')),
    CONSTRAINT orders_subtotal_positive CHECK (subtotal > 0 AND subtotal = trunc(subtotal)),
    CONSTRAINT orders_discount_within_subtotal
        CHECK (voucher_discount >= 0 AND voucher_discount <= subtotal
               AND voucher_discount = trunc(voucher_discount)),
    CONSTRAINT orders_fee_non_negative CHECK (payment_fee >= 0 AND payment_fee = trunc(payment_fee)),
    CONSTRAINT orders_total_bill_matches
        CHECK (total_bill = subtotal - voucher_discount + payment_fee),
    CONSTRAINT orders_balance_has_no_fee CHECK (payment_method = 'qris' OR payment_fee = 0),
    CONSTRAINT orders_paid_has_paid_at CHECK (status <> 'paid' OR paid_at IS NOT NULL),
    CONSTRAINT orders_delivery_count_non_negative CHECK (delivery_count >= 0)
);
CREATE INDEX idx_orders_invoice_id ON orders (invoice_id);
CREATE INDEX idx_orders_user_id ON orders (user_id);
CREATE INDEX idx_orders_status ON orders (status);
CREATE INDEX idx_orders_created_at ON orders (created_at DESC);
-- CR-002 without the race of the seed's COUNT query: the index itself refuses a second pending.
CREATE UNIQUE INDEX uq_orders_one_pending_per_user ON orders (user_id) WHERE status = 'pending';
CREATE INDEX idx_orders_pending_expires_at ON orders (expires_at) WHERE status = 'pending';
-- the admins' sales digest reads windows of paid and expired orders
CREATE INDEX idx_orders_paid_at ON orders (paid_at) WHERE paid_at IS NOT NULL;
CREATE INDEX idx_orders_expired_expires_at ON orders (expires_at) WHERE status = 'expired';

-- ---------------------------------------------------------------- product_stocks
CREATE TABLE product_stocks (
    id          UUID        PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id  INT         NOT NULL REFERENCES products (id),
    content     TEXT        NOT NULL,
    order_id    INT         REFERENCES orders (id),
    is_sold     BOOLEAN     NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT product_stocks_content_not_blank CHECK (length(btrim(content)) > 0),
    CONSTRAINT product_stocks_sold_has_order CHECK (NOT is_sold OR order_id IS NOT NULL),
    -- Target of order_items' composite key: an item's unit must be reserved for that item's order.
    CONSTRAINT uq_product_stocks_assignment UNIQUE (id, product_id, order_id)
);
CREATE INDEX idx_product_stocks_product_id ON product_stocks (product_id);
CREATE INDEX idx_product_stocks_is_sold ON product_stocks (is_sold);
CREATE INDEX idx_product_stocks_order_id ON product_stocks (order_id);
-- The hand-out query (FOR UPDATE SKIP LOCKED) walks only free units of one product.
CREATE INDEX idx_product_stocks_available ON product_stocks (product_id, created_at)
    WHERE NOT is_sold AND order_id IS NULL;

-- ---------------------------------------------------------------- order_items
CREATE TABLE order_items (
    id              SERIAL        PRIMARY KEY,
    order_id        INT           NOT NULL REFERENCES orders (id),
    product_id      INT           NOT NULL REFERENCES products (id),
    stock_id        UUID          NOT NULL REFERENCES product_stocks (id),
    price_per_unit  DECIMAL(15,2) NOT NULL,
    CONSTRAINT order_items_price_positive CHECK (price_per_unit > 0 AND price_per_unit = trunc(price_per_unit)),
    CONSTRAINT fk_order_items_stock_assignment FOREIGN KEY (stock_id, product_id, order_id)
        REFERENCES product_stocks (id, product_id, order_id)
);
CREATE INDEX idx_order_items_order_id ON order_items (order_id);
-- Unique: one stock unit is in at most one order item, hence at most one order.
CREATE UNIQUE INDEX idx_order_items_stock_id ON order_items (stock_id);

-- Items of expired/cancelled orders move here so their units can be sold again while the
-- order keeps its history (and its subtotal still equals the sum of its items).
CREATE TABLE released_order_items (
    id              INT           PRIMARY KEY,
    order_id        INT           NOT NULL REFERENCES orders (id),
    product_id      INT           NOT NULL REFERENCES products (id),
    stock_id        UUID          NOT NULL REFERENCES product_stocks (id),
    price_per_unit  DECIMAL(15,2) NOT NULL,
    released_at     TIMESTAMPTZ   NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_released_order_items_order_id ON released_order_items (order_id);

-- ---------------------------------------------------------------- vouchers
CREATE TABLE vouchers (
    id          SERIAL        PRIMARY KEY,
    code        VARCHAR(20)   NOT NULL UNIQUE,
    amount      DECIMAL(15,2) NOT NULL,
    created_by  BIGINT        NOT NULL REFERENCES users (id),
    is_used     BOOLEAN       NOT NULL DEFAULT false,
    used_by     BIGINT        REFERENCES users (id),
    used_at     TIMESTAMPTZ,
    order_id    INT           REFERENCES orders (id),
    expires_at  TIMESTAMPTZ   NOT NULL,
    created_at  TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    CONSTRAINT vouchers_amount_range
        CHECK (amount BETWEEN 1000 AND 1000000 AND amount = trunc(amount)),
    CONSTRAINT vouchers_code_format CHECK (code ~ '^[A-Z0-9]{4,20}$'),
    CONSTRAINT vouchers_used_is_complete
        CHECK (NOT is_used OR (used_by IS NOT NULL AND used_at IS NOT NULL AND order_id IS NOT NULL))
);
CREATE INDEX idx_vouchers_code ON vouchers (code);
CREATE INDEX idx_vouchers_used_by ON vouchers (used_by);
CREATE INDEX idx_vouchers_is_used ON vouchers (is_used);
CREATE INDEX idx_vouchers_expires_at ON vouchers (expires_at);
-- One code per order: a voucher held by (or used on) an order is that order's only voucher.
CREATE UNIQUE INDEX uq_vouchers_order_id ON vouchers (order_id) WHERE order_id IS NOT NULL;

-- ---------------------------------------------------------------- voucher_usage_cooldown
CREATE TABLE voucher_usage_cooldown (
    id                 SERIAL      PRIMARY KEY,
    user_id            BIGINT      NOT NULL REFERENCES users (id),
    last_voucher_used  TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    CONSTRAINT voucher_cooldown_expires_after_use CHECK (expires_at > last_voucher_used)
);
CREATE INDEX idx_voucher_cooldown_user_id ON voucher_usage_cooldown (user_id);
CREATE INDEX idx_voucher_cooldown_expires_at ON voucher_usage_cooldown (expires_at);

-- ---------------------------------------------------------------- deposits (QRIS top-ups)
CREATE TABLE deposits (
    id              SERIAL        PRIMARY KEY,
    invoice_id      VARCHAR(20)   NOT NULL UNIQUE,
    user_id         BIGINT        NOT NULL REFERENCES users (id),
    amount          DECIMAL(15,2) NOT NULL,
    payment_fee     DECIMAL(15,2) NOT NULL DEFAULT 0.00,
    total_bill      DECIMAL(15,2) NOT NULL,
    status          VARCHAR(10)   NOT NULL DEFAULT 'pending',
    expires_at      TIMESTAMPTZ   NOT NULL DEFAULT NOW() + INTERVAL '10 minutes',
    paid_at         TIMESTAMPTZ,
    fee_estimate    DECIMAL(15,2),
    payment_number  TEXT,
    amount_paid     DECIMAL(15,2),
    qr_message_id   BIGINT,
    created_at      TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    updated_at      TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    CONSTRAINT deposits_status_check CHECK (status IN ('pending', 'paid', 'expired', 'cancelled')),
    CONSTRAINT deposits_amount_positive CHECK (amount > 0 AND amount = trunc(amount)),
    CONSTRAINT deposits_fee_non_negative CHECK (payment_fee >= 0 AND payment_fee = trunc(payment_fee)),
    CONSTRAINT deposits_total_bill_matches CHECK (total_bill = amount + payment_fee),
    CONSTRAINT deposits_paid_has_paid_at CHECK (status <> 'paid' OR paid_at IS NOT NULL)
);
CREATE INDEX idx_deposits_user_id ON deposits (user_id);
CREATE INDEX idx_deposits_status ON deposits (status);
CREATE INDEX idx_deposits_created_at ON deposits (created_at DESC);
CREATE UNIQUE INDEX uq_deposits_one_pending_per_user ON deposits (user_id) WHERE status = 'pending';
CREATE INDEX idx_deposits_pending_expires_at ON deposits (expires_at) WHERE status = 'pending';

-- ---------------------------------------------------------------- balance_ledger
CREATE TABLE balance_ledger (
    id              BIGSERIAL     PRIMARY KEY,
    user_id         BIGINT        NOT NULL REFERENCES users (id),
    amount          DECIMAL(15,2) NOT NULL,
    balance_after   DECIMAL(15,2) NOT NULL,
    reason          VARCHAR(30)   NOT NULL,
    reference_type  VARCHAR(20),
    reference_id    VARCHAR(64),
    actor_id        BIGINT,
    note            TEXT,
    created_at      TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    CONSTRAINT balance_ledger_amount_nonzero CHECK (amount <> 0 AND amount = trunc(amount)),
    CONSTRAINT balance_ledger_balance_after_non_negative CHECK (balance_after >= 0),
    CONSTRAINT balance_ledger_reason_check CHECK (reason IN (
        'deposit', 'purchase', 'admin_credit', 'admin_debit', 'late_payment', 'refund'))
);
CREATE INDEX idx_balance_ledger_user_id ON balance_ledger (user_id, id);
-- A deposit, order or admin request moves a balance at most once, whatever retries happen.
CREATE UNIQUE INDEX uq_balance_ledger_reference ON balance_ledger (reason, reference_type, reference_id)
    WHERE reference_id IS NOT NULL;

-- ---------------------------------------------------------------- sold_count without a hot row
-- Each sale appends a delta; a beat job folds them into products.sold_count. Concurrent buyers
-- of one product never queue on its row (docs/adr/0012).
CREATE TABLE sold_count_deltas (
    id          BIGSERIAL   PRIMARY KEY,
    product_id  INT         NOT NULL REFERENCES products (id),
    quantity    INT         NOT NULL,
    order_id    INT         REFERENCES orders (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT sold_count_deltas_quantity_nonzero CHECK (quantity <> 0)
);

-- ---------------------------------------------------------------- idempotency, outbox, inbox
CREATE TABLE idempotency_keys (
    key         VARCHAR(200) PRIMARY KEY,
    scope       VARCHAR(50)  NOT NULL,
    result      JSONB,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_idempotency_keys_created_at ON idempotency_keys (created_at);

CREATE TABLE outbox (
    id            BIGSERIAL    PRIMARY KEY,
    topic         VARCHAR(100) NOT NULL,
    queue         VARCHAR(30)  NOT NULL DEFAULT 'default',
    payload       JSONB        NOT NULL,
    created_at    TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    published_at  TIMESTAMPTZ,
    attempts      INT          NOT NULL DEFAULT 0,
    -- A relay leases rows before publishing, so no row lock is held across the broker call.
    leased_until  TIMESTAMPTZ,
    -- The intent this side effect belongs to, so its logs can be followed end to end.
    correlation_id VARCHAR(64)
);
CREATE INDEX idx_outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX idx_outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE payment_events (
    id            BIGSERIAL     PRIMARY KEY,
    provider      VARCHAR(20)   NOT NULL DEFAULT 'pakasir',
    dedup_key     VARCHAR(200)  NOT NULL UNIQUE,
    invoice_id    VARCHAR(64)   NOT NULL,
    amount        DECIMAL(15,2),
    status        VARCHAR(20)   NOT NULL,
    payload       JSONB         NOT NULL,
    source_ip     INET,
    received_at   TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    processed_at  TIMESTAMPTZ,
    outcome       VARCHAR(40)
);
CREATE INDEX idx_payment_events_invoice_id ON payment_events (invoice_id);
CREATE INDEX idx_payment_events_unprocessed ON payment_events (id) WHERE processed_at IS NULL;

CREATE TABLE audit_outbox (
    id            BIGSERIAL   PRIMARY KEY,
    occurred_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    actor_id      BIGINT,
    actor_type    VARCHAR(20) NOT NULL DEFAULT 'system',
    entity_type   VARCHAR(50) NOT NULL,
    entity_id     VARCHAR(50) NOT NULL,
    action        VARCHAR(50) NOT NULL,
    before_state  JSONB,
    after_state   JSONB,
    context       JSONB
);

-- ---------------------------------------------------------------- rule: updated_at
CREATE TRIGGER update_timestamp BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION update_timestamp();
CREATE TRIGGER update_timestamp BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION update_timestamp();
CREATE TRIGGER update_timestamp BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION update_timestamp();
CREATE TRIGGER update_timestamp BEFORE UPDATE ON product_stocks
    FOR EACH ROW EXECUTE FUNCTION update_timestamp();
CREATE TRIGGER update_timestamp BEFORE UPDATE ON deposits
    FOR EACH ROW EXECUTE FUNCTION update_timestamp();

-- ---------------------------------------------------------------- rule: status state machine
-- pending -> paid | expired | cancelled; nothing else, and money is frozen once settled.
CREATE FUNCTION enforce_status_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' THEN
            RAISE EXCEPTION '% % must start as pending, not %', TG_TABLE_NAME, NEW.invoice_id, NEW.status
                USING ERRCODE = 'check_violation', CONSTRAINT = TG_TABLE_NAME || '_status_transition';
        END IF;
        RETURN NEW;
    END IF;
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
CREATE TRIGGER orders_status_transition BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION enforce_status_transition();
CREATE TRIGGER deposits_status_transition BEFORE INSERT OR UPDATE ON deposits
    FOR EACH ROW EXECUTE FUNCTION enforce_status_transition();

-- ---------------------------------------------------------------- rule: order totals at commit
CREATE FUNCTION check_order_totals() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target_id INT;
    order_subtotal NUMERIC;
    items_sum NUMERIC;
BEGIN
    IF TG_TABLE_NAME = 'orders' THEN
        target_id := NEW.id;
    ELSIF TG_OP = 'DELETE' THEN
        target_id := OLD.order_id;
    ELSE
        target_id := NEW.order_id;
    END IF;
    SELECT subtotal INTO order_subtotal FROM orders WHERE id = target_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(price_per_unit), 0) INTO items_sum FROM (
        SELECT price_per_unit FROM order_items WHERE order_id = target_id
        UNION ALL
        SELECT price_per_unit FROM released_order_items WHERE order_id = target_id) AS all_items;
    IF order_subtotal <> items_sum THEN
        RAISE EXCEPTION 'order % subtotal % does not equal the sum of its items %',
            target_id, order_subtotal, items_sum
            USING ERRCODE = 'check_violation', CONSTRAINT = 'orders_subtotal_matches_items';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER orders_subtotal_matches_items
    AFTER INSERT OR UPDATE OF subtotal ON orders DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_order_totals();
CREATE CONSTRAINT TRIGGER order_items_match_subtotal
    AFTER INSERT OR UPDATE OR DELETE ON order_items DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_order_totals();
CREATE CONSTRAINT TRIGGER released_order_items_match_subtotal
    AFTER INSERT OR UPDATE OR DELETE ON released_order_items DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_order_totals();

-- ---------------------------------------------------------------- rule: balance = ledger sum
-- balance_after is read from the users row, so a service moves the balance first, then ledgers.
CREATE FUNCTION ledger_fill_balance_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT account_balance INTO NEW.balance_after FROM users WHERE id = NEW.user_id;
    RETURN NEW;
END $$;
CREATE TRIGGER balance_ledger_fill_balance_after BEFORE INSERT ON balance_ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_fill_balance_after();

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER balance_ledger_append_only BEFORE UPDATE OR DELETE ON balance_ledger
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER balance_ledger_no_truncate BEFORE TRUNCATE ON balance_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

CREATE FUNCTION check_balance_matches_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE CONSTRAINT TRIGGER users_balance_matches_ledger
    AFTER INSERT OR UPDATE OF account_balance ON users DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_balance_matches_ledger();
CREATE CONSTRAINT TRIGGER balance_ledger_matches_balance
    AFTER INSERT ON balance_ledger DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_balance_matches_ledger();

-- ---------------------------------------------------------------- audit capture
-- Statement-level triggers with transition tables: one set-based INSERT per statement, so a
-- bulk stock import does not pay a PL/pgSQL call per row. Stock content (licence keys) never
-- leaves the main DB: the audit copy carries its SHA-256 instead.
CREATE FUNCTION audit_redact(entity TEXT, state JSONB) RETURNS JSONB LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN state IS NULL THEN NULL
        WHEN entity = 'product_stocks' THEN
            state || jsonb_build_object('content',
                'sha256:' || encode(sha256(convert_to(state->>'content', 'UTF8')), 'hex'))
        WHEN entity IN ('orders', 'deposits') AND state ? 'payment_number' THEN
            state - 'payment_number'
        ELSE state
    END
$$;

CREATE FUNCTION audit_actor_id() RETURNS BIGINT LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('quickcart.actor_id', true), '')::BIGINT
$$;
CREATE FUNCTION audit_actor_type() RETURNS TEXT LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('quickcart.actor_type', true), ''), 'system')
$$;
CREATE FUNCTION audit_context() RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('quickcart.audit_context', true), '')::JSONB
$$;

CREATE FUNCTION audit_capture_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_outbox (actor_id, actor_type, entity_type, entity_id, action,
                              before_state, after_state, context)
    SELECT audit_actor_id(), audit_actor_type(), TG_TABLE_NAME, n.id::TEXT, 'create',
           NULL, audit_redact(TG_TABLE_NAME, to_jsonb(n)), audit_context()
    FROM new_rows AS n;
    RETURN NULL;
END $$;

CREATE FUNCTION audit_capture_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_outbox (actor_id, actor_type, entity_type, entity_id, action,
                              before_state, after_state, context)
    SELECT audit_actor_id(), audit_actor_type(), TG_TABLE_NAME, n.id::TEXT, 'update',
           audit_redact(TG_TABLE_NAME, to_jsonb(o)), audit_redact(TG_TABLE_NAME, to_jsonb(n)),
           audit_context()
    FROM old_rows AS o JOIN new_rows AS n ON n.id = o.id
    -- A no-op UPDATE (only updated_at moved) is not a change worth a permanent record.
    WHERE to_jsonb(o) - 'updated_at' IS DISTINCT FROM to_jsonb(n) - 'updated_at';
    RETURN NULL;
END $$;

CREATE FUNCTION audit_capture_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_outbox (actor_id, actor_type, entity_type, entity_id, action,
                              before_state, after_state, context)
    SELECT audit_actor_id(), audit_actor_type(), TG_TABLE_NAME, o.id::TEXT, 'delete',
           audit_redact(TG_TABLE_NAME, to_jsonb(o)), NULL, audit_context()
    FROM old_rows AS o;
    RETURN NULL;
END $$;
"""

AUDITED_TABLES = (
    "users",
    "products",
    "product_stocks",
    "orders",
    "order_items",
    "vouchers",
    "deposits",
)


def _audit_triggers() -> str:
    statements = []
    for table in AUDITED_TABLES:
        statements.append(
            f"CREATE TRIGGER audit_trigger_insert AFTER INSERT ON {table} "
            f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION audit_capture_insert();\n"
            f"CREATE TRIGGER audit_trigger_update AFTER UPDATE ON {table} "
            f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION audit_capture_update();\n"
            f"CREATE TRIGGER audit_trigger_delete AFTER DELETE ON {table} "
            f"REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION audit_capture_delete();\n"
        )
    return "".join(statements)


DOWNGRADE = """
DROP TABLE IF EXISTS audit_outbox, payment_events, outbox, idempotency_keys, sold_count_deltas,
    balance_ledger,
    deposits, voucher_usage_cooldown, vouchers, released_order_items, order_items,
    product_stocks, orders, products, users CASCADE;
DROP FUNCTION IF EXISTS audit_capture_delete(), audit_capture_update(), audit_capture_insert(),
    audit_context(), audit_actor_type(), audit_actor_id(), audit_redact(TEXT, JSONB),
    check_balance_matches_ledger(), refuse_change(), ledger_fill_balance_after(),
    check_order_totals(), enforce_status_transition(), update_timestamp();
"""


def _run(sql: str) -> None:
    # Raw driver SQL: PL/pgSQL bodies are full of % and : that bind-parameter parsing would eat.
    op.get_bind().exec_driver_sql(sql, execution_options={"no_parameters": True})


def upgrade() -> None:
    _run(UPGRADE)
    _run(_audit_triggers())


def downgrade() -> None:
    _run(DOWNGRADE)
