"""Every risk rule at its boundary, the band edges, and the stricter-of rule (pure evaluation)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from quickcart.domain.errors import ShopError
from quickcart.services import fraud
from quickcart.services.fraud_settings import DEFAULTS, normalise

CLEAN = fraud.Facts(amount=Decimal(50_000), external=True, payments=0, small_payments=0,
                    paid_amount=Decimal(0), account_age=timedelta(days=30),
                    reseller_today=False)


def rules(facts: fraud.Facts) -> list[str]:
    return [f.rule for f in fraud.evaluate(facts, dict(DEFAULTS)).fired]


def test_clean_payment_passes() -> None:
    assert fraud.evaluate(CLEAN) == fraud.Assessment(0, "pass")


def test_velocity_5_payments_pass_the_6th_fires() -> None:
    assert rules(replace(CLEAN, payments=4)) == []  # this one is the 5th
    verdict = fraud.evaluate(replace(CLEAN, payments=5))  # the 6th
    assert [f.rule for f in verdict.fired] == ["velocity"]
    assert (verdict.score, verdict.outcome) == (30, "flag")


def test_amount_velocity_over_5000000_blocks_on_its_own() -> None:
    at_limit = replace(CLEAN, paid_amount=Decimal(4_950_000))  # + 50.000 = 5.000.000
    assert rules(at_limit) == []
    over = fraud.evaluate(replace(CLEAN, paid_amount=Decimal(4_950_001)))
    assert [f.rule for f in over.fired] == ["amount"]
    assert (over.score, over.outcome) == (70, "block")  # band says review; the rule blocks
    # Spending the balance is not new money: it is not added to the window again.
    assert rules(replace(CLEAN, external=False, paid_amount=Decimal(4_999_999),
                         amount=Decimal(400_000))) == []


def test_large_transaction_999999_vs_1000000_reviews_on_its_own() -> None:
    assert rules(replace(CLEAN, amount=Decimal(999_999))) == []
    verdict = fraud.evaluate(replace(CLEAN, amount=Decimal(1_000_000)))
    assert [f.rule for f in verdict.fired] == ["large"]
    assert (verdict.score, verdict.outcome) == (40, "review")  # band says flag


def test_structuring_9_vs_10_small_payments_in_the_hour() -> None:
    small = replace(CLEAN, amount=Decimal(9_999), payments=0)
    assert rules(replace(small, small_payments=8)) == []  # this one is the 9th
    assert rules(replace(small, small_payments=9)) == ["structuring"]
    assert rules(replace(small, amount=Decimal(10_000), small_payments=9)) == []
    assert rules(replace(small, amount=Decimal(10_000), small_payments=10)) == ["structuring"]


def test_new_account_23h_vs_25h_and_500000_boundary() -> None:
    young = replace(CLEAN, account_age=timedelta(hours=23), amount=Decimal(500_001))
    assert rules(young) == ["new_account"]
    assert rules(replace(young, account_age=timedelta(hours=25))) == []
    assert rules(replace(young, amount=Decimal(500_000))) == []
    assert fraud.evaluate(young).outcome == "review"


def test_role_escalation_flags() -> None:
    verdict = fraud.evaluate(replace(CLEAN, reseller_today=True))
    assert (verdict.score, verdict.outcome, verdict.rules) == (
        35, "flag", [{"rule": "escalation", "score": 35, "action": "flag"}])


@pytest.mark.parametrize(("score", "band"), [
    (29, "pass"), (30, "flag"), (49, "flag"), (50, "review"), (79, "review"), (80, "block"),
    (100, "block")])
def test_band_edges(score: int, band: str) -> None:
    assert fraud.band(score, dict(DEFAULTS)) == band


def test_scores_add_up_capped_at_100_and_the_stricter_outcome_wins() -> None:
    everything = fraud.Facts(amount=Decimal(1_000_000), external=True, payments=9,
                             small_payments=0, paid_amount=Decimal(4_500_000),
                             account_age=timedelta(hours=1), reseller_today=True)
    verdict = fraud.evaluate(everything)
    assert verdict.score == 100 and verdict.outcome == "block"
    # velocity (flag 30) + escalation (flag 35) = 65: the band (review) is stricter.
    two_flags = fraud.evaluate(replace(CLEAN, payments=5, reseller_today=True))
    assert (two_flags.score, two_flags.outcome) == (65, "review")


def test_settings_move_the_thresholds_and_the_switch_turns_it_off() -> None:
    settings = {**DEFAULTS, "large_amount": "2000000", "band_flag": "45"}
    assert fraud.evaluate(replace(CLEAN, amount=Decimal(1_500_000)), settings).fired == ()
    assert fraud.evaluate(replace(CLEAN, payments=5), settings).outcome == "flag"  # own action
    off = {**DEFAULTS, "enabled": "0"}
    assert fraud.evaluate(replace(CLEAN, amount=Decimal(9_000_000)), off).outcome == "pass"


def test_setting_values_are_validated() -> None:
    assert normalise("enabled", "off") == "0"
    assert normalise("large_amount", "2.000.000") == "2000000"
    assert normalise("large_action", "BLOCK") == "block"
    for name, value in (("band_block", "101"), ("large_action", "ban"), ("nope", "1"),
                        ("velocity_count", "-1"), ("amount_limit", "abc")):
        with pytest.raises(ShopError):
            normalise(name, value)
