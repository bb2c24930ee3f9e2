"""After-sales intents: the admin's order lookup and its actions (re-send, re-check payment,
warranty replacement, refunds), the refund calculator, /setformula and /version.

Every answer goes to the asking chat at most once per intent (`once_key`); refusals
(ShopError) become the catalog's one polite line and change nothing. The services take the
locks and hold the idempotency (quickcart/services/refunds.py, warranty.py, order_tools.py).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

from quickcart.adapters import redis_store
from quickcart.adapters.rate_limit import SendClass, sending_as
from quickcart.adapters.telegram_api import TelegramForbidden, TelegramRetryAfter
from quickcart.domain.errors import ShopError
from quickcart.domain.refund_formula import Estimate
from quickcart.i18n import N_, format_datetime
from quickcart.messages import render
from quickcart.services import account, notifications, order_lookup, order_tools, refunds, warranty
from quickcart.services.order_lookup import OrderView, short_id
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe

Parts = list[tuple[str, dict[str, Any]]]
#: One inline button: (catalog key of its label, callback data, label parameters).
Button = tuple[str, str, dict[str, Any]]
WORKER_STARTED = time.time()


def answer(chat_id: int, parts: Parts, once_key: str,
           buttons: list[list[Button]] | None = None) -> None:
    """Queue an answer (catalog lines as one message, with inline buttons) on the notify
    queue: sent there at most once per `once_key`, and retried when Telegram's limits ask it
    to wait, without running the intent again."""
    send_after_sales_answer.apply_async(kwargs={
        "chat_id": chat_id, "parts": parts, "once_key": once_key, "buttons": buttons or []})


@app.task(base=QuickCartTask, bind=True, name="quickcart.send_after_sales_answer")
def send_after_sales_answer(self: Any, chat_id: int, parts: list[list[Any]], once_key: str,
                            buttons: list[list[list[Any]]] | None = None) -> bool:
    """An after-sales answer in the reader's language, at most once per `once_key` (claimed
    before the send, released if the send fails)."""
    engine = runtime.engine()
    if not notifications.claim_once(engine, once_key, "message"):
        return False
    lang = notifications.language_of(engine, chat_id)
    text = "\n".join(render(str(key), lang, **dict(params)) for key, params in parts)
    markup = {"inline_keyboard": [[{"text": render(str(key), lang, **dict(params)),
                                    "callback_data": data} for key, data, params in row]
                                  for row in buttons]} if buttons else None
    return _send_claimed(self, once_key, chat_id, text[:4000], markup)


def _send_claimed(task: Any, once_key: str, chat_id: int, text: str,
                  markup: dict[str, Any] | None = None) -> bool:
    """Send a message whose `once_key` the caller claimed: released when the send fails (a
    Telegram wait retries `task`); a chat that blocked the bot keeps it (nothing to retry)."""
    engine = runtime.engine()
    try:
        runtime.messenger().send_message(chat_id, text, reply_markup=markup)
    except TelegramRetryAfter as exc:
        notifications.unclaim(engine, once_key)
        raise task.retry(exc=exc, countdown=exc.retry_after) from exc
    except TelegramForbidden:
        return False
    except Exception:
        notifications.unclaim(engine, once_key)
        raise
    return True


def refused(chat_id: int, once_key: str, refusal: ShopError) -> dict[str, Any]:
    """Tell `chat_id` a refusal once (its catalog line) and return it as the intent's result."""
    answer(chat_id, [(f"error.{refusal.code}", refusal.params)], once_key)
    return refusal.to_dict()


def _guarded(chat_id: int, once_key: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `action`; a refusal is told to `chat_id` once and returned."""
    try:
        return action()
    except ShopError as refusal:
        return refused(chat_id, once_key, refusal)


def _done(idempotency_key: str, answer_key: str | None) -> str:
    """The once key of an action's answer: per press when the bot gave one (a press on a
    button that already acted hears the state), else per action."""
    return f"{answer_key or idempotency_key}:done"


def _when(value: datetime | None) -> str:
    return format_datetime(value) if value is not None else "-"


# ------------------------------------------------------------------ order lookup

def order_parts(view: OrderView) -> Parts:
    """The lookup's lines: user, lines, amounts, payment, status history, deliveries, refunds,
    warranty claims."""
    refunded = view.refunded
    parts: Parts = [(N_("aftersales.order_head"), {
        "invoice_id": view.invoice_id, "status": view.status, "user_id": view.user_id,
        "name": view.user_name, "username": view.username or "-"})]
    if refunded > 0:
        parts.append((N_("aftersales.refunded_full") if view.refundable == 0
                      else N_("aftersales.refunded_part"), {"amount": refunded}))
    parts += [(N_("aftersales.order_line"), {
        "n": i, "product": line.product_name, "product_id": line.product_id,
        "price": line.price_per_unit, "amount": line.paid, "unit": short_id(line.stock_id),
        "claims": line.claims}) for i, line in enumerate(view.lines, 1)]
    parts.append((N_("aftersales.order_money"), {
        "subtotal": view.subtotal, "voucher_discount": view.voucher_discount,
        "payment_fee": view.payment_fee, "total_bill": view.total_bill}))
    parts.append((N_("aftersales.order_payment"), {
        "method": view.payment_method, "invoice_id": view.invoice_id,
        "amount": view.amount_paid if view.amount_paid is not None else Decimal(0)}))
    parts.append((N_("aftersales.history_title"), {}))
    parts.append((N_("aftersales.history_created"), {"time": _when(view.created_at)}))
    if view.paid_at is not None:
        parts.append((N_("aftersales.history_paid"), {"time": _when(view.paid_at)}))
    if view.status in ("expired", "cancelled"):
        parts.append((N_("aftersales.history_closed"), {"time": _when(view.updated_at),
                                                          "status": view.status}))
    parts += [(N_("aftersales.history_event"), {"time": _when(e.received_at), "status": e.status,
                                                "outcome": e.outcome or "-"})
              for e in view.events]
    if view.late_credit is not None:
        parts.append((N_("aftersales.history_late"), {"amount": view.late_credit}))
    parts.append((N_("aftersales.deliveries"), {"count": view.delivery_count,
                                                "time": _when(view.delivered_at)}))
    parts += [(N_("aftersales.action_line"), {"time": _when(a.created_at), "kind": a.action,
                                              "actor_id": a.actor_id, "outcome": a.outcome or "-"})
              for a in view.actions]
    if view.refunds:
        parts.append((N_("aftersales.refunds_title"), {
            "amount": refunded, "total": view.paid_for_goods, "max": view.refundable}))
        parts += [(N_("aftersales.refund_line"), {
            "refund_id": r.id, "amount": r.amount, "status": r.status,
            "time": _when(r.decided_at or r.created_at)}) for r in view.refunds]
    if view.claims:
        parts.append((N_("aftersales.claims_title"), {}))
        parts += [(N_("aftersales.claim_line"), {
            "claim_id": c.id, "old": short_id(c.old_stock_id),
            "new": short_id(c.new_stock_id) if c.new_stock_id else "-", "status": c.status,
            "time": _when(c.created_at)}) for c in view.claims]
    return parts


def order_buttons(view: OrderView) -> list[list[Button]]:
    """The lookup's actions: what applies to the order's state (no button marks it paid)."""
    oid = view.order_id
    rows: list[list[Button]] = []
    if view.status == "paid":
        rows.append([(N_("button.as_resend"), f"ao:rs:{oid}", {}),
                     (N_("button.as_warranty"), f"ao:w:{oid}", {})])
        if view.refundable > 0:
            rows.append([(N_("button.as_refund"), f"ao:rc:{oid}", {})])
    elif view.payment_method == "qris":
        rows.append([(N_("button.as_recheck"), f"ao:pc:{oid}", {})])
    return rows


def show_order(chat_id: int, order_id: int, once_key: str,
               others_of: int | None = None) -> dict[str, Any]:
    """Send the lookup of one order (and, for `/order <user id>`, buttons to their others)."""
    engine = runtime.engine()
    view = order_lookup.order_view(engine, order_id)
    if view is None:
        raise ShopError("order_not_found")
    buttons = order_buttons(view)
    if others_of is not None:
        others = [r for r in order_lookup.recent_orders(engine, others_of) if r.id != order_id]
        buttons += [[(N_("button.as_view_order"), f"ao:v:{r.id}",
                      {"invoice_id": r.invoice_id, "status": r.status})] for r in others]
    answer(chat_id, order_parts(view), once_key, buttons)
    return {"status": "ok", "order_id": order_id, "invoice_id": view.invoice_id}


@app.task(base=QuickCartTask, name="quickcart.admin_order_lookup")
def admin_order_lookup(actor_id: int, idempotency_key: str, reference: str | None = None,
                       order_id: int | None = None) -> dict[str, Any]:
    """/order INV… | /order <user id>, or a lookup button (`order_id`)."""
    def act() -> dict[str, Any]:
        engine = runtime.engine()
        if not order_lookup.is_admin(engine, actor_id):
            raise ShopError("not_admin")
        others_of = None
        target = order_id
        if target is None:
            parsed = order_lookup.parse_reference(reference or "")
            if parsed is None:
                raise ShopError("order_not_found")
            target = order_lookup.find_order(engine, parsed)
            others_of = int(parsed[1]) if parsed[0] == "user" else None
        if target is None:
            raise ShopError("order_not_found")
        return show_order(actor_id, target, idempotency_key, others_of)
    return _guarded(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_resend_delivery")
def admin_resend_delivery(actor_id: int, order_id: int, idempotency_key: str,
                          answer_key: str | None = None) -> dict[str, Any]:
    """🔁 Re-send: the same units again, recorded once per press."""
    def act() -> dict[str, Any]:
        outcome = order_tools.resend_delivery(runtime.engine(), actor_id, order_id,
                                              idempotency_key)
        publish_committed_unsafe(outcome.outbox)
        key = N_("aftersales.resend_queued") if outcome.result["status"] == "queued" \
            else N_("aftersales.resend_duplicate")
        answer(actor_id, [(key, {"invoice_id": outcome.result["invoice_id"]})],
               _done(idempotency_key, answer_key))
        return outcome.result
    return _guarded(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_recheck_payment")
def admin_recheck_payment(actor_id: int, order_id: int, idempotency_key: str,
                          answer_key: str | None = None) -> dict[str, Any]:
    """🔎 Re-check: the gateway's word, applied through the webhook's path (payments queue)."""
    def act() -> dict[str, Any]:
        outcome = order_tools.recheck_payment(runtime.engine(), runtime.gateway(), actor_id,
                                              order_id, idempotency_key)
        publish_committed_unsafe(outcome.outbox)
        redis_store.invalidate(runtime.redis_client(), redis_store.stats_transactions_key())
        result = outcome.result
        known = {"paid", "already_paid", "not_paid", "credited_late", "already_credited"}
        state = result.get("outcome") if result.get("outcome") in known else "other"
        lines: Parts = [(f"aftersales.recheck_{state}", {"invoice_id": result["invoice_id"],
                                                         "outcome": result.get("outcome")})]
        answer(actor_id, lines, _done(idempotency_key, answer_key),
               [[(N_("button.as_open_order"), f"ao:v:{order_id}",
                  {"invoice_id": result["invoice_id"]})]])
        return result
    return _guarded(actor_id, idempotency_key, act)


# ------------------------------------------------------------------ warranty

@app.task(base=QuickCartTask, name="quickcart.admin_warranty_units")
def admin_warranty_units(actor_id: int, order_id: int, idempotency_key: str) -> dict[str, Any]:
    """🛠 Warranty: the order's delivered units as buttons, one to replace each."""
    def act() -> dict[str, Any]:
        engine = runtime.engine()
        if not order_lookup.is_admin(engine, actor_id):
            raise ShopError("not_admin")
        view = order_lookup.order_view(engine, order_id)
        if view is None:
            raise ShopError("order_not_found")
        if view.status != "paid":
            raise ShopError("order_not_paid", invoice_id=view.invoice_id)
        if view.delivered_at is None:
            raise ShopError("order_not_delivered", invoice_id=view.invoice_id)
        buttons = [[(N_("button.as_replace_unit"), f"ao:wu:{line.item_id}",
                     {"n": i, "product": line.product_name, "unit": short_id(line.stock_id),
                      "claims": line.claims})] for i, line in enumerate(view.lines, 1)]
        answer(actor_id, [(N_("warranty.pick"), {"invoice_id": view.invoice_id})],
               idempotency_key, buttons)
        return {"status": "ok", "units": len(view.lines)}
    return _guarded(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_replace_unit")
def admin_replace_unit(actor_id: int, order_item_id: int, idempotency_key: str,
                       ticket_id: int | None = None,
                       answer_key: str | None = None) -> dict[str, Any]:
    """Replace one delivered unit from free stock (orders queue: it hands out stock like a sale)."""
    def act() -> dict[str, Any]:
        outcome = warranty.replace_unit(runtime.engine(), actor_id, order_item_id,
                                        idempotency_key, ticket_id)
        result = outcome.result
        stale = redis_store.stock_count_keys([result["product_id"]]) \
            if result.get("status") == "replaced" else []
        publish_committed_unsafe(outcome.outbox, drop_cache_keys=stale)
        if result.get("status") == "replaced":
            answer(actor_id, [(N_("warranty.replaced_admin"), result)],
                   _done(idempotency_key, answer_key))
        else:
            answer(actor_id, [(N_("warranty.open_admin"), result)],
                   _done(idempotency_key, answer_key),
                   [[(N_("button.as_refund"), f"ao:rc:{result['order_id']}", {})]])
        return result
    return _guarded(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, bind=True, name="quickcart.deliver_replacement")
def deliver_replacement(self: Any, claim_id: int, outbox_id: int | None = None) -> bool:
    """The buyer's replacement unit, sent at most once per outbox row."""
    engine = runtime.engine()
    view = warranty.replacement_view(engine, claim_id)
    if view is None:
        return False
    once = f"outbox:{outbox_id}" if outbox_id else f"warranty:{claim_id}"
    if not notifications.claim_once(engine, once, "message"):
        return False
    text = render("warranty.delivery", notifications.language_of(engine, view.user_id),
                  invoice_id=view.invoice_id, product_names=view.name, contents=view.content)
    # Goods the buyer is owed go first; a buyer who blocked the bot still sees the
    # replacement in the lookup.
    with sending_as(SendClass.DELIVERY):
        return _send_claimed(self, once, view.user_id, text)


# ------------------------------------------------------------------ refunds

def estimate_parts(line: Estimate) -> Parts:
    """One estimate: the inputs, the multiplier and why, and "Refund: Rp…"."""
    return [(N_("refund.estimate_inputs"), {"price": line.price, "days": line.days_used,
                                            "period": line.period_days, "claims": line.claims}),
            (N_("refund.estimate_multiplier"), {"multiplier": str(line.multiplier),
                                                "rule": f"refund.rule_{line.rule}"}),
            (N_("refund.estimate_result"), {"amount": line.amount})]


def _with_rule_text(parts: Parts, lang_of: int) -> Parts:
    """Render the rule's own key in the reader's language into its line's parameter."""
    lang = notifications.language_of(runtime.engine(), lang_of)
    return [(key, {**params, "rule": render(params["rule"], lang)} if "rule" in params
             else params) for key, params in parts]


@app.task(base=QuickCartTask, name="quickcart.refund_estimate")
def refund_estimate(viewer_id: int, idempotency_key: str, invoice_id: str | None = None,
                    order_id: int | None = None, price: str | None = None,
                    days_used: str | None = None, claims: str | None = None) -> dict[str, Any]:
    """/refund INV… (/reff): a shopper's own invoice, an admin's any (with a refund button);
    /reff price|days|claims (admins): the formula alone."""
    def act() -> dict[str, Any]:
        engine = runtime.engine()
        admin = order_lookup.is_admin(engine, viewer_id)
        if price is not None:
            if not admin:
                raise ShopError("not_admin")
            line = refunds.manual_estimate(engine, price, days_used or "", claims or "")
            answer(viewer_id, _with_rule_text(
                [(N_("refund.estimate_manual"), {}), *estimate_parts(line)], viewer_id),
                idempotency_key)
            return {"status": "ok", "amount": str(line.amount)}
        target = order_id
        if target is None and invoice_id:
            target = order_lookup.find_order(engine, ("invoice", invoice_id.upper())) if admin \
                else account.own_order_id(engine, viewer_id, invoice_id)
        if target is None:
            raise ShopError("order_not_found")
        found = refunds.order_estimate(engine, target)
        parts: Parts = [(N_("refund.estimate_order"), {"invoice_id": found.invoice_id})]
        for i, line in enumerate(found.lines, 1):
            if len(found.lines) > 1:
                parts.append((N_("refund.estimate_line_no"), {"n": i}))
            parts += estimate_parts(line)
        parts.append((N_("refund.estimate_left"), {"amount": found.suggested,
                                                   "total": found.refunded,
                                                   "max": found.refundable}))
        buttons = [[(N_("button.as_refund_amount"), f"rf:p:{target}:{int(found.suggested)}",
                     {"amount": found.suggested})]] if admin and found.suggested > 0 else None
        answer(viewer_id, _with_rule_text(parts, viewer_id), idempotency_key, buttons)
        return {"status": "ok", "amount": str(found.suggested)}
    return _guarded(viewer_id, idempotency_key, act)


def _proposal(actor_id: int, result: dict[str, Any], once_key: str) -> None:
    answer(actor_id, [(N_("refund.proposed"), result)], once_key,
           [[(N_("button.as_confirm_refund"), f"rf:ok:{result['refund_id']}",
              {"amount": result["amount"]}),
             (N_("button.as_cancel_refund"), f"rf:no:{result['refund_id']}", {})]])


@app.task(base=QuickCartTask, name="quickcart.admin_propose_refund")
def admin_propose_refund(actor_id: int, idempotency_key: str, amount: str,
                         order_id: int | None = None, invoice_id: str | None = None,
                         answer_key: str | None = None) -> dict[str, Any]:
    """/refund INV…|amount, or the calculator's button: a proposal to confirm with a button."""
    def act() -> dict[str, Any]:
        engine = runtime.engine()
        target = order_id if order_id is not None else order_lookup.find_order(
            engine, ("invoice", (invoice_id or "").upper()))
        if target is None:
            raise ShopError("order_not_found")
        outcome = refunds.propose(engine, actor_id, target, amount, idempotency_key)
        _proposal(actor_id, outcome.result, _done(idempotency_key, answer_key))
        return outcome.result
    return _guarded(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_confirm_refund")
def admin_confirm_refund(actor_id: int, refund_id: int, idempotency_key: str,
                         answer_key: str | None = None) -> dict[str, Any]:
    """✅ on a proposal: the ledger credit, once (a second press hears the state)."""
    def act() -> dict[str, Any]:
        outcome = refunds.confirm(runtime.engine(), actor_id, refund_id)
        publish_committed_unsafe(outcome.outbox)
        result = outcome.result
        key = N_("refund.admin_paid") if result["changed"] else f"refund.state_{result['status']}"
        answer(actor_id, [(key, result)], _done(idempotency_key, answer_key))
        return result
    return _guarded(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_cancel_refund")
def admin_cancel_refund(actor_id: int, refund_id: int, idempotency_key: str,
                        answer_key: str | None = None) -> dict[str, Any]:
    """✖️ on a proposal: dropped, unless it was paid already."""
    def act() -> dict[str, Any]:
        result = refunds.cancel(runtime.engine(), actor_id, refund_id).result
        key = N_("refund.admin_cancelled") if result["changed"] \
            else f"refund.state_{result['status']}"
        answer(actor_id, [(key, result)], _done(idempotency_key, answer_key))
        return result
    return _guarded(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_set_formula")
def admin_set_formula(actor_id: int, idempotency_key: str, name: str | None = None,
                      value: str | None = None) -> dict[str, Any]:
    """/setformula (show) or /setformula name|value (change, audited with before/after)."""
    def act() -> dict[str, Any]:
        engine = runtime.engine()
        if not order_lookup.is_admin(engine, actor_id):
            raise ShopError("not_admin")
        parts: Parts = []
        if name is not None:
            before, after = refunds.set_formula(engine, actor_id, name, value or "")
            column = refunds.SETTINGS[name.strip().lower()]
            parts.append((N_("refund.formula_changed"), {
                "name": name.strip().lower(), "before": str(getattr(before, column)),
                "after": str(getattr(after, column))}))
        formula = refunds.current_formula(engine)
        parts.append((N_("refund.formula"), {
            "period": formula.period_days, "early": str(formula.early),
            "late": str(formula.late), "claims12": str(formula.claims_1_2),
            "claims3": str(formula.claims_3), "claims4": str(formula.claims_more)}))
        answer(actor_id, parts, idempotency_key)
        return {"status": "ok"}
    return _guarded(actor_id, idempotency_key, act)


# ------------------------------------------------------------------ version

def _commit() -> str:
    """The git commit of the running code, when it runs from a checkout ("-" otherwise)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False,
                             cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.SubprocessError):
        return "-"
    return out.stdout.strip() or "-"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


@app.task(base=QuickCartTask, name="quickcart.admin_version")
def admin_version(actor_id: int, idempotency_key: str,
                  bot_started_at: float | None = None) -> dict[str, Any]:
    """/version: the running version, git commit, uptime of the bot and of every worker."""
    def act() -> dict[str, Any]:
        if not order_lookup.is_admin(runtime.engine(), actor_id):
            raise ShopError("not_admin")
        try:
            version = metadata.version("quickcart")
        except metadata.PackageNotFoundError:
            version = "-"
        now = time.time()
        stats = app.control.inspect(timeout=1.0).stats() or {}
        parts: Parts = [(N_("admin.version"), {
            "version": version, "commit": _commit(),
            "bot_uptime": _duration(now - bot_started_at) if bot_started_at else "-",
            "worker_uptime": _duration(now - WORKER_STARTED)})]
        parts += [(N_("admin.version_worker"), {"name": name,
                                                "uptime": _duration(float(s.get("uptime", 0)))})
                  for name, s in sorted(stats.items())]
        answer(actor_id, parts, idempotency_key)
        return {"status": "ok", "version": version, "workers": len(stats)}
    return _guarded(actor_id, idempotency_key, act)
