"""Beat's sweep of the shoppers' money intents that never got an outcome: sent again."""

from __future__ import annotations

import logging
import time

from quickcart.adapters import intent_journal
from quickcart.config import get_settings
from quickcart.db import idempotency
from workers import push, runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.routes import TASK_QUEUES

log = logging.getLogger(__name__)

#: Sends after the first: an intent still without an outcome after these is given up (logged),
#: since something other than a lost message is wrong with it.
MAX_RESENDS = 3


@app.task(base=QuickCartTask, name="quickcart.resend_lost_intents")
def resend_lost_intents() -> int:
    """Send again each journaled intent older than `intent_resend_after_seconds` whose key no
    transaction has claimed; forget those claimed. Locks nothing: a resent intent and its lost
    or late original are twins, and the key claimed in the order's own transaction lets only
    one of them take effect (the other returns its result and sends nothing)."""
    r = runtime.redis_client()
    now = time.time()
    due = intent_journal.sent_before(r, now - get_settings().intent_resend_after_seconds)
    if not due:
        return 0
    with runtime.engine().connect() as conn:
        done = idempotency.claimed(conn, [key for key, _ in due])
    resent = 0
    for key, body in due:
        if key in done:
            intent_journal.forget(r, key)
        elif body["attempts"] >= MAX_RESENDS:
            log.error("intent %s (%s) has no outcome after %s sends: given up", key,
                      body["task"], body["attempts"] + 1)
            intent_journal.forget(r, key)
        else:
            intent_journal.sent_again(r, key, body, now)
            push.send_unsafe(app, body["task"], body["kwargs"],
                             TASK_QUEUES.get(body["task"], "default"))
            resent += 1
    if resent:
        log.warning("sent %s intent(s) again that had no outcome", resent)
    return resent
