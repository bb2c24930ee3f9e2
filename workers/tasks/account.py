"""Account intents from the bot: registration, language, profile, export, erasure (messages to
the admins are support tickets: workers/tasks/support.py)."""

from __future__ import annotations

import json
from typing import Any

from quickcart.adapters import redis_store
from quickcart.domain.errors import ShopError
from quickcart.i18n import N_
from quickcart.messages import render
from quickcart.services import account, admin_inbox, notifications, registration
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe


def reply(chat_id: int, key: str, once_key: str | None = None, **params: Any) -> bool:
    """One catalog message to `chat_id`, at most once per `once_key` (after any commit)."""
    return notifications.send_catalog_message(runtime.engine(), runtime.messenger(), chat_id,
                                              key, params, once_key=once_key)


def render_parts(chat_id: int, parts: list[tuple[str, dict[str, Any]]]) -> str:
    """Catalog lines rendered in `chat_id`'s language, one message's text; a read."""
    lang = notifications.language_of(runtime.engine(), chat_id)
    return "\n".join(render(key, lang, **params) for key, params in parts)


def reply_text(chat_id: int, parts: list[tuple[str, dict[str, Any]]],
               once_key: str | None = None) -> bool:
    """Several catalog lines rendered in the reader's language and sent as one message."""
    engine = runtime.engine()
    if once_key and not notifications.claim_once(engine, once_key, "message"):
        return False
    body = render_parts(chat_id, parts)
    try:
        runtime.messenger().send_message(chat_id, body[:4000])
    except Exception:
        if once_key:
            notifications.unclaim(engine, once_key)
        raise
    return True


@app.task(base=QuickCartTask, name="quickcart.register_user")
def register_user(user_id: int, name: str, username: str | None = None,
                  language: str | None = None) -> dict[str, Any]:
    """First contact: create the user (idempotent: an existing row is returned)."""
    found = registration.register_user(runtime.engine(), user_id, name, username, language)
    publish_committed_unsafe(found.outbox)  # an ADMIN_IDS admin's command menu
    if found.created:  # after the commit; best effort (the 60 s TTL bounds a lost delete)
        redis_store.invalidate(runtime.redis_client(), redis_store.stats_users_key())
    if found.created and found.member_status == "admin":
        # An admin's first contact: the notices kept while their chat was unknown go now.
        publish_committed_unsafe(admin_inbox.release_notices(runtime.engine(), user_id))
    return {"user_id": found.user_id, "created": found.created, "role": found.member_status}


@app.task(base=QuickCartTask, name="quickcart.set_language")
def set_language(user_id: int, language: str, idempotency_key: str | None = None) -> bool:
    """/lang: store the user's language (idempotent by state)."""
    return account.set_language(runtime.engine(), user_id, language)


@app.task(base=QuickCartTask, name="quickcart.update_profile")
def update_profile(user_id: int, field: str, value: str,
                   idempotency_key: str | None = None) -> dict[str, Any]:
    """Onboarding / profile edit of one field; a refusal is told to the user."""
    try:
        account.update_profile(runtime.engine(), user_id, field, value)
    except ShopError as refusal:
        reply(user_id, f"error.{refusal.code}", once_key=idempotency_key, **refusal.params)
        return refusal.to_dict()
    return {"status": "ok"}


@app.task(base=QuickCartTask, name="quickcart.export_user")
def export_user(user_id: int, idempotency_key: str) -> bool:
    """/export: the user's data as a JSON document, sent once."""
    engine = runtime.engine()
    if not notifications.claim_once(engine, idempotency_key, "export"):
        return False
    data = json.dumps(account.export_data(engine, user_id), ensure_ascii=False, indent=2)
    caption = render("account.export_caption", notifications.language_of(engine, user_id))
    try:
        runtime.messenger().send_document(user_id, f"quickcart-{user_id}.json",
                                          data.encode("utf-8"), caption)
    except Exception:
        notifications.unclaim(engine, idempotency_key)
        raise
    return True


@app.task(base=QuickCartTask, name="quickcart.cancel_deposit")
def cancel_deposit(user_id: int, invoice_id: str,
                   idempotency_key: str | None = None) -> dict[str, Any]:
    """The shopper cancels their own pending deposit (idempotent by state)."""
    from quickcart.services import payments
    from workers.publish import publish_committed_unsafe

    deposit_id = account.own_pending_deposit(runtime.engine(), user_id, invoice_id)
    if deposit_id is None:
        return {"status": "rejected", "error": "no_pending_order"}
    outcome = payments.expire_deposit(runtime.engine(), deposit_id, status="cancelled",
                                      reason="user")
    publish_committed_unsafe(outcome.outbox)
    return outcome.result


@app.task(base=QuickCartTask, name="quickcart.erase_user")
def erase_user(user_id: int, idempotency_key: str) -> dict[str, Any]:
    """/delete_me: anonymise the user, ship the audit rows that still name them, then blank
    those in the audit DB (idempotent: every step is)."""
    from quickcart.services.audit_shipping import ship_audit_batch

    engine = runtime.engine()
    changed = account.erase_personal_data(engine, user_id)
    while ship_audit_batch(engine, runtime.audit_engine(), limit=1000) >= 1000:
        pass
    blanked = account.anonymise_audit(runtime.audit_engine(), user_id)
    reply(user_id, N_("account.deleted"), once_key=f"{idempotency_key}:done")
    return {"changed": changed, "audit_rows": blanked}
