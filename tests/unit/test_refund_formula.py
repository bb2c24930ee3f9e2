"""The refund formula (REQUIREMENTS 2.3) pinned on a table of cases, boundaries included."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quickcart.domain.refund_formula import Formula, estimate, multiplier

D = Decimal


@pytest.mark.parametrize(("price", "days", "claims", "expected", "factor", "rule"), [
    # the requirements' examples
    (30000, 10, 0, 14000, "0.7", "late"),
    (30000, 3, 0, 21600, "0.8", "early"),
    (30000, 10, 3, 10000, "0.5", "claims3"),
    (100000, 3, 2, 54000, "0.6", "claims12"),
    (30000, 40, 0, 0, "0.7", "late"),
    # the 6/7-day boundary: 6 days is still "early", 7 is not
    (30000, 6, 0, 19200, "0.8", "early"),
    (30000, 7, 0, 16100, "0.7", "late"),
    (30000, 0, 0, 24000, "0.8", "early"),
    # claims 0/1/2/3/4 replace the day rule
    (30000, 3, 1, 16200, "0.6", "claims12"),
    (30000, 10, 1, 12000, "0.6", "claims12"),
    (30000, 10, 2, 12000, "0.6", "claims12"),
    (30000, 10, 4, 8000, "0.4", "claims4"),
    (30000, 10, 9, 8000, "0.4", "claims4"),
    # days used at or past the period: nothing left
    (30000, 30, 0, 0, "0.7", "late"),
    (30000, 31, 5, 0, "0.4", "claims4"),
    # rounded down to whole rupiah: 9999 × 29/30 × 0.8 = 7732.56
    (9999, 1, 0, 7732, "0.8", "early"),
    # 10001 × 23/30 × 0.7 = 5367.2033…
    (10001, 7, 0, 5367, "0.7", "late"),
])
def test_formula_table(price: int, days: int, claims: int, expected: int, factor: str,
                       rule: str) -> None:
    result = estimate(Formula(), D(price), days, claims)
    assert result.amount == D(expected)
    assert result.multiplier == D(factor)
    assert result.rule == rule
    assert result.days_used == min(days, 30)


def test_changed_formula_is_used() -> None:
    custom = Formula(period_days=10, early=D("1"), late=D("0.5"))
    assert estimate(custom, D(10000), 2, 0).amount == D(8000)   # 10000 × 8/10 × 1
    assert estimate(custom, D(10000), 7, 0).amount == D(1500)   # 10000 × 3/10 × 0.5
    assert estimate(custom, D(10000), 12, 0).amount == D(0)


def test_multiplier_rules_are_exhaustive() -> None:
    formula = Formula()
    assert [multiplier(formula, 0, c)[1] for c in range(6)] == [
        "early", "claims12", "claims12", "claims3", "claims4", "claims4"]


@pytest.mark.parametrize(("field", "value"), [
    ("early", D("0")), ("late", D("1.01")), ("claims_3", D("-0.1")), ("period_days", 0)])
def test_validation_refuses_out_of_range(field: str, value: object) -> None:
    with pytest.raises(ValueError):
        Formula(**{field: value}).validate()  # type: ignore[arg-type]
    Formula(early=D("1"), claims_more=D("0.001")).validate()


@pytest.mark.parametrize(("price", "days", "claims"), [(-1, 0, 0), (1000, -1, 0), (1000, 0, -1)])
def test_negative_inputs_are_refused(price: int, days: int, claims: int) -> None:
    with pytest.raises(ValueError):
        estimate(Formula(), D(price), days, claims)
