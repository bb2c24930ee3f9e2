"""Catalog administration: discounts, voucher kinds, broadcasts, admin groups, low-stock alerts.

Every data-contract table keeps its columns; what is new is additive:

- products: `low_stock_threshold` (default 5: admins hear once when free stock falls to it) and
  `reseller_discount_floor` (NULL: resellers get no discount; else discounts never take a
  reseller's price below it).
- discounts: one product discount or category discount each (percent or whole-rupiah amount,
  optional end); the best single one wins at pricing time (quickcart/domain/discounts.py).
- vouchers: `percent` (a percentage voucher; `amount` is then its cap), `max_uses` and
  `per_user_limit` (NULL: the data contract's single-use code), `min_purchase`. A multi-use
  code's holds and uses are rows of voucher_redemptions (one per order); a single-use code
  keeps using vouchers.order_id / is_used exactly as before.
- users: `blocked_bot_at` (Telegram said the user blocked the bot; broadcasts skip them).
- admin_groups: the whitelisted admin group chats (ADMIN_GROUP_IDS seeds them as 'env').
- broadcasts / broadcast_recipients / broadcast_runners: one row per broadcast, one per
  addressee (the state a resumed broadcast continues from: each addressee is claimed before the
  send, never twice) and the lease of the one worker sending it.
- restock_watches: "🔔 Kabari saya" requests; low_stock_alerts: products whose alert went out
  (deleted when stock rises above the threshold again, so the next crossing alerts again).
- order_items' composite key to product_stocks follows a renumbered unit (ON UPDATE CASCADE):
  /editid moves a product's units and order items to the new id in one transaction.

Business rows (discounts, voucher_redemptions, admin_groups, broadcasts, restock_watches) get
the audit capture triggers; progress rows (broadcast_recipients, broadcast_runners, low_stock_alerts) do not.

Revision ID: 0010_catalog_admin
Revises: 0009_after_sales
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0010_catalog_admin"
down_revision = "0009_after_sales"
branch_labels = None
depends_on = None

AUDITED = ("discounts", "voucher_redemptions", "admin_groups", "broadcasts", "restock_watches")

UPGRADE = """
ALTER TABLE products
    ADD COLUMN low_stock_threshold INT NOT NULL DEFAULT 5
        CONSTRAINT products_low_stock_threshold_range
        CHECK (low_stock_threshold BETWEEN 0 AND 1000000),
    ADD COLUMN reseller_discount_floor DECIMAL(15,2)
        CONSTRAINT products_reseller_discount_floor_positive
        CHECK (reseller_discount_floor IS NULL
               OR (reseller_discount_floor > 0
                   AND reseller_discount_floor = trunc(reseller_discount_floor)));

CREATE TABLE discounts (
    id          SERIAL        PRIMARY KEY,
    product_id  INT           REFERENCES products (id),
    category    VARCHAR(255),
    -- Not `kind`: the audit capture functions have a variable of that name.
    discount_kind VARCHAR(10) NOT NULL,
    value       DECIMAL(15,2) NOT NULL,
    ends_at     TIMESTAMPTZ,
    created_by  BIGINT        NOT NULL REFERENCES users (id),
    created_at  TIMESTAMPTZ   NOT NULL DEFAULT NOW(),
    CONSTRAINT discounts_one_target CHECK ((product_id IS NULL) <> (category IS NULL)),
    CONSTRAINT discounts_kind_check CHECK (discount_kind IN ('percent', 'amount')),
    CONSTRAINT discounts_percent_range
        CHECK (discount_kind <> 'percent' OR (value > 0 AND value < 100)),
    CONSTRAINT discounts_amount_whole
        CHECK (discount_kind <> 'amount' OR (value > 0 AND value = trunc(value)))
);
CREATE UNIQUE INDEX uq_discounts_product ON discounts (product_id) WHERE product_id IS NOT NULL;
CREATE UNIQUE INDEX uq_discounts_category ON discounts (category) WHERE category IS NOT NULL;

ALTER TABLE vouchers
    ADD COLUMN percent SMALLINT
        CONSTRAINT vouchers_percent_range CHECK (percent IS NULL OR percent BETWEEN 1 AND 100),
    ADD COLUMN max_uses INT
        CONSTRAINT vouchers_max_uses_positive CHECK (max_uses IS NULL OR max_uses >= 1),
    ADD COLUMN per_user_limit INT
        CONSTRAINT vouchers_per_user_limit_positive
        CHECK (per_user_limit IS NULL OR per_user_limit >= 1),
    ADD COLUMN min_purchase DECIMAL(15,2) NOT NULL DEFAULT 0
        CONSTRAINT vouchers_min_purchase_whole
        CHECK (min_purchase >= 0 AND min_purchase = trunc(min_purchase));

CREATE TABLE voucher_redemptions (
    id          SERIAL      PRIMARY KEY,
    voucher_id  INT         NOT NULL REFERENCES vouchers (id),
    user_id     BIGINT      NOT NULL REFERENCES users (id),
    order_id    INT         NOT NULL REFERENCES orders (id),
    used_at     TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
-- One voucher per order, single-use or multi-use.
CREATE UNIQUE INDEX uq_voucher_redemptions_order ON voucher_redemptions (order_id);
CREATE INDEX idx_voucher_redemptions_voucher ON voucher_redemptions (voucher_id, user_id);

ALTER TABLE users ADD COLUMN blocked_bot_at TIMESTAMPTZ;

CREATE TABLE admin_groups (
    id        BIGINT      PRIMARY KEY,
    source    VARCHAR(10) NOT NULL CHECK (source IN ('env', 'command')),
    added_by  BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    added_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT admin_groups_is_group CHECK (id < 0)
);

CREATE TABLE broadcasts (
    id             SERIAL       PRIMARY KEY,
    intent_key     VARCHAR(200) NOT NULL UNIQUE,
    created_by     BIGINT       NOT NULL REFERENCES users (id),
    message_kind   VARCHAR(10)  NOT NULL
        CHECK (message_kind IN ('text', 'photo', 'giveaway', 'restock')),
    -- The admin's text (text, photo caption), or the catalog key the message is rendered from
    -- in each addressee's language (giveaway, restock) with its parameters.
    body           TEXT         NOT NULL,
    params         JSONB,
    photo_file_id  TEXT,
    -- Messages per second this broadcast sends at most (NULL: the shop's setting).
    rate_per_second INT         CHECK (rate_per_second IS NULL OR rate_per_second > 0),
    status         VARCHAR(10)  NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done')),
    total          INT          NOT NULL DEFAULT 0,
    sent           INT,
    failed         INT,
    blocked        INT,
    created_at     TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    finished_at    TIMESTAMPTZ,
    CONSTRAINT broadcasts_photo_has_file
        CHECK (message_kind <> 'photo' OR photo_file_id IS NOT NULL)
);

CREATE TABLE broadcast_recipients (
    broadcast_id  INT         NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    user_id       BIGINT      NOT NULL,
    status        VARCHAR(10) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'unsure', 'failed', 'blocked')),
    attempts      INT         NOT NULL DEFAULT 0,
    not_before    TIMESTAMPTZ,
    claimed_at    TIMESTAMPTZ,
    done_at       TIMESTAMPTZ,
    PRIMARY KEY (broadcast_id, user_id)
);
CREATE INDEX idx_broadcast_recipients_pending ON broadcast_recipients (broadcast_id, user_id)
    WHERE status = 'pending';

-- Which worker runs a broadcast now (one at a time); a lease that lapsed means it died.
CREATE TABLE broadcast_runners (
    broadcast_id  INT         PRIMARY KEY REFERENCES broadcasts (id) ON DELETE CASCADE,
    runner        VARCHAR(64) NOT NULL,
    lease_until   TIMESTAMPTZ NOT NULL
);

CREATE TABLE restock_watches (
    id          SERIAL      PRIMARY KEY,
    user_id     BIGINT      NOT NULL REFERENCES users (id),
    product_id  INT         NOT NULL REFERENCES products (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT uq_restock_watches UNIQUE (product_id, user_id)
);

CREATE TABLE low_stock_alerts (
    product_id  INT         PRIMARY KEY REFERENCES products (id),
    alerted_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

ALTER TABLE order_items DROP CONSTRAINT fk_order_items_stock_assignment;
ALTER TABLE order_items ADD CONSTRAINT fk_order_items_stock_assignment
    FOREIGN KEY (stock_id, product_id, order_id)
    REFERENCES product_stocks (id, product_id, order_id) ON UPDATE CASCADE;
"""

DOWNGRADE = """
ALTER TABLE order_items DROP CONSTRAINT fk_order_items_stock_assignment;
ALTER TABLE order_items ADD CONSTRAINT fk_order_items_stock_assignment
    FOREIGN KEY (stock_id, product_id, order_id)
    REFERENCES product_stocks (id, product_id, order_id);
DROP TABLE low_stock_alerts, restock_watches, broadcast_runners, broadcast_recipients, broadcasts, admin_groups,
    voucher_redemptions, discounts;
ALTER TABLE users DROP COLUMN blocked_bot_at;
ALTER TABLE vouchers DROP COLUMN percent, DROP COLUMN max_uses, DROP COLUMN per_user_limit,
    DROP COLUMN min_purchase;
ALTER TABLE products DROP COLUMN low_stock_threshold, DROP COLUMN reseller_discount_floor;
"""


def _audit_triggers(table: str) -> str:
    return (
        f"CREATE TRIGGER audit_trigger_insert AFTER INSERT ON {table}"
        " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION audit_capture_insert();\n"
        f"CREATE TRIGGER audit_trigger_update AFTER UPDATE ON {table}"
        " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION audit_capture_update();\n"
        f"CREATE TRIGGER audit_trigger_delete AFTER DELETE ON {table}"
        " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION audit_capture_delete();\n"
    )


def upgrade() -> None:
    # Raw driver SQL: no bind parameters in these statements.
    sql = UPGRADE + "".join(_audit_triggers(table) for table in AUDITED)
    op.get_bind().exec_driver_sql(sql, execution_options={"no_parameters": True})


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DOWNGRADE, execution_options={"no_parameters": True})
