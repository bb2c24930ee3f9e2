"""Verify the audit DB's SHA-256 chain and, where content is intact by design, each entry's hash.

What a verification proves: no entry was changed, removed or inserted in the middle of the chain,
and the chain has not lost its beginning, even by a superuser who disabled the append-only
triggers. Two limits, by construction: anonymised entries (GDPR erasure) are checked for their
links only, since their personal fields were blanked on purpose after hashing; and a rewrite of
the whole tail from some entry on, or removal of the newest entries, needs an external anchor (a
recorded recent checksum) to be detected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from quickcart.services.audit_shipping import chain_checksum, content_hash

_WALK_SQL = text(
    """
    SELECT id, "timestamp", actor_id, actor_type, entity_type, entity_id, action,
           before_state::text AS before_json, after_state::text AS after_json,
           context::text AS context_json, abbrev(ip_address) AS ip_address, source_id,
           content_hash, prev_checksum, checksum, anonymised_at
    FROM audit_logs
    ORDER BY id
    """
)


@dataclass(frozen=True)
class AuditProblem:
    """One entry that does not verify, and why."""

    entry_id: int
    reason: str


@dataclass
class AuditVerifyReport:
    """Outcome of one walk over audit_logs."""

    checked: int = 0
    anonymised: int = 0
    problems: list[AuditProblem] = field(default_factory=list)
    last_checksum: str | None = None

    @property
    def ok(self) -> bool:
        """True when every entry verified."""
        return not self.problems


def verify_audit_chain(audit_engine: Engine, batch_size: int = 2000) -> AuditVerifyReport:
    """Stream audit_logs in id order (one snapshot, no lock, read-only) and report every break."""
    report = AuditVerifyReport()
    previous: str | None = None
    with audit_engine.connect() as conn:
        rows = conn.execution_options(yield_per=batch_size).execute(_WALK_SQL)
        for row in rows:
            report.checked += 1
            # The first entry has no predecessor; a first entry that names one means the
            # beginning of the chain was removed.
            if row.prev_checksum != previous:
                expected = "none (first entry)" if previous is None else previous
                report.problems.append(AuditProblem(
                    row.id,
                    f"prev_checksum {row.prev_checksum} does not link to the previous entry"
                    f" ({expected}): an entry before it was removed, inserted or rewritten",
                ))
            if row.content_hash is None or row.checksum is None:
                report.problems.append(AuditProblem(row.id, "entry has no content hash/checksum"))
            else:
                if row.checksum != chain_checksum(row.prev_checksum, row.content_hash):
                    report.problems.append(AuditProblem(
                        row.id, "checksum is not sha256(prev_checksum + content_hash)"))
                if row.anonymised_at is not None:
                    report.anonymised += 1
                else:
                    recomputed = content_hash(
                        timestamp=row.timestamp,
                        actor_id=row.actor_id,
                        actor_type=row.actor_type,
                        entity_type=row.entity_type,
                        entity_id=row.entity_id,
                        action=row.action,
                        before_json=row.before_json,
                        after_json=row.after_json,
                        context_json=row.context_json,
                        ip_address=row.ip_address,
                        source_id=row.source_id,
                    )
                    if recomputed != row.content_hash:
                        report.problems.append(AuditProblem(
                            row.id, "content does not match its content_hash (entry altered)"))
            previous = row.checksum
    report.last_checksum = previous
    return report


def format_report(report: AuditVerifyReport, max_problems: int = 50) -> str:
    """Human-readable summary of a verification; pure, no lock."""
    lines = [
        f"audit chain: {report.checked} entries checked"
        f" ({report.anonymised} anonymised: links only), {len(report.problems)} problem(s)"
    ]
    if report.last_checksum:
        lines.append(f"head checksum: {report.last_checksum}")
    for problem in report.problems[:max_problems]:
        lines.append(f"  entry {problem.entry_id}: {problem.reason}")
    if len(report.problems) > max_problems:
        lines.append(f"  ... and {len(report.problems) - max_problems} more")
    lines.append("OK" if report.ok else "FAILED")
    return "\n".join(lines)
