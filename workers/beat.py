"""Beat that sends a housekeeping task only when a cheap check finds work for it.

Every beat entry is housekeeping (the relay, expiry, audit shipping, roll-ups, sweeps). Sent
blindly every second or two, an idle shop ran ~1,500 no-op tasks per ten minutes, each shown in
Flower and logged by beat and by a worker. Here beat first asks the entry's check (one indexed
`EXISTS` on the database, or one Redis command) and sends the task only when the answer is yes.
The schedule itself is unchanged, so a due order still expires within a tick, the audit lag stays
a tick, and a lost push is still relayed after its two-second grace.

A check that fails (database or Redis down, a timeout) sends the task anyway: the task's own
retries and errors are then what they always were. Entries without a check are always sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry
from sqlalchemy import Connection, Engine, create_engine

from quickcart.adapters import intent_journal, redis_store
from quickcart.config import get_settings
from quickcart.db.urls import service_urls
from quickcart.services import housekeeping
from workers import publish, runtime

log = logging.getLogger(__name__)

#: How long one check may take before it counts as failed (and the task is sent anyway): beat
#: runs its checks one after another, so a hung database must not hold up the other entries.
CHECK_TIMEOUT_MS = 3000

_engine: Engine | None = None


def _db(check: Callable[[Connection], bool]) -> bool:
    """Run `check` on beat's own small pool (one connection, short statement timeout)."""
    global _engine
    if _engine is None:
        _engine = create_engine(
            service_urls().database_url, pool_size=1, max_overflow=1, pool_pre_ping=True,
            pool_recycle=600,
            connect_args={"application_name": "quickcart-beat", "connect_timeout": 3,
                          "options": f"-c statement_timeout={CHECK_TIMEOUT_MS}"})
    with _engine.connect() as conn:
        return check(conn)


def _relay_has_work() -> bool:
    from workers.tasks.maintenance import RELAY_MIN_AGE_SECONDS

    # A broker that restarted empty needs the relay's re-queue even with no row unpublished.
    return publish.broker_lost_queues_unsafe() or _db(
        lambda c: housekeeping.outbox_unpublished(c, RELAY_MIN_AGE_SECONDS))


def _expiry_due() -> bool:
    return bool(redis_store.due_expiries(runtime.redis_client(), time.time(), limit=1))


def _digest_has_work() -> bool:
    from workers.tasks.maintenance import DIGEST_KEY

    last = runtime.redis_client().get(redis_store.prefixed(DIGEST_KEY))
    if last is None:
        return True  # the first run opens the first window
    since = datetime.fromtimestamp(float(str(last)), UTC)
    return _db(lambda c: housekeeping.order_activity_since(c, since))


def _purge_has_work() -> bool:
    from workers.tasks.maintenance import PURGE_AFTER_HOURS

    return _db(lambda c: housekeeping.outbox_purgeable(c, PURGE_AFTER_HOURS))


def _redeliver_has_work() -> bool:
    from workers.tasks.maintenance import REDELIVER_GRACE_SECONDS

    return _db(lambda c: housekeeping.undelivered_paid(c, REDELIVER_GRACE_SECONDS))


#: Task name -> "would this task find work now?" (a superset of its task's own query: a check
#: that is narrower than its task delays that task's work). A beat entry without a check is
#: always sent, and costs an idle shop its log and Flower budget.
CHECKS: dict[str, Callable[[], bool]] = {
    "quickcart.relay_outbox": _relay_has_work,
    "quickcart.expire_due": _expiry_due,
    "quickcart.expiry_sweep": lambda: _db(housekeeping.overdue_pending),
    "quickcart.ship_audit": lambda: _db(housekeeping.audit_unshipped),
    "quickcart.rollup_sold_counts": lambda: _db(housekeeping.sold_deltas),
    "quickcart.redeliver_stuck": _redeliver_has_work,
    "quickcart.purge_outbox": _purge_has_work,
    "quickcart.reconcile_payments": lambda: _db(lambda c: housekeeping.reconcilable(
        c, get_settings().reconcile_after_seconds)),
    "quickcart.admin_sales_digest": _digest_has_work,
    "quickcart.low_stock_check": lambda: _db(housekeeping.low_stock_changes),
    "quickcart.broadcast_resume": lambda: _db(housekeeping.orphaned_broadcasts),
    "quickcart.review_reminders": lambda: _db(housekeeping.open_reviews),
    "quickcart.resend_lost_intents": lambda: intent_journal.any_sent_before(
        runtime.redis_client(), time.time() - get_settings().intent_resend_after_seconds),
}
#: Beat entries sent without a check: their run is the check (the health monitor probes the
#: database, Redis and the gateway from a worker). Every other entry needs one in CHECKS.
ALWAYS_SENT = frozenset({"quickcart.health_monitor"})


class HousekeepingScheduler(PersistentScheduler):
    """celery's persistent scheduler, sending an entry's task only when its check finds work;
    sends and skips are logged at DEBUG (the worker's line for a run that did work is the
    record at INFO)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._failing: set[str] = set()
        super().__init__(*args, **kwargs)

    def has_work(self, entry: ScheduleEntry) -> bool:
        """Whether `entry`'s task would find work (True when unknown or the check failed)."""
        check = CHECKS.get(entry.task)
        if check is None:
            return True
        try:
            busy = check()
        except Exception as exc:  # noqa: BLE001 - fail open: the task itself will see the error
            if entry.name not in self._failing:
                self._failing.add(entry.name)
                log.warning("housekeeping check for %s failed (%s: %s); sending it anyway"
                            " until the check works again", entry.name, type(exc).__name__, exc)
            return True
        if entry.name in self._failing:
            self._failing.discard(entry.name)
            log.info("housekeeping check for %s works again", entry.name)
        return busy

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        """Send `entry`'s task if its check finds work (celery's own, minus the INFO line)."""
        if not self.has_work(entry):
            log.debug("beat: nothing to do for %s", entry.name)
            return
        log.debug("beat: sending due task %s (%s)", entry.name, entry.task)
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception:
            log.exception("beat: sending %s failed", entry.name)
