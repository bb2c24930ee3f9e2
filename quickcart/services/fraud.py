"""Anti-fraud: risk rules scored when an order or deposit is created and when its payment is
confirmed, in the transaction of that effect, under the user's row lock.

The rules read the settings, then the user's row and the user's paid orders and deposits in a
time window (index range scans on idx_orders_user_paid / idx_deposits_user_paid) in one
statement. The caller holds the user lock (locks.lock_user), so every concurrent payment of
this user is either committed (and counted) or still waiting behind us: 20 parallel payments
cannot all see "no payment in the last hour".

Outcome: the rules' scores add up (capped at 100) into a band (block / review / flag / pass),
and the outcome is the stricter of the band and the fired rules' own actions. Block before
payment refuses; review (and block after the money arrived) holds the order's delivery or the
deposit's credit in the review queue (quickcart/services/review.py); flag only records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from quickcart.db.sql import Tx, run
from quickcart.domain.errors import ShopError
from quickcart.domain.periods import same_shop_day
from quickcart.services import fraud_settings
from quickcart.services.effects import Effects
from quickcart.services.fraud_settings import ACTIONS, DEFAULTS, merged

SCORE_CAP = 100
RANK = {action: rank for rank, action in enumerate(ACTIONS)}


@dataclass(frozen=True)
class Facts:
    """What the rules look at: this payment and the user's recent paid history before it."""

    amount: Decimal
    #: money coming from outside (QRIS order, deposit), as opposed to spending the balance
    external: bool
    #: paid orders and deposits in the velocity window, this one excluded
    payments: int
    #: of those, in the structuring window, under the structuring threshold
    small_payments: int
    #: external money paid in the amount window, this one excluded
    paid_amount: Decimal
    account_age: timedelta
    #: promoted from customer to reseller on today's date (Asia/Jakarta)
    reseller_today: bool


@dataclass(frozen=True)
class Fired:
    """One rule that fired: its name, score and own action."""

    rule: str
    score: int
    action: str


@dataclass(frozen=True)
class Assessment:
    """The rules' verdict on one payment."""

    score: int
    outcome: str
    fired: tuple[Fired, ...] = field(default=())

    @property
    def rules(self) -> list[dict[str, Any]]:
        """JSON-ready list of the fired rules."""
        return [{"rule": f.rule, "score": f.score, "action": f.action} for f in self.fired]

    @property
    def held(self) -> bool:
        """Whether a payment with this verdict is held for a human (review or block)."""
        return self.outcome in ("review", "block")


def band(score: int, settings: dict[str, str]) -> str:
    """The band of a total score."""
    if score >= int(settings["band_block"]):
        return "block"
    if score >= int(settings["band_review"]):
        return "review"
    if score >= int(settings["band_flag"]):
        return "flag"
    return "pass"


def stricter(a: str, b: str) -> str:
    """The stricter of two outcomes."""
    return a if RANK[a] >= RANK[b] else b


def evaluate(facts: Facts, settings: dict[str, str] | None = None) -> Assessment:
    """Score `facts` against the rules (pure: no I/O)."""
    s = merged(settings) if settings is None or settings.keys() != DEFAULTS.keys() else settings
    if s["enabled"] != "1":
        return Assessment(0, "pass")
    fired: list[Fired] = []

    def fire(rule: str) -> None:
        fired.append(Fired(rule, int(s[f"{rule}_score"]), s[f"{rule}_action"]))

    if facts.payments + 1 > int(s["velocity_count"]):
        fire("velocity")
    window_amount = facts.paid_amount + (facts.amount if facts.external else Decimal(0))
    if window_amount > Decimal(s["amount_limit"]):
        fire("amount")
    if facts.amount >= Decimal(s["large_amount"]):
        fire("large")
    small = facts.small_payments + (1 if facts.amount < Decimal(s["structuring_below"]) else 0)
    if small >= int(s["structuring_count"]):
        fire("structuring")
    if (facts.account_age < timedelta(hours=int(s["new_account_hours"]))
            and facts.amount > Decimal(s["new_account_amount"])):
        fire("new_account")
    if facts.reseller_today:
        fire("escalation")
    score = min(SCORE_CAP, sum(f.score for f in fired))
    outcome = band(score, s)
    for f in fired:
        outcome = stricter(outcome, f.action)
    return Assessment(score, outcome, tuple(fired))


# The user's counts and sums in the windows, as one statement of four index range scans (the
# partial indexes on (user_id, paid_at) cover the amounts). Windows are bound as timestamps so
# each scan's range is an index condition.
_FACTS = """
SELECT u.created_at, u.member_status, u.reseller_since, now() AS now,
       (SELECT count(*) FROM orders o WHERE o.user_id = u.id AND o.status = 'paid'
            AND o.paid_at > :v_from AND o.id <> :own_order)
     + (SELECT count(*) FROM deposits d WHERE d.user_id = u.id AND d.status = 'paid'
            AND d.paid_at > :v_from AND d.id <> :own_deposit) AS payments,
       (SELECT count(*) FROM orders o WHERE o.user_id = u.id AND o.status = 'paid'
            AND o.paid_at > :s_from AND o.total_bill < :small AND o.id <> :own_order)
     + (SELECT count(*) FROM deposits d WHERE d.user_id = u.id AND d.status = 'paid'
            AND d.paid_at > :s_from AND d.amount < :small
            AND d.id <> :own_deposit) AS small_payments,
       (SELECT coalesce(sum(o.total_bill), 0) FROM orders o WHERE o.user_id = u.id
            AND o.status = 'paid' AND o.paid_at > :a_from AND o.payment_method = 'qris'
            AND o.id <> :own_order)
     + (SELECT coalesce(sum(d.amount), 0) FROM deposits d WHERE d.user_id = u.id
            AND d.status = 'paid' AND d.paid_at > :a_from
            AND d.id <> :own_deposit) AS paid_amount
FROM users u WHERE u.id = :u
"""


def read_facts(session: Tx, user_id: int, amount: Decimal, *, external: bool,
               own_order: int | None = None,
               own_deposit: int | None = None) -> tuple[Facts, dict[str, str]]:
    """The facts about a payment of `amount` by `user_id`, and the settings (two short round
    trips). The caller holds the user's row lock."""
    settings = fraud_settings.read(session)
    now = datetime.now(UTC)
    row = run(session, _FACTS, {
        "u": user_id, "own_order": own_order or 0, "own_deposit": own_deposit or 0,
        "v_from": now - timedelta(minutes=int(settings["velocity_window_minutes"])),
        "s_from": now - timedelta(minutes=int(settings["structuring_window_minutes"])),
        "a_from": now - timedelta(hours=int(settings["amount_window_hours"])),
        "small": Decimal(settings["structuring_below"])}).one()
    since = row.reseller_since
    reseller_today = (row.member_status == "reseller" and since is not None
                      and same_shop_day(since, now))
    return Facts(amount=Decimal(amount), external=external, payments=int(row.payments),
                 small_payments=int(row.small_payments), paid_amount=Decimal(row.paid_amount),
                 account_age=now - row.created_at, reseller_today=reseller_today), settings


def _record(session: Tx, user_id: int, kind: str, stage: str, amount: Decimal,
            verdict: Assessment, order_id: int | None, deposit_id: int | None) -> int:
    return int(run(
        session,
        "INSERT INTO risk_assessments (user_id, payment_kind, stage, order_id, deposit_id, amount,"
        " score, rules, outcome) VALUES (:u, :k, :st, :o, :d, :a, :s, CAST(:r AS jsonb), :out)"
        " RETURNING id",
        {"u": user_id, "k": kind, "st": stage, "o": order_id, "d": deposit_id, "a": amount,
         "s": verdict.score, "r": json.dumps(verdict.rules), "out": verdict.outcome},
    ).scalar_one())


def screen(session: Tx, user_id: int, amount: Decimal, *, kind: str = "order",
           external: bool = True, paid_now: bool = False, order_id: int | None = None,
           deposit_id: int | None = None, effects: Effects | None = None) -> Assessment:
    """Screen an order or deposit being created; the caller holds the user's row lock.

    Block → ShopError('risk_blocked') (nothing but the assessment is written; the caller
    records the refusal). `paid_now` (a balance order, paid in this transaction): review holds
    its delivery at once (`order_id` is the id the order is about to be inserted with), and
    its messages go into the caller's `effects`, published with the caller's own.
    Otherwise a non-clean verdict is only recorded: the payment is screened again when it
    arrives. Idempotent with its transaction (the intent's key guards the whole of it)."""
    facts, settings = read_facts(session, user_id, amount, external=external,
                                 own_order=order_id, own_deposit=deposit_id)
    verdict = evaluate(facts, settings)
    if verdict.score == 0 and verdict.outcome == "pass":
        return verdict
    blocked = verdict.outcome == "block"
    assessment_id = _record(session, user_id, kind, "create", Decimal(amount), verdict,
                            None if blocked else order_id, None if blocked else deposit_id)
    if blocked:
        raise ShopError("risk_blocked")
    if paid_now and verdict.held and order_id is not None:
        hold(session, effects or Effects(session), assessment_id, user_id, "order", order_id,
             Decimal(amount), verdict)
    return verdict


def screen_payment(session: Tx, effects: Effects, kind: str, row: Any) -> Assessment:
    """Screen a pending order/deposit whose money the gateway confirmed; the caller holds the
    user and row locks and settles it next. A held verdict (review, or block now that the money
    is here) puts it in the review queue: an order is settled but not delivered, a deposit's
    credit waits. Idempotent by the caller's state check (only a pending row gets here)."""
    is_order = kind == "order"
    amount = Decimal(row.total_bill if is_order else row.amount)
    facts, settings = read_facts(session, row.user_id, amount, external=True,
                                 own_order=row.id if is_order else None,
                                 own_deposit=None if is_order else row.id)
    verdict = evaluate(facts, settings)
    if verdict.score == 0 and verdict.outcome == "pass":
        return verdict
    assessment_id = _record(session, row.user_id, kind, "confirm", amount, verdict,
                            row.id if is_order else None, None if is_order else row.id)
    if verdict.held:
        hold(session, effects, assessment_id, row.user_id, kind, row.id, amount, verdict)
    return verdict


def hold(session: Tx, effects: Effects, assessment_id: int, user_id: int, kind: str,
         row_id: int, amount: Decimal, verdict: Assessment) -> int:
    """Put an order/deposit in the review queue (once: a second hold of the same row is a
    no-op), tell the shopper it is being checked and the admins that it waits, once each."""
    review_id = run(
        session,
        "INSERT INTO risk_reviews (assessment_id, user_id, payment_kind, order_id, deposit_id,"
        " amount, score, rules, band) VALUES (:a, :u, :k, :o, :d, :amt, :s, CAST(:r AS jsonb), :b)"
        " ON CONFLICT DO NOTHING RETURNING id",
        {"a": assessment_id, "u": user_id, "k": kind,
         "o": row_id if kind == "order" else None, "d": row_id if kind == "deposit" else None,
         "amt": amount, "s": verdict.score, "r": json.dumps(verdict.rules),
         "b": "block" if verdict.outcome == "block" else "review"},
    ).scalar()
    if review_id is None:
        return 0
    effects.message(user_id, "review.held")
    effects.admins("review.new_item", review_id=review_id, kind=kind, user_id=user_id,
                   amount=str(amount), score=verdict.score,
                   rules=", ".join(f.rule for f in verdict.fired))
    return int(review_id)
