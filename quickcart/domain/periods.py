"""The shop's calendar: days, weeks (from Monday) and months in Asia/Jakarta, where the shop
and its buyers live; reports and boards count by them, whatever the server's timezone."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

SHOP_TIMEZONE = ZoneInfo("Asia/Jakarta")
PERIODS = ("today", "week", "month", "all")


def period_start(period: str, now: datetime) -> datetime | None:
    """When the shop-calendar `period` holding `now` began: today's midnight, this week's
    Monday or this month's 1st, in Jakarta; None for "all". `now` must be timezone-aware."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}")
    if period == "all":
        return None
    day = now.astimezone(SHOP_TIMEZONE).date()
    if period == "week":
        day -= timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    # Jakarta keeps no daylight saving: its midnight is one unambiguous instant.
    return datetime.combine(day, time(), tzinfo=SHOP_TIMEZONE)


def same_shop_day(a: datetime, b: datetime) -> bool:
    """Whether two instants fall on the same calendar day in Jakarta."""
    return a.astimezone(SHOP_TIMEZONE).date() == b.astimezone(SHOP_TIMEZONE).date()
