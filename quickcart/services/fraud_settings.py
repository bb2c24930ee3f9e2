"""Anti-fraud settings: every threshold, score, band and the master switch, in the database.

Rows of `fraud_settings` (name → text value) override DEFAULTS; a missing row means the default
(a fresh or emptied database still screens). Changing one is an admin command: validated,
written under the admin as the audit actor, so the audit trail keeps before and after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from quickcart.db.sql import Tx, run
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.services.order_lookup import require_admin

ACTIONS = ("pass", "flag", "review", "block")

#: name → (kind, default). Kinds: switch (0/1), count, minutes, hours, amount (rupiah),
#: score (0-100), action (pass/flag/review/block).
SPEC: dict[str, tuple[str, str]] = {
    "enabled": ("switch", "1"),
    "velocity_count": ("count", "5"),
    "velocity_window_minutes": ("minutes", "60"),
    "velocity_score": ("score", "30"),
    "velocity_action": ("action", "flag"),
    "amount_limit": ("amount", "5000000"),
    "amount_window_hours": ("hours", "24"),
    "amount_score": ("score", "70"),
    "amount_action": ("action", "block"),
    "large_amount": ("amount", "1000000"),
    "large_score": ("score", "40"),
    "large_action": ("action", "review"),
    "structuring_below": ("amount", "10000"),
    "structuring_count": ("count", "10"),
    "structuring_window_minutes": ("minutes", "60"),
    "structuring_score": ("score", "60"),
    "structuring_action": ("action", "review"),
    "new_account_hours": ("hours", "24"),
    "new_account_amount": ("amount", "500000"),
    "new_account_score": ("score", "50"),
    "new_account_action": ("action", "review"),
    "escalation_score": ("score", "35"),
    "escalation_action": ("action", "flag"),
    "band_block": ("score", "80"),
    "band_review": ("score", "50"),
    "band_flag": ("score", "30"),
    "renotify_minutes": ("minutes", "30"),
}
DEFAULTS: dict[str, str] = {name: default for name, (_, default) in SPEC.items()}

# Upper bounds keep a typo from turning a window into years (make_interval would accept it).
_LIMITS = {"count": (1, 10_000), "minutes": (1, 10_080), "hours": (1, 720),
           "amount": (1, 1_000_000_000), "score": (0, 100), "switch": (0, 1)}


@dataclass(frozen=True)
class SettingChange:
    """One setting changed by an admin."""

    name: str
    before: str
    after: str


def normalise(name: str, value: str) -> str:
    """The stored form of `value` for setting `name`; ShopError when either is invalid."""
    if name not in SPEC:
        raise ShopError("fraud_setting_unknown", name=name)
    kind = SPEC[name][0]
    raw = value.strip().lower()
    if kind == "action":
        if raw not in ACTIONS:
            raise ShopError("fraud_setting_invalid", name=name, allowed="/".join(ACTIONS))
        return raw
    if kind == "switch" and raw in ("on", "off"):
        raw = "1" if raw == "on" else "0"
    digits = raw.replace(".", "").replace(",", "")
    low, high = _LIMITS[kind]
    if not digits.isdigit() or not low <= int(digits) <= high:
        raise ShopError("fraud_setting_invalid", name=name, allowed=f"{low}-{high}")
    return str(int(digits))


def merged(rows: dict[str, Any] | None) -> dict[str, str]:
    """DEFAULTS overridden by the stored rows (unknown names ignored)."""
    values = dict(DEFAULTS)
    for name, value in (rows or {}).items():
        if name in SPEC:
            values[name] = str(value)
    return values


def read(session: Tx) -> dict[str, str]:
    """Every setting's value (stored rows over the defaults), read in the caller's transaction."""
    return merged({r.name: r.value for r in
                   run(session, "SELECT name, value FROM fraud_settings").all()})


def current(engine: Engine) -> dict[str, str]:
    """Every setting's value now (defaults for missing rows); locks nothing."""
    with engine.connect() as conn:
        return read(conn)


def for_admin(engine: Engine, actor_id: int) -> dict[str, str]:
    """`current`, for an admin only (ShopError 'not_admin' otherwise); a read."""
    with engine.connect() as conn:
        require_admin(conn, actor_id)
        return read(conn)


def set_setting(engine: Engine, actor_id: int, name: str, value: str) -> SettingChange:
    """Change one setting (admins only). Locks: the setting's row (an upsert). Idempotent: the
    same value again changes nothing but the timestamp."""
    stored = normalise(name, value)
    with unit_of_work(engine) as uow:
        require_admin(uow.session, actor_id)
        uow.set_actor(actor_id, "admin", {"command": "fraud", "setting": name})
        before = run(uow.session, "SELECT value FROM fraud_settings WHERE name = :n FOR UPDATE",
                     {"n": name}).scalar()
        run(uow.session,
            "INSERT INTO fraud_settings (name, value, updated_by) VALUES (:n, :v, :a)"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value,"
            " updated_by = EXCLUDED.updated_by, updated_at = now()",
            {"n": name, "v": stored, "a": actor_id})
        uow.commit()
    return SettingChange(name, before if before is not None else DEFAULTS[name], stored)
