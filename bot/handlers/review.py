"""/review (the fraud review queue and its decision buttons) and /fraud (the risk settings).

`/review` lists the held items, each with approve / refund / keep buttons; `/review id|decision`
or `/review id|decision|reason` decides with a reason the shopper reads. `/fraud` shows the
settings, `/fraud name|value` changes one, `/fraud on|off` is the master switch. Each enqueues
one admin task, which answers.
"""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

from bot.handlers.audit import parsed_command
from bot.runtime import intent_key, rt, t, viewer

DECISIONS = ("approve", "refund", "keep")


def parse_review(text: str) -> tuple[int, str, str | None] | None:
    """`/review` → None; `/review id|decision[|reason]` → its parts; ValueError when malformed."""
    rest = text.partition(" ")[2].strip()
    if not rest:
        return None
    parts = [p.strip() for p in rest.split("|", 2)]
    if len(parts) < 2 or not parts[0].isdigit() or parts[1].lower() not in DECISIONS:
        raise ValueError("review takes id|approve, id|refund|reason or id|keep|reason")
    reason = parts[2] if len(parts) == 3 and parts[2] else None
    return int(parts[0]), parts[1].lower(), reason


def _review_task(text: str) -> tuple[str, dict[str, Any]]:
    parsed = parse_review(text)
    if parsed is None:
        return "quickcart.admin_review_list", {}
    review_id, decision, reason = parsed
    return "quickcart.admin_review_decide", {"review_id": review_id, "decision": decision,
                                             "reason": reason}


async def review_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/review [id|decision|reason]."""
    await parsed_command(update, context, "review", _review_task)


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """rv:<a|r|k>:<review id>: a decision button (a stale one answers with the item's state)."""
    query = update.callback_query
    assert query is not None
    if viewer(context).role != "admin":
        await query.answer(t(context, "error.unknown_command"))
        return
    parts = (query.data or "").split(":")
    code, raw_id = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
    if code not in ("a", "r", "k") or not raw_id.isdigit():
        await query.answer(t(context, "error.unknown_command"))
        return
    await query.answer(t(context, "admin.queued"))
    await rt(context).enqueue("quickcart.admin_review_decide", actor_id=viewer(context).user_id,
                              review_id=int(raw_id), decision=code,
                              idempotency_key=intent_key(update.update_id))


def parse_fraud(text: str) -> tuple[str | None, str | None]:
    """`/fraud` → (None, None); `/fraud on|off`; `/fraud name|value`; ValueError otherwise."""
    rest = text.partition(" ")[2].strip()
    if not rest:
        return None, None
    if rest.lower() in ("on", "off"):
        return "enabled", rest.lower()
    parts = [p.strip() for p in rest.split("|")]
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError("fraud takes name|value")
    return parts[0].lower(), parts[1]


def _fraud_task(text: str) -> tuple[str, dict[str, Any]]:
    name, value = parse_fraud(text)
    return "quickcart.admin_fraud_settings", {"name": name, "value": value}


async def fraud_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/fraud [name|value | on | off]."""
    await parsed_command(update, context, "fraud", _fraud_task)


#: The handlers of this module's commands and of /audit, registered before the generic admin
#: handlers (bot/app.py).
COMMANDS = {"review": review_command, "fraud": fraud_command}
