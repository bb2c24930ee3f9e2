"""The audit of every admin command, the non-admin attempts, and `/audit`.

Every task named `quickcart.admin_*` that carries an actor is an admin command: a wrapper on
Celery's task_prerun / task_postrun signals records it before it runs and its outcome after
(quickcart/services/admin_audit.py), so a command added later (in any workers/tasks module) is
audited without touching it. Outcome: 'done', 'refused' (a business refusal — the task returned
{"status": "rejected"}), or 'failed' (an exception that will not be retried); a retry leaves the
row 'started' until the attempt that finishes. The request key is the intent key the bot sent,
so a redelivered message does not record a second command.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_postrun, task_prerun

from quickcart.domain.errors import ShopError
from quickcart.i18n import N_
from quickcart.services import admin_audit, order_lookup
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe
from workers.tasks.account import reply, reply_text

log = logging.getLogger(__name__)

PREFIX = "quickcart.admin_"
#: Admin-named tasks that are not commands of an admin (beat jobs).
NOT_COMMANDS = frozenset({"quickcart.admin_sales_digest"})
#: Task → the command the admin typed (quickcart.bot_commands.ADMIN_COMMANDS). A task a typed
#: command also sends (e.g. /order and the order lookup's 🔎 button) is named after the command.
COMMAND_NAMES = {
    "quickcart.admin_add_product": "add", "quickcart.admin_delete_product": "del",
    "quickcart.admin_reseller_price": "priceress", "quickcart.admin_adjust_balance": "editbalance",
    "quickcart.admin_renumber_product": "editid", "quickcart.admin_discount_floor": "discfloor",
    "quickcart.admin_low_stock_threshold": "lowstock",
    "quickcart.admin_import_stock": "addstock", "quickcart.admin_add_stock_lines": "addstock",
    "quickcart.admin_list_stock": "liststock", "quickcart.admin_delete_stock": "delstock",
    "quickcart.admin_export_stock": "exportstock",
    "quickcart.admin_user_info": "info", "quickcart.admin_transfer": "transfer",
    "quickcart.admin_create_voucher": "voucher", "quickcart.admin_giveaway": "giveaway",
    "quickcart.admin_private_message": "pm", "quickcart.admin_broadcast": "broadcast",
    "quickcart.admin_stats": "stats",
    "quickcart.admin_order_lookup": "order", "quickcart.admin_propose_refund": "reff",
    "quickcart.admin_set_formula": "setformula", "quickcart.admin_version": "version",
    "quickcart.admin_review_list": "review", "quickcart.admin_review_decide": "review",
    "quickcart.admin_audit_query": "audit", "quickcart.admin_fraud_settings": "fraud",
}
#: Task → the inline button that alone sends it (no typed command does): `<where>:<action>`.
BUTTON_ACTIONS = {
    "quickcart.admin_delete_all_stock": "delallstock:confirm",
    "quickcart.admin_warranty_units": "order:warranty",
    "quickcart.admin_resend_delivery": "order:resend",
    "quickcart.admin_recheck_payment": "order:recheck",
    "quickcart.admin_replace_unit": "order:replace",
    "quickcart.admin_confirm_refund": "refund:confirm",
    "quickcart.admin_cancel_refund": "refund:cancel",
}
ROLE_COMMANDS: dict[tuple[Any, Any], str] = {
    ("reseller", None): "addreseller", ("customer", "reseller"): "rmress",
    ("admin", None): "addadmin", ("customer", "admin"): "rmadmin"}
#: /editname, /editcategory, /editprice, /editdesc by the product field they change.
EDIT_COMMANDS = {"name": "editname", "category": "editcategory", "price": "editprice",
                 "description": "editdesc"}


def command_of(task_name: str, kwargs: dict[str, Any]) -> str:
    """The admin command (or button action) a task carries out, told apart by the arguments
    the bot fixes where one task serves several commands (/disc and /discat, /whitelist and
    /rm, /ban and /unban, the role and edit commands). A task with no name here falls back to
    its own name (tests/unit/test_admin_audit.py fails for it)."""
    if task_name == "quickcart.admin_set_ban":
        return "ban" if kwargs.get("banned") else "unban"
    if task_name == "quickcart.admin_set_role":
        return ROLE_COMMANDS.get((kwargs.get("role"), kwargs.get("from_role")), "setrole")
    if task_name == "quickcart.admin_edit_product":
        return EDIT_COMMANDS.get(str(kwargs.get("field")), "edit")
    if task_name == "quickcart.admin_discount":
        return "discat" if kwargs.get("scope") == "category" else "disc"
    if task_name == "quickcart.admin_group":
        return "whitelist" if kwargs.get("listed") else "rm"
    return COMMAND_NAMES.get(task_name) or BUTTON_ACTIONS.get(task_name) \
        or task_name.removeprefix(PREFIX)


def _actor(kwargs: dict[str, Any]) -> int | None:
    value = kwargs.get("actor_id", kwargs.get("chat_id"))
    return value if isinstance(value, int) else None


def _request_key(task: Any, kwargs: dict[str, Any]) -> str | None:
    key = kwargs.get("idempotency_key") or kwargs.get("upload_id")
    return f"cmd:{key}" if key else (f"task:{task.request.id}" if task.request.id else None)


def _audited(task: Any, kwargs: dict[str, Any] | None) -> tuple[str, int, dict[str, Any]] | None:
    name = getattr(task, "name", "") or ""
    if not name.startswith(PREFIX) or name in NOT_COMMANDS or kwargs is None:
        return None
    actor = _actor(kwargs)
    key = _request_key(task, kwargs)
    if actor is None or key is None:
        return None
    return key, actor, kwargs


@task_prerun.connect
def before_admin_command(sender: Any = None, task: Any = None, kwargs: Any = None,
                         **_: Any) -> None:
    """Record an admin command before it runs (once per request key)."""
    found = _audited(task, kwargs)
    if found is None:
        return
    key, actor, arguments = found
    admin_audit.command_started(runtime.engine(), key, actor, command_of(task.name, arguments),
                                arguments)


@task_postrun.connect
def after_admin_command(sender: Any = None, task: Any = None, kwargs: Any = None,
                        retval: Any = None, state: str | None = None, **_: Any) -> None:
    """Record an admin command's outcome: done / refused / failed (a retry records nothing)."""
    found = _audited(task, kwargs)
    if found is None or state not in ("SUCCESS", "FAILURE"):
        return
    key = found[0]
    detail: dict[str, Any]
    if state == "FAILURE":
        outcome, detail = "failed", {"error": type(retval).__name__}
    elif isinstance(retval, dict) and retval.get("status") == "rejected":
        outcome, detail = "refused", {"error": str(retval.get("error"))}
    else:
        outcome = "done"
        detail = {k: retval[k] for k in ("count", "status", "changed", "review_status")
                  if isinstance(retval, dict) and k in retval}
    try:
        admin_audit.command_finished(runtime.engine(), key, outcome, detail)
    except Exception:  # noqa: BLE001 - the command ran; its outcome row is best effort
        log.exception("could not record the outcome of %s (%s)", task.name, key)


@app.task(base=QuickCartTask, name="quickcart.audit_admin_attempt")
def admin_attempt(user_id: int, command: str, idempotency_key: str) -> dict[str, Any]:
    """A non-admin sent an admin command: audit it; alert the admins past the hourly limit."""
    found = admin_audit.record_attempt(runtime.engine(), idempotency_key, user_id, command)
    publish_committed_unsafe(found.outbox)
    return {"recorded": found.recorded, "attempts": found.attempts_last_hour,
            "alerted": found.alerted}


@app.task(base=QuickCartTask, name="quickcart.admin_audit_query")
def audit_query(actor_id: int, subject: str, idempotency_key: str,
                limit: int = 10) -> dict[str, Any]:
    """/audit subject [n]: the latest audit entries about an invoice, user or admin."""
    engine = runtime.engine()
    try:
        with engine.connect() as conn:
            order_lookup.require_admin(conn, actor_id)
        entries = admin_audit.query(engine, runtime.audit_engine(), subject, limit)
    except ShopError as refusal:
        reply(actor_id, f"error.{refusal.code}", once_key=idempotency_key, **refusal.params)
        return refusal.to_dict()
    if not entries:
        reply(actor_id, N_("audit.empty"), once_key=idempotency_key, subject=subject)
        return {"status": "ok", "count": 0}
    parts = [(N_("audit.title"), {"subject": subject, "count": len(entries)})]
    parts += [(N_("audit.line"), {
        "at": e.at.strftime("%Y-%m-%d %H:%M:%S"), "actor": e.actor_id or "-",
        "actor_type": e.actor_type, "entity": f"{e.entity_type}/{e.entity_id}",
        "action": e.action, "summary": e.summary}) for e in entries]
    reply_text(actor_id, parts, once_key=idempotency_key)
    return {"status": "ok", "count": len(entries)}

