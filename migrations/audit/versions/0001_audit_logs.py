"""Audit database: `audit_logs` as the seed defines it, append-only, SHA-256 chained.

Revision ID: 0001_audit_logs
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0001_audit_logs"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE audit_logs (
    id            BIGSERIAL   PRIMARY KEY,
    "timestamp"   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    actor_id      BIGINT,
    actor_type    VARCHAR(20) NOT NULL,
    entity_type   VARCHAR(50) NOT NULL,
    entity_id     VARCHAR(50) NOT NULL,
    action        VARCHAR(50) NOT NULL,
    before_state  JSONB,
    after_state   JSONB,
    context       JSONB,
    ip_address    INET,
    -- Chain and provenance (docs/adr/0007, 0008): the main DB's audit_outbox id makes shipping
    -- idempotent; checksum = sha256(prev_checksum || content_hash) links every entry to the last.
    source_id     BIGINT      UNIQUE,
    content_hash  CHAR(64),
    prev_checksum CHAR(64),
    checksum      CHAR(64),
    anonymised_at TIMESTAMPTZ,
    CONSTRAINT audit_logs_actor_type_check CHECK (actor_type IN ('user', 'admin', 'system'))
);
CREATE INDEX idx_audit_logs_timestamp ON audit_logs ("timestamp");
CREATE INDEX idx_audit_logs_entity ON audit_logs (entity_type, entity_id);
CREATE INDEX idx_audit_logs_actor ON audit_logs (actor_id);
CREATE INDEX idx_audit_logs_action ON audit_logs (action);

-- Append-only. The one way to change a row is anonymise_audit_subject(), which flips a
-- transaction-local switch and may touch only the personal-data columns.
CREATE FUNCTION audit_logs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND current_setting('quickcart.audit_anonymise', true) = 'on'
       AND NEW.id = OLD.id
       AND NEW."timestamp" = OLD."timestamp"
       AND NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id
       AND NEW.actor_type = OLD.actor_type
       AND NEW.entity_type = OLD.entity_type
       AND NEW.entity_id = OLD.entity_id
       AND NEW.action = OLD.action
       AND NEW.source_id IS NOT DISTINCT FROM OLD.source_id
       AND NEW.content_hash IS NOT DISTINCT FROM OLD.content_hash
       AND NEW.prev_checksum IS NOT DISTINCT FROM OLD.prev_checksum
       AND NEW.checksum IS NOT DISTINCT FROM OLD.checksum
       AND NEW.anonymised_at IS NOT NULL THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_logs is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();
CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only();

-- Erasure (GDPR art. 17): blank a user's personal fields in every entry about or by them.
-- The chain stays verifiable: checksums cover content_hash, which is kept as it was.
CREATE FUNCTION anonymise_audit_subject(subject_id BIGINT) RETURNS INTEGER
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    pii CONSTANT TEXT[] := ARRAY['name', 'username', 'email', 'whatsapp_number'];
    changed INTEGER;
BEGIN
    PERFORM set_config('quickcart.audit_anonymise', 'on', true);
    UPDATE audit_logs SET
        before_state = CASE WHEN entity_type = 'users' AND entity_id = subject_id::TEXT
                            THEN anonymise_state(before_state, pii) ELSE before_state END,
        after_state  = CASE WHEN entity_type = 'users' AND entity_id = subject_id::TEXT
                            THEN anonymise_state(after_state, pii) ELSE after_state END,
        context      = CASE WHEN context IS NULL THEN NULL ELSE context - pii END,
        ip_address   = NULL,
        anonymised_at = coalesce(anonymised_at, now())
    WHERE (entity_type = 'users' AND entity_id = subject_id::TEXT) OR actor_id = subject_id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    PERFORM set_config('quickcart.audit_anonymise', 'off', true);
    RETURN changed;
END $$;

CREATE FUNCTION anonymise_state(state JSONB, pii TEXT[]) RETURNS JSONB LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN state IS NULL THEN NULL ELSE
        state || (SELECT coalesce(jsonb_object_agg(k, CASE WHEN state->k = 'null'::jsonb
                                                        THEN 'null'::jsonb
                                                        ELSE to_jsonb('[erased]'::TEXT) END), '{}')
                  FROM unnest(pii) AS k WHERE state ? k)
    END
$$;
"""

DOWNGRADE = """
DROP TABLE IF EXISTS audit_logs CASCADE;
DROP FUNCTION IF EXISTS anonymise_audit_subject(BIGINT), anonymise_state(JSONB, TEXT[]),
    audit_logs_append_only();
"""


def _run(sql: str) -> None:
    # Raw driver SQL: PL/pgSQL bodies are full of % and : that bind-parameter parsing would eat.
    op.get_bind().exec_driver_sql(sql, execution_options={"no_parameters": True})


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
