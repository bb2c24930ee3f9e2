"""The review queue and the anti-fraud settings from the bot, and the reminder sweep.

Every answer is sent at most once per intent key (`tg:<update_id>`), so a redelivered task does
not repeat it; decisions are idempotent by state (quickcart/services/review.py).
"""

from __future__ import annotations

from typing import Any

from quickcart.domain.errors import ShopError
from quickcart.i18n import N_
from quickcart.messages import render
from quickcart.services import fraud_settings, notifications, review
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe
from workers.tasks.account import reply, reply_text

DECISION_CODES = {"a": "approve", "r": "refund", "k": "keep"}


def _send(chat_id: int, text: str, markup: dict[str, Any] | None, once_key: str) -> bool:
    """One message (with buttons) at most once per `once_key`."""
    engine = runtime.engine()
    if not notifications.claim_once(engine, once_key, "message"):
        return False
    try:
        runtime.messenger().send_message(chat_id, text[:4000], reply_markup=markup)
    except Exception:
        notifications.unclaim(engine, once_key)
        raise
    return True


def item_text(item: review.ReviewItem, lang: str) -> str:
    """One review item as admins read it: what, who, score, rules, history, age."""
    return render(
        "review.item", lang, review_id=item.review_id, kind=item.kind,
        invoice_id=item.invoice_id, user_id=item.user_id, name=item.user_name,
        amount=str(item.amount), score=item.score, priority=item.priority,
        overdue="⏰" if item.overdue else "", rules=", ".join(item.rules) or "-",
        status=item.status, reason=item.reason or "-", minutes=item.age_minutes,
        account_days=item.account_age_days, paid_30d=item.paid_30d,
        paid_30d_total=str(item.paid_30d_total), earlier=item.earlier_reviews)


def item_buttons(review_id: int) -> list[list[tuple[str, str]]]:
    """Approve / refund / keep, as rows of (label key, callback data)."""
    return [[(N_("button.review_approve"), f"rv:a:{review_id}"),
             (N_("button.review_refund"), f"rv:r:{review_id}"),
             (N_("button.review_keep"), f"rv:k:{review_id}")]]


@app.task(base=QuickCartTask, name="quickcart.admin_review_list")
def review_list(actor_id: int, idempotency_key: str) -> dict[str, Any]:
    """/review: the held items by priority, one message each with its decision buttons."""
    engine = runtime.engine()
    try:
        items = review.queue(engine, actor_id)
    except ShopError as refusal:
        reply(actor_id, f"error.{refusal.code}", once_key=idempotency_key, **refusal.params)
        return refusal.to_dict()
    lang = notifications.language_of(engine, actor_id)
    if not items:
        reply(actor_id, N_("review.empty"), once_key=idempotency_key)
        return {"status": "ok", "count": 0}
    reply(actor_id, N_("review.header"), once_key=idempotency_key, count=len(items))
    for item in items:
        _send(actor_id, item_text(item, lang),
              notifications.buttons_markup(item_buttons(item.review_id), lang),
              f"{idempotency_key}:item:{item.review_id}")
    return {"status": "ok", "count": len(items)}


@app.task(base=QuickCartTask, name="quickcart.admin_review_decide")
def review_decide(actor_id: int, review_id: int, decision: str, idempotency_key: str,
                  reason: str | None = None) -> dict[str, Any]:
    """Approve / refund / keep one held item (from a button or `/review id|decision|reason`);
    an item decided already answers with its state."""
    engine = runtime.engine()
    decision = DECISION_CODES.get(decision, decision)
    try:
        done = review.decide(engine, actor_id, review_id, decision, reason)
    except ShopError as refusal:
        reply(actor_id, f"error.{refusal.code}", once_key=idempotency_key, **refusal.params)
        return refusal.to_dict()
    publish_committed_unsafe(done.outbox)
    key = N_("review.decided") if done.changed else N_("review.already_decided")
    reply(actor_id, key, once_key=idempotency_key, review_id=review_id,
          invoice_id=done.invoice_id, status=done.status, user_id=done.user_id)
    return {"status": "ok", "review_status": done.status, "changed": done.changed}


@app.task(base=QuickCartTask, name="quickcart.admin_fraud_settings")
def fraud_settings_command(actor_id: int, idempotency_key: str, name: str | None = None,
                           value: str | None = None) -> dict[str, Any]:
    """/fraud: show every setting, or change one (`/fraud name|value`, `/fraud off`)."""
    engine = runtime.engine()
    try:
        if name is None:
            values = fraud_settings.for_admin(engine, actor_id)
            parts: list[tuple[str, dict[str, Any]]] = [(N_("fraud.settings_title"), {})]
            parts += [(N_("fraud.setting_line"), {"name": n, "value": v})
                      for n, v in values.items()]
            reply_text(actor_id, parts, once_key=idempotency_key)
            return {"status": "ok", "count": len(values)}
        change = fraud_settings.set_setting(engine, actor_id, name, value or "")
    except ShopError as refusal:
        reply(actor_id, f"error.{refusal.code}", once_key=idempotency_key, **refusal.params)
        return refusal.to_dict()
    reply(actor_id, N_("fraud.setting_changed"), once_key=idempotency_key, name=change.name,
          before=change.before, after=change.after)
    return {"status": "ok", "name": change.name, "value": change.after}


@app.task(base=QuickCartTask, name="quickcart.review_reminders")
def review_reminders() -> int:
    """Beat: re-notify admins of review items waiting longer than the renotify setting."""
    messages = review.remind(runtime.engine())
    publish_committed_unsafe(messages)
    return len(messages)
