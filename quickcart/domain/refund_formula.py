"""The refund calculator (REQUIREMENTS 2.3): what the unused part of a subscription is worth.

    refund = price × (period − days_used) / period × multiplier

days_used is clamped to [0, period]; the multiplier is `early` (0.8) under EARLY_DAYS days used,
`late` (0.7) from then on, and, when the line had warranty claims, `claims_1_2` (0.6) for 1–2,
`claims_3` (0.5) for 3, `claims_more` (0.4) for more (claims replace the day rule). The result
is rounded down to whole rupiah and never negative. Pure: no I/O, exact Decimal arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

EARLY_DAYS = 7
#: /setformula names → Formula fields (the multipliers, then the period).
SETTINGS = {"early": "early", "late": "late", "claims12": "claims_1_2", "claims3": "claims_3",
            "claims4": "claims_more", "period": "period_days"}


@dataclass(frozen=True)
class Formula:
    """The multipliers and the period, as specified unless an admin changed them."""

    period_days: int = 30
    early: Decimal = Decimal("0.8")
    late: Decimal = Decimal("0.7")
    claims_1_2: Decimal = Decimal("0.6")
    claims_3: Decimal = Decimal("0.5")
    claims_more: Decimal = Decimal("0.4")

    def validate(self) -> None:
        """Raise ValueError unless 0 < every multiplier ≤ 1 and the period is ≥ 1 day."""
        if self.period_days < 1:
            raise ValueError("period_days")
        for name in ("early", "late", "claims_1_2", "claims_3", "claims_more"):
            value = getattr(self, name)
            if not Decimal(0) < value <= Decimal(1):
                raise ValueError(name)


@dataclass(frozen=True)
class Estimate:
    """One computed refund with its inputs, the multiplier chosen and why (`rule`)."""

    price: Decimal
    days_used: int
    claims: int
    period_days: int
    multiplier: Decimal
    rule: str  # "early", "late", "claims12", "claims3" or "claims4"
    amount: Decimal


def multiplier(formula: Formula, days_used: int, claims: int) -> tuple[Decimal, str]:
    """The multiplier for this line and the rule that chose it."""
    if claims > 3:
        return formula.claims_more, "claims4"
    if claims == 3:
        return formula.claims_3, "claims3"
    if claims >= 1:
        return formula.claims_1_2, "claims12"
    if days_used < EARLY_DAYS:
        return formula.early, "early"
    return formula.late, "late"


def estimate(formula: Formula, price: Decimal, days_used: int, claims: int) -> Estimate:
    """The suggested refund of a line that cost `price`, `days_used` days after delivery, with
    `claims` warranty claims. Raises ValueError for a negative price, days or claims."""
    if price < 0 or days_used < 0 or claims < 0:
        raise ValueError("negative input")
    days = min(days_used, formula.period_days)
    factor, rule = multiplier(formula, days, claims)
    raw = price * (formula.period_days - days) * factor / formula.period_days
    amount = max(Decimal(0), raw.quantize(Decimal(1), rounding=ROUND_FLOOR))
    return Estimate(price, days, claims, formula.period_days, factor, rule, amount)
