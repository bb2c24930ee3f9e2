"""Product and category discounts: the pure pricing rule (no I/O).

Rule (docs: issue 23): of the discounts that apply to a product (its own, its category's), the
single one giving the lowest price wins; they never stack. A percentage discount takes off
whole rupiah (rounded down, so the shop never charges a fraction); an amount discount that is
not smaller than the price does not apply (a price stays positive). Resellers pay their own
price, and a discount reaches them only when the admin set a floor for the product: never below
that floor (a floor above their price leaves it as it is). Without a floor resellers get no
discount.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

KINDS = ("percent", "amount")
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Discount:
    """One discount: `value` percent (0 < value < 100) or `value` rupiah off; until `ends_at`."""

    kind: str
    value: Decimal
    ends_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        """Whether the discount still runs at `now`."""
        return self.ends_at is None or now < self.ends_at

    def apply(self, price: Decimal) -> Decimal | None:
        """The price after this discount, or None when it does not apply to that price."""
        if self.kind == "percent":
            off = (price * self.value / HUNDRED).quantize(Decimal(1), rounding=ROUND_FLOOR)
        else:
            off = self.value
        if off <= 0 or off >= price:
            return None
        return price - off


@dataclass(frozen=True)
class Price:
    """What a shopper pays per unit, and the undiscounted price when a discount applies."""

    price: Decimal
    original: Decimal

    @property
    def discounted(self) -> bool:
        """Whether a discount lowered the price (the catalog strikes the original through)."""
        return self.price < self.original


def best_price(base: Decimal, discounts: Iterable[Discount], now: datetime) -> Decimal:
    """The lowest price any single active discount gives `base` (`base` when none applies)."""
    candidates = [d.apply(base) for d in discounts if d.active(now)]
    return min([base, *(c for c in candidates if c is not None)])


def unit_price(role: str, customer_price: Decimal, reseller_price: Decimal | None,
               discounts: Iterable[Discount], now: datetime,
               reseller_floor: Decimal | None = None) -> Price:
    """The unit price for `role` after the best single discount (resellers: the floor rule)."""
    if role != "reseller":
        return Price(best_price(customer_price, discounts, now), customer_price)
    base = reseller_price if reseller_price is not None else customer_price
    if reseller_floor is None:
        return Price(base, base)
    return Price(max(best_price(base, discounts, now), min(reseller_floor, base)), base)


def parse_value(raw: str) -> tuple[str, Decimal] | None:
    """`10%` → ('percent', 10); `5000` / `5.000` → ('amount', 5000); `0` → ('amount', 0)
    (removal); None when malformed or out of range (0 < percent < 100, whole rupiah)."""
    text = raw.strip().replace(" ", "")
    if text.endswith("%"):
        number = text[:-1].replace(",", ".")
        try:
            value = Decimal(number)
        except ArithmeticError:
            return None
        if not value.is_finite() or not 0 < value < HUNDRED or value != value.quantize(
                Decimal("0.01")):
            return None
        return "percent", value
    digits = text.replace(".", "").replace(",", "")
    if not digits.isdigit() or len(digits) > 13:
        return None
    return "amount", Decimal(digits)
