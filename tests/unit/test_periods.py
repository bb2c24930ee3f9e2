"""The shop's calendar periods start at Jakarta's midnight (17:00 UTC the day before)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quickcart.domain.periods import period_start, same_shop_day


def test_periods_start_at_jakarta_midnight() -> None:
    # Sunday 2026-12-06 16:59 UTC is Sunday 23:59 in Jakarta; one minute later it is Monday.
    sunday = datetime(2026, 12, 6, 16, 59, tzinfo=UTC)
    monday = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)
    assert period_start("today", sunday) == datetime(2026, 12, 5, 17, tzinfo=UTC)
    assert period_start("today", monday) == monday
    assert period_start("week", sunday) == datetime(2026, 11, 29, 17, tzinfo=UTC)
    assert period_start("week", monday) == monday
    assert period_start("month", sunday) == datetime(2026, 11, 30, 17, tzinfo=UTC)
    # 31 Dec 18:00 UTC is already 1 January in Jakarta.
    assert period_start("month", datetime(2026, 12, 31, 18, tzinfo=UTC)) == \
        datetime(2026, 12, 31, 17, tzinfo=UTC)
    assert period_start("all", sunday) is None
    with pytest.raises(ValueError):
        period_start("year", sunday)


def test_same_shop_day_follows_jakarta() -> None:
    assert same_shop_day(datetime(2026, 12, 6, 17, tzinfo=UTC),
                         datetime(2026, 12, 7, 16, 59, tzinfo=UTC))
    assert not same_shop_day(datetime(2026, 12, 6, 16, 59, tzinfo=UTC),
                             datetime(2026, 12, 6, 17, tzinfo=UTC))
