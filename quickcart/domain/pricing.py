"""Prices by role and the bill of an order."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from quickcart.domain.money import ZERO, qris_fee

ROLES = ("customer", "reseller", "admin")
PAYMENT_METHODS = ("qris", "account_balance")


def unit_price(role: str, customer_price: Decimal, reseller_price: Decimal | None) -> Decimal:
    """Resellers pay `reseller_price` when set; everyone else the customer price."""
    if role == "reseller" and reseller_price is not None:
        return reseller_price
    return customer_price


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
