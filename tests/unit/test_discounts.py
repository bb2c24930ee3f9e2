"""The discount rule (quickcart/domain/discounts.py): best single discount, whole rupiah,
resellers only down to their floor, end dates, and the admin's input format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from quickcart.domain.discounts import Discount, best_price, parse_value, unit_price
from quickcart.domain.pricing import product_unit_price

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
D = Decimal


def test_best_single_discount_wins_and_nothing_stacks() -> None:
    product = Discount("percent", D(10))  # 50.000 → 45.000
    category = Discount("amount", D(8000))  # 50.000 → 42.000
    assert best_price(D(50000), [product, category], NOW) == D(42000)
    assert best_price(D(50000), [product], NOW) == D(45000)
    assert best_price(D(50000), [], NOW) == D(50000)


def test_percent_takes_whole_rupiah_and_amounts_never_reach_zero() -> None:
    assert best_price(D(9999), [Discount("percent", D(15))], NOW) == D(8500)  # 1499.85 off → 1499
    assert best_price(D(5000), [Discount("amount", D(5000))], NOW) == D(5000)  # would be 0
    assert best_price(D(5000), [Discount("amount", D(4999))], NOW) == D(1)


def test_a_discount_that_ended_does_not_apply() -> None:
    ended = Discount("percent", D(50), NOW - timedelta(seconds=1))
    running = Discount("percent", D(50), NOW + timedelta(days=1))
    assert best_price(D(10000), [ended], NOW) == D(10000)
    assert best_price(D(10000), [running], NOW) == D(5000)


def test_resellers_get_no_discount_without_a_floor_and_never_below_it() -> None:
    half = [Discount("percent", D(50))]
    assert unit_price("reseller", D(50000), D(45000), half, NOW).price == D(45000)
    floored = unit_price("reseller", D(50000), D(45000), half, NOW, reseller_floor=D(40000))
    assert (floored.price, floored.original, floored.discounted) == (D(40000), D(45000), True)
    small = unit_price("reseller", D(50000), D(45000), [Discount("percent", D(5))], NOW,
                       reseller_floor=D(40000))
    assert small.price == D(42750)
    # a floor above the reseller's own price leaves that price alone
    assert unit_price("reseller", D(50000), D(30000), half, NOW, D(40000)).price == D(30000)
    shopper = unit_price("customer", D(50000), D(45000), half, NOW)
    assert (shopper.price, shopper.original) == (D(25000), D(50000))


def test_the_one_pricing_entry_point_applies_discounts() -> None:
    assert product_unit_price(1, "customer", D(20000), None) == D(20000)
    assert product_unit_price(1, "customer", D(20000), None,
                              discounts=[Discount("amount", D(2500))], now=NOW) == D(17500)
    assert product_unit_price(1, "reseller", D(20000), D(18000),
                              discounts=[Discount("amount", D(2500))], now=NOW) == D(18000)


@pytest.mark.parametrize(("raw", "parsed"), [
    ("10%", ("percent", D(10))), ("12,5%", ("percent", D("12.5"))), ("5000", ("amount", D(5000))),
    ("5.000", ("amount", D(5000))), ("0", ("amount", D(0))),
    ("0%", None), ("100%", None), ("150%", None), ("-5000", None), ("abc", None), ("%", None),
    ("-10%", None),
])
def test_the_admins_input(raw: str, parsed: tuple[str, Decimal] | None) -> None:
    assert parse_value(raw) == parsed
