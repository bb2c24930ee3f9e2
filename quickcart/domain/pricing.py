"""Prices by role and the bill of an order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from quickcart.domain.discounts import Discount, Price
from quickcart.domain.discounts import unit_price as discounted_unit_price
from quickcart.domain.money import ZERO, qris_fee

ROLES = ("customer", "reseller", "admin")
PAYMENT_METHODS = ("qris", "account_balance")


def product_unit_price(product_id: int, role: str, customer_price: Decimal,
                       reseller_price: Decimal | None, *,
                       discounts: Iterable[Discount] = (),
                       reseller_floor: Decimal | None = None,
                       now: datetime | None = None) -> Decimal:
    """THE unit price of `product_id` for a buyer of `role`: every screen (catalog, cart,
    summary) and the order engine ask here, so a rule on prices (e.g. a catalog discount)
    plugs in at this one place and the bill shown always equals the bill charged.

    `discounts` are the product's own and its category's (quickcart/services/discounts.py
    reads them); the best single one wins, resellers only down to `reseller_floor`
    (quickcart/domain/discounts.py)."""
    return product_price(product_id, role, customer_price, reseller_price,
                         discounts=discounts, reseller_floor=reseller_floor, now=now).price


def product_price(product_id: int, role: str, customer_price: Decimal,
                  reseller_price: Decimal | None, *, discounts: Iterable[Discount] = (),
                  reseller_floor: Decimal | None = None, now: datetime | None = None) -> Price:
    """`product_unit_price` with the undiscounted price beside it (the catalog strikes it
    through when a discount applies)."""
    del product_id  # the product's discounts arrive as `discounts`
    return discounted_unit_price(role, customer_price, reseller_price, discounts,
                                 now or datetime.now(UTC), reseller_floor)


@dataclass(frozen=True)
class Bill:
    """subtotal − discount + fee = total, as the seed defines `total_bill`."""

    subtotal: Decimal
    voucher_discount: Decimal
    payment_fee: Decimal

    @property
    def payable(self) -> Decimal:
        """What the gateway is asked for: the amount before its fee."""
        return self.subtotal - self.voucher_discount

    @property
    def total(self) -> Decimal:
        """What the buyer pays in the end."""
        return self.subtotal - self.voucher_discount + self.payment_fee


def make_bill(subtotal: Decimal, voucher_amount: Decimal, payment_method: str) -> Bill:
    """The bill: a discount never exceeds the subtotal; QRIS adds its fee on the discounted sum."""
    discount = min(voucher_amount, subtotal)
    payable = subtotal - discount
    fee = qris_fee(payable) if payment_method == "qris" and payable > ZERO else ZERO
    return Bill(subtotal=subtotal, voucher_discount=discount, payment_fee=fee)
