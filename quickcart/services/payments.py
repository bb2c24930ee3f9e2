"""QRIS payments for orders and deposits: start with the gateway, confirm, credit late payers.

The gateway is called with no lock held and no transaction open; what it said is then applied
under the locks (user → order/deposit), where the "already done?" check makes every step safe to
run any number of times.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Engine, Row, text
from sqlalchemy.orm import Session

from quickcart.config import get_settings
from quickcart.db import idempotency, locks
from quickcart.db.sql import Record
from quickcart.db.uow import unit_of_work
from quickcart.domain.codes import new_invoice_id
from quickcart.domain.errors import ShopError
from quickcart.domain.money import qris_fee, rupiah
from quickcart.i18n import N_
from quickcart.services import fraud, orders, topics
from quickcart.services.effects import Effects
from quickcart.services.ledger import ledger_has, move_balance
from quickcart.services.orders import Outcome

log = logging.getLogger(__name__)

MIN_DEPOSIT = Decimal("10000")
MAX_DEPOSIT = Decimal("10000000")
TABLES = {"order": "orders", "deposit": "deposits"}


class GatewayPayment(Protocol):
    """What the gateway answers to a QRIS create."""

    @property
    def fee(self) -> Decimal:
        """The gateway's fee (authoritative)."""

    @property
    def payment_number(self) -> str:
        """The QRIS payload."""


class GatewayTransaction(Protocol):
    """What the gateway answers to a status query."""

    @property
    def status(self) -> str:
        """pending / completed / expired / canceled."""

    @property
    def is_completed(self) -> bool:
        """Whether the money arrived."""


class PaymentGateway(Protocol):
    """The port the Pakasir client implements (quickcart.adapters.pakasir.PakasirClient)."""

    def create_qris(self, order_id: str, amount: Decimal) -> GatewayPayment:
        """Open a QRIS transaction for `amount` (before the gateway's fee)."""

    def transaction_detail(self, order_id: str, amount: Decimal) -> GatewayTransaction:
        """The gateway's own word on a transaction."""

    def cancel(self, order_id: str, amount: Decimal) -> None:
        """Close a transaction nobody will pay."""


def _payable(row: Record) -> Decimal:
    """The amount sent to the gateway: the bill before the gateway's fee."""
    return Decimal(row.total_bill - row.payment_fee)


def find_invoice(engine: Engine, invoice_id: str) -> tuple[str, Row[Any]] | None:
    """Which order or deposit an invoice id names; locks nothing."""
    with engine.connect() as conn:
        for kind, table in TABLES.items():
            row = conn.execute(text(f"SELECT * FROM {table} WHERE invoice_id = :i"),
                               {"i": invoice_id}).first()
            if row is not None:
                return kind, row
    return None


def _lock(session: Session, kind: str, row_id: int) -> Record | None:
    return (locks.lock_order if kind == "order" else locks.lock_deposit)(session, row_id)


def start_qris_payment(engine: Engine, gateway: PaymentGateway, kind: str, row_id: int,
                       unavailable: tuple[type[BaseException], ...] = ()) -> Outcome:
    """Open the gateway transaction of a pending order/deposit and queue its QR photo.

    Idempotent: a row that already has its QR, or is no longer pending, is left alone. When the
    gateway is unavailable (`unavailable` errors), the order is cancelled — nothing stays stuck —
    and the shopper and admins are told.
    """
    table = TABLES[kind]
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT * FROM {table} WHERE id = :i"), {"i": row_id}).first()
    if row is None or row.status != "pending" or row.payment_number is not None:
        return Outcome({"outcome": "nothing_to_do"})
    try:
        payment = gateway.create_qris(row.invoice_id, _payable(row))
    except unavailable as exc:
        log.warning("gateway unavailable for %s %s: %s", kind, row.invoice_id, type(exc).__name__)
        return _abandon(engine, kind, row, "gateway_unavailable")
    with unit_of_work(engine) as uow:
        session = uow.session
        locks.lock_user(session, row.user_id)
        current = _lock(session, kind, row_id)
        assert current is not None
        effects = Effects(session)
        if current.status != "pending" or current.payment_number is not None:
            if current.payment_number is None:
                effects.add(topics.CANCEL_GATEWAY, {"invoice_id": row.invoice_id,
                                                    "amount": str(_payable(row))})
            uow.commit()
            return Outcome({"outcome": "no_longer_pending"}, effects.messages)
        payable = _payable(current)
        fee = Decimal(payment.fee)
        estimate = current.payment_fee
        session.execute(
            text(f"UPDATE {table} SET payment_fee = :fee, total_bill = :total,"
                 " fee_estimate = :est, payment_number = :qr WHERE id = :i"),
            {"fee": fee, "total": payable + fee, "est": estimate, "qr": payment.payment_number,
             "i": row_id},
        )
        if fee != estimate:
            log.info("gateway fee %s differs from estimate %s for %s", fee, estimate,
                     row.invoice_id)
        effects.add(topics.SEND_PAYMENT_QR, {"kind": kind, "id": row_id})
        uow.commit()
        return Outcome({"outcome": "qr_ready", "total": str(payable + fee)}, effects.messages)


def _abandon(engine: Engine, kind: str, row: Record, reason: str) -> Outcome:
    """Cancel a pending row whose payment could not start, telling shopper and admins."""
    if kind == "order":
        outcome = orders.expire_order(engine, row.id, status="cancelled", reason=reason)
    else:
        outcome = expire_deposit(engine, row.id, status="cancelled", reason=reason)
    with unit_of_work(engine) as uow:
        effects = Effects(uow.session)
        effects.admins("admin.gateway_unavailable", invoice_id=row.invoice_id)
        uow.commit()
    return Outcome({"outcome": reason, **outcome.result}, outcome.outbox + effects.messages)


def confirm_payment(engine: Engine, gateway: PaymentGateway, invoice_id: str,
                    event_id: int | None = None, actor_id: int | None = None) -> Outcome:
    """Apply a payment the gateway itself confirms. Locks: user → order/deposit.

    A webhook is only a hint (Pakasir does not sign them): nothing is paid unless
    `transaction_detail` says completed. Under the lock: pending → paid (once); already paid →
    nothing; expired/cancelled → the amount paid minus the gateway fee is credited to the buyer's
    balance, once (the ledger's unique reference), and buyer and admins are told.
    """
    found = find_invoice(engine, invoice_id)
    if found is None:
        return _finish_event(engine, event_id, "unknown_invoice")
    kind, row = found
    if row.status == "paid":
        return _finish_event(engine, event_id, "already_paid")
    transaction = gateway.transaction_detail(invoice_id, _payable(row))
    if not transaction.is_completed:
        return _finish_event(engine, event_id, "not_paid")
    now = datetime.now(UTC)
    with unit_of_work(engine) as uow:
        # An admin's "re-check payment" (`actor_id`) takes this very path: the audit names them.
        uow.set_actor(actor_id, "admin" if actor_id is not None else "system",
                      {"gateway": "pakasir", "invoice_id": invoice_id})
        session = uow.session
        locks.lock_user(session, row.user_id)
        current = _lock(session, kind, row.id)
        assert current is not None
        effects = Effects(session)
        if current.status == "pending":
            # Risk rules again, now that the money is here: a held deposit waits uncredited,
            # a held order is settled but not delivered (quickcart/services/fraud.py).
            held = fraud.screen_payment(session, effects, kind, current).held
            if kind == "order":
                orders.settle_paid(session, effects, current, now, amount_paid=current.total_bill)
            else:
                _settle_deposit(session, effects, current, now, credit=not held)
            outcome = "held" if held else "paid"
        elif current.status == "paid":
            outcome = "already_paid"
        else:
            outcome = _credit_late(session, effects, kind, current)
        _mark_event(session, event_id, outcome)
        uow.commit()
        return Outcome({"outcome": outcome, "invoice_id": invoice_id, "kind": kind},
                       effects.messages)


def _credit_late(session: Session, effects: Effects, kind: str, row: Record) -> str:
    """Money arrived for an expired/cancelled row: credit it to the balance, exactly once."""
    if ledger_has(session, "late_payment", kind, row.invoice_id):
        return "already_credited"
    amount = _payable(row)
    move_balance(session, row.user_id, amount, "late_payment", kind, row.invoice_id,
                 note=f"paid after {row.status}")
    effects.message(row.user_id, "payment.late_credited", invoice_id=row.invoice_id,
                    amount=str(amount))
    effects.admins("admin.late_payment", invoice_id=row.invoice_id, user_id=row.user_id,
                   amount=str(amount))
    return "credited_late"


def _finish_event(engine: Engine, event_id: int | None, outcome: str) -> Outcome:
    if event_id is not None:
        with unit_of_work(engine) as uow:
            _mark_event(uow.session, event_id, outcome)
            uow.commit()
    return Outcome({"outcome": outcome})


def _mark_event(session: Session, event_id: int | None, outcome: str) -> None:
    if event_id is not None:
        session.execute(
            text("UPDATE payment_events SET processed_at = coalesce(processed_at, now()),"
                 " outcome = coalesce(outcome, :o) WHERE id = :i"),
            {"o": outcome, "i": event_id},
        )


# ------------------------------------------------------------------------------- deposits

def create_deposit(engine: Engine, user_id: int, amount: Decimal | int | str,
                   idempotency_key: str) -> Outcome:
    """Open a QRIS top-up (one pending per user). Locks: user. Idempotent by intent key."""
    try:
        value = rupiah(amount)
        if not MIN_DEPOSIT <= value <= MAX_DEPOSIT:
            raise ShopError("deposit_amount_range", min=str(MIN_DEPOSIT), max=str(MAX_DEPOSIT))
        with unit_of_work(engine) as uow:
            uow.set_actor(user_id, "user", {"intent": idempotency_key})
            session = uow.session
            prior = idempotency.claim(session, idempotency_key, "create_deposit")
            if prior is not None:
                return Outcome(prior)
            user = locks.lock_user(session, user_id)
            if user is None:
                raise ShopError("user_not_registered")
            if user.is_banned:
                raise ShopError("user_banned")
            pending = session.execute(
                text("SELECT invoice_id FROM deposits WHERE user_id = :u AND status = 'pending'"),
                {"u": user_id}).scalar()
            if pending is not None:
                raise ShopError("pending_deposit_exists", invoice_id=pending)
            fraud.screen(session, user_id, value, kind="deposit")  # block refuses here
            now = datetime.now(UTC)
            expires = now + timedelta(minutes=get_settings().order_expiry_minutes)
            fee = qris_fee(value)
            dep = session.execute(
                text("INSERT INTO deposits (invoice_id, user_id, amount, payment_fee, total_bill,"
                     " expires_at, fee_estimate) VALUES (:i, :u, :a, :f, :t, :e, :f)"
                     " RETURNING id, invoice_id"),
                {"i": new_invoice_id("DP", now), "u": user_id, "a": value, "f": fee,
                 "t": value + fee, "e": expires},
            ).one()
            effects = Effects(session)
            effects.add(topics.START_QRIS, {"kind": "deposit", "id": dep.id})
            effects.schedule_expiry("deposit", dep.id, expires)
            result = {"status": "pending", "deposit_id": dep.id, "invoice_id": dep.invoice_id,
                      "amount": str(value), "payment_fee": str(fee),
                      "total_bill": str(value + fee), "expires_at": expires.isoformat()}
            idempotency.record(session, idempotency_key, result)
            uow.commit()
            return Outcome(result, effects.messages)
    except ShopError as refusal:
        return orders.reject(engine, user_id, idempotency_key, "create_deposit", refusal)


def _settle_deposit(session: Session, effects: Effects, dep: Record, now: datetime,
                    credit: bool = True) -> None:
    """Pending deposit paid: credit its amount (the fee went to the gateway), once; with
    `credit` False (held for review) the credit waits for the admins' decision."""
    session.execute(
        text("UPDATE deposits SET status = 'paid', paid_at = :now, amount_paid = total_bill,"
             " payment_number = NULL WHERE id = :i"), {"now": now, "i": dep.id},
    )
    if not credit:
        effects.add(topics.UPDATE_PAYMENT_QR, {"kind": "deposit", "id": dep.id, "state": "paid"})
        return
    balance = move_balance(session, dep.user_id, Decimal(dep.amount), "deposit", "deposit",
                           dep.invoice_id)
    effects.add(topics.UPDATE_PAYMENT_QR, {"kind": "deposit", "id": dep.id, "state": "paid"})
    effects.message(dep.user_id, "deposit.paid", invoice_id=dep.invoice_id,
                    amount=str(dep.amount), balance=str(balance))
    effects.admins("admin.deposit_paid", invoice_id=dep.invoice_id, user_id=dep.user_id,
                   amount=str(dep.amount))


def expire_deposit(engine: Engine, deposit_id: int, status: str = "expired",
                   reason: str = "expired", now: datetime | None = None,
                   force: bool = False) -> Outcome:
    """Expire (when due) or cancel a pending deposit. Locks: user → deposit. Idempotent by state."""
    now = now or datetime.now(UTC)
    with unit_of_work(engine) as uow:
        uow.set_actor(None, "system", {"reason": reason})
        session = uow.session
        user_id = session.execute(text("SELECT user_id FROM deposits WHERE id = :i"),
                                  {"i": deposit_id}).scalar()
        if user_id is None:
            return Outcome({"status": "unknown", "changed": False})
        locks.lock_user(session, user_id)
        dep = locks.lock_deposit(session, deposit_id)
        assert dep is not None
        if dep.status != "pending" or (status == "expired" and dep.expires_at > now
                                       and not force):
            return Outcome({"status": dep.status, "changed": False})
        effects = Effects(session)
        session.execute(text("UPDATE deposits SET status = :s, payment_number = NULL"
                             " WHERE id = :i"), {"s": status, "i": deposit_id})
        effects.add(topics.UPDATE_PAYMENT_QR,
                    {"kind": "deposit", "id": deposit_id, "state": status})
        if dep.payment_number is not None:
            effects.add(topics.CANCEL_GATEWAY, {"invoice_id": dep.invoice_id,
                                                "amount": str(dep.amount)})
        key = N_("error.payments_unavailable") if reason == "gateway_unavailable" else \
            f"deposit.{status}"
        effects.message(dep.user_id, key, invoice_id=dep.invoice_id)
        uow.commit()
        return Outcome({"status": status, "changed": True}, effects.messages)


#: Pending deposits expired by `:now` (idx_deposits_pending_expires_at): what the expiry sweep
#: (`due_deposits`) expires, and what beat's check (quickcart.services.housekeeping) asks about.
DUE_DEPOSITS = "FROM deposits WHERE status = 'pending' AND expires_at <= :now"


def due_deposits(engine: Engine, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Pending deposits past their expiry; locks nothing."""
    with engine.connect() as conn:
        return list(conn.execute(
            text("SELECT id " + DUE_DEPOSITS + " ORDER BY expires_at LIMIT :n"),
            {"now": now or datetime.now(UTC), "n": limit},
        ).scalars())


# What reconciliation looks at, rows pending for `:s` seconds: orders and deposits with a QR
# (`pending_for_reconciliation` asks the gateway about them) and QRIS ones whose QR was never
# created (`pending_without_qr` starts them again). RECONCILABLE lists all four for beat's check
# (quickcart.services.housekeeping).
ORDERS_WITH_QR = ("FROM orders WHERE status = 'pending' AND payment_number IS NOT NULL"
                  " AND created_at <= now() - make_interval(secs => :s)")
DEPOSITS_WITH_QR = ("FROM deposits WHERE status = 'pending' AND payment_number IS NOT NULL"
                    " AND created_at <= now() - make_interval(secs => :s)")
ORDERS_WITHOUT_QR = ("FROM orders WHERE status = 'pending' AND payment_method = 'qris'"
                     " AND payment_number IS NULL"
                     " AND created_at <= now() - make_interval(secs => :s)")
DEPOSITS_WITHOUT_QR = ("FROM deposits WHERE status = 'pending' AND payment_number IS NULL"
                       " AND created_at <= now() - make_interval(secs => :s)")
RECONCILABLE = (ORDERS_WITH_QR, DEPOSITS_WITH_QR, ORDERS_WITHOUT_QR, DEPOSITS_WITHOUT_QR)


def pending_for_reconciliation(engine: Engine, older_than_seconds: int = 60,
                               limit: int = 200) -> list[str]:
    """Invoices of pending QRIS orders/deposits older than a minute (lost-webhook backstop)."""
    with engine.connect() as conn:
        return list(conn.execute(
            text("SELECT invoice_id " + ORDERS_WITH_QR +
                 " UNION ALL SELECT invoice_id " + DEPOSITS_WITH_QR + " LIMIT :n"),
            {"s": older_than_seconds, "n": limit},
        ).scalars())


def reconcile(engine: Engine, gateway: PaymentGateway, invoice_id: str) -> Outcome:
    """Ask the gateway about one pending invoice: completed → confirm (a lost webhook);
    expired/canceled there → expire ours. Locks only inside the services it calls."""
    found = find_invoice(engine, invoice_id)
    if found is None or found[1].status != "pending":
        return Outcome({"outcome": "nothing_to_do"})
    kind, row = found
    transaction = gateway.transaction_detail(invoice_id, _payable(row))
    if transaction.is_completed:
        return confirm_payment(engine, gateway, invoice_id)
    if transaction.status in ("expired", "canceled", "cancelled"):
        if kind == "order":
            return orders.expire_order(engine, row.id, force=True, reason="gateway_expired")
        return expire_deposit(engine, row.id, force=True, reason="gateway_expired")
    return Outcome({"outcome": "still_pending"})


def pending_without_qr(engine: Engine, older_than_seconds: int = 30,
                       limit: int = 200) -> list[tuple[str, int]]:
    """Pending QRIS orders/deposits whose QR was never created (its start message was lost,
    e.g. with a Redis restart); locks nothing. Starting again is idempotent."""
    with engine.connect() as conn:
        return [(r.kind, r.id) for r in conn.execute(
            text("SELECT 'order' AS kind, id " + ORDERS_WITHOUT_QR +
                 " UNION ALL SELECT 'deposit', id " + DEPOSITS_WITHOUT_QR + " LIMIT :n"),
            {"s": older_than_seconds, "n": limit})]
