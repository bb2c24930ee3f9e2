"""Where each admin's rights came from: ADMIN_IDS ('env') or an admin's /addadmin ('command').

Registration used to promote ADMIN_IDS ids on contact and never demoted anyone, so an id removed
from ADMIN_IDS stayed admin forever. With the source recorded, the start-up sync
(quickcart/services/admin_rights.py) demotes exactly the admins that ADMIN_IDS made and no
longer names, and /rmadmin removes exactly the ones a command made.

The data contract's tables are unchanged: this is a table of its own, one row per admin, removed
with the role. It is audited like users (same capture triggers); the triggers key each record on
a column named `id`, hence the generated copy of `user_id`.

Backfill: an admin who exists at upgrade time has no recorded source. They are recorded as
'command', so nobody is demoted by the upgrade; the next sync turns those still in ADMIN_IDS into
'env' admins, and the others keep their rights until an admin runs /rmadmin.

Revision ID: 0008_admin_grants
Revises: 0007_admin_pending_notices
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0008_admin_grants"
down_revision = "0007_admin_pending_notices"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE admin_grants (
    user_id     BIGINT      PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    source      VARCHAR(10) NOT NULL CHECK (source IN ('env', 'command')),
    -- The admin whose command granted it (NULL for ADMIN_IDS and for the upgrade's backfill).
    granted_by  BIGINT      NULL REFERENCES users(id) ON DELETE SET NULL,
    granted_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    id          BIGINT      GENERATED ALWAYS AS (user_id) STORED
);
CREATE TRIGGER audit_trigger_insert AFTER INSERT ON admin_grants
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION audit_capture_insert();
CREATE TRIGGER audit_trigger_update AFTER UPDATE ON admin_grants
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION audit_capture_update();
CREATE TRIGGER audit_trigger_delete AFTER DELETE ON admin_grants
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION audit_capture_delete();
SELECT set_config('quickcart.actor_type', 'system', true),
       set_config('quickcart.audit_context', '{"reason": "migration 0008 backfill"}', true);
INSERT INTO admin_grants (user_id, source)
SELECT id, 'command' FROM users WHERE member_status = 'admin';
"""


def upgrade() -> None:
    # Raw driver SQL: the JSON literal's colon would otherwise be read as a bind parameter.
    op.get_bind().exec_driver_sql(UPGRADE, execution_options={"no_parameters": True})


def downgrade() -> None:
    op.execute("DROP TABLE admin_grants")
