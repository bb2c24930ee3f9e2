"""An order the review queue refunded is refunded: the admin's /refund cannot pay it again."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine

from quickcart.domain.errors import ShopError
from quickcart.services import refunds, review
from tests.conftest import scalar
from tests.integration.test_fraud import ADMIN, DEAR, add_user, buy, shop  # noqa: F401

BUYER = 61


def test_a_review_refund_counts_against_the_refund_cap(shop: Engine) -> None:  # noqa: F811
    with shop.begin() as conn:
        add_user(conn, BUYER, balance=700_000, age_hours=2)  # new account: held for review
    order_id = buy(shop, DEAR, user=BUYER).result["order_id"]
    review_id = int(str(scalar(shop, "SELECT id FROM risk_reviews WHERE order_id = :o",
                               o=order_id)))
    assert review.decide(shop, ADMIN, review_id, "refund").status == "refunded"
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == 700_000

    found = refunds.order_estimate(shop, order_id)
    assert found.refunded == Decimal(600_000) and found.suggested == 0
    with pytest.raises(ShopError) as refused:
        refunds.propose(shop, ADMIN, order_id, "1000", "after-review")
    assert refused.value.code == "refund_too_large" and refused.value.params["max"] == "0"
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == 700_000


def test_a_review_refund_pays_only_what_an_admin_refund_left(shop: Engine) -> None:  # noqa: F811
    with shop.begin() as conn:
        add_user(conn, BUYER, balance=700_000, age_hours=2)  # new account: held for review
    order_id = buy(shop, DEAR, user=BUYER).result["order_id"]
    proposed = refunds.propose(shop, ADMIN, order_id, "250000", "partly first").result
    assert refunds.confirm(shop, ADMIN, proposed["refund_id"]).result["status"] == "paid"
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == 350_000
    review_id = int(str(scalar(shop, "SELECT id FROM risk_reviews WHERE order_id = :o",
                               o=order_id)))
    assert review.decide(shop, ADMIN, review_id, "refund").status == "refunded"
    # 600.000 paid for the goods in all: never more back than that.
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == 700_000
    assert refunds.order_estimate(shop, order_id).refunded == Decimal(600_000)
