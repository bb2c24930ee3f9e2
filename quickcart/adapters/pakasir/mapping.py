"""Pakasir's wire format mapped to QuickCart's values: strict checks, Decimal money, aware times.

Amounts are whole rupiah; timestamps are RFC 3339 with any fraction length and a required
offset; statuses are lower-cased with the gateway's spelling variants folded together.
Anything that does not fit raises ValueError (or TypeError for a caller's wrong type).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from quickcart.domain.money import MAX_AMOUNT, ZERO

logger = logging.getLogger(__name__)

STATUS_PENDING: Final = "pending"
STATUS_COMPLETED: Final = "completed"
STATUS_EXPIRED: Final = "expired"
STATUS_CANCELED: Final = "canceled"
KNOWN_STATUSES: Final = frozenset(
    {STATUS_PENDING, STATUS_COMPLETED, STATUS_EXPIRED, STATUS_CANCELED}
)
_STATUS_ALIASES: Final = {"cancelled": STATUS_CANCELED, "cancel": STATUS_CANCELED}
_MAX_ORDER_ID_LENGTH: Final = 255
_TIMESTAMP = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?$"
)


# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True)
class PakasirPayment:
    """A QRIS payment request as created by Pakasir: what the customer must pay, and until when."""

    project: str
    order_id: str
    amount: Decimal
    fee: Decimal
    total_payment: Decimal
    payment_method: str
    payment_number: str
    expired_at: datetime


@dataclass(frozen=True)
class PakasirTransaction:
    """A transaction's state as reported by the transaction detail API."""

    project: str
    order_id: str
    amount: Decimal
    status: str
    payment_method: str | None
    completed_at: datetime | None

    @property
    def is_completed(self) -> bool:
        """True once Pakasir reports the money as received."""
        return self.status == STATUS_COMPLETED


# --------------------------------------------------------------------------- fields


def whole_rupiah(amount: Decimal) -> Decimal:
    """Validate a caller-supplied amount as whole rupiah."""
    if not isinstance(amount, Decimal | int) or isinstance(amount, bool):
        raise TypeError("amount must be a Decimal (whole rupiah)")
    value = Decimal(amount)
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError("amount must be whole rupiah")
    if value < ZERO or value > MAX_AMOUNT:
        raise ValueError("amount out of range")
    return value.quantize(Decimal("1"))


def check_order_id(order_id: object) -> str:
    """`order_id` if it is a non-empty, trimmed, printable string of at most 255 characters."""
    if not isinstance(order_id, str):
        raise TypeError("order_id must be a string")
    if not order_id or order_id != order_id.strip():
        raise ValueError("order_id must be non-empty without surrounding whitespace")
    if len(order_id) > _MAX_ORDER_ID_LENGTH:
        raise ValueError("order_id too long")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in order_id):
        raise ValueError("order_id contains control characters")
    return order_id


def _gateway_amount(value: object, field: str) -> Decimal:
    """An amount from a gateway response: int/Decimal (or a digit string), whole, in range."""
    if isinstance(value, bool | float):
        raise ValueError(f"{field} must not be a float or bool")
    if isinstance(value, str):
        if not value.isdigit():
            raise ValueError(f"{field} is not a whole number")
        value = Decimal(value)
    if not isinstance(value, Decimal | int):
        raise ValueError(f"{field} must be a number")
    try:
        return whole_rupiah(Decimal(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}: {exc}") from None


def require_str(data: Mapping[str, object], field: str, *, allow_empty: bool = False) -> str:
    """The string `data[field]`; ValueError when it is missing, not a string or blank."""
    if field not in data:
        raise ValueError(f"missing field {field!r}")
    value = data[field]
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{field} must not be empty")
    return value


def normalise_status(value: str) -> str:
    """A gateway status lower-cased, with spelling variants ("cancelled") folded together."""
    status = value.strip().lower()
    return _STATUS_ALIASES.get(status, status)


def parse_timestamp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (any fraction length, Z or offset) into an aware datetime."""
    match = _TIMESTAMP.match(value.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {value[:40]!r}")
    tz = match["tz"]
    if tz is None:
        raise ValueError(f"timestamp lacks a UTC offset: {value[:40]!r}")
    frac = (match["frac"] or "")[:6].ljust(6, "0")
    offset = "+00:00" if tz in ("Z", "z") else (tz if ":" in tz else f"{tz[:3]}:{tz[3:]}")
    return datetime.fromisoformat(f"{match['base'].replace(' ', 'T')}.{frac}{offset}")


def optional_timestamp(data: Mapping[str, object], field: str) -> datetime | None:
    """The timestamp `data[field]`, or None when it is absent, null or empty."""
    value = data.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string timestamp or null")
    return parse_timestamp(value)


# --------------------------------------------------------------------------- responses


def parse_payment(data: object) -> PakasirPayment:
    """The ``payment`` object of a transactioncreate response."""
    if not isinstance(data, dict) or not isinstance(data.get("payment"), dict):
        raise ValueError("expected an object with a 'payment' object")
    p: dict[str, object] = data["payment"]
    amount = _gateway_amount(p.get("amount"), "amount")
    fee = _gateway_amount(p.get("fee"), "fee")
    total = _gateway_amount(p.get("total_payment"), "total_payment")
    if total < amount:
        raise ValueError("total_payment is below amount")
    expired_at = optional_timestamp(p, "expired_at")
    if expired_at is None:
        raise ValueError("missing expired_at")
    return PakasirPayment(
        project=require_str(p, "project"),
        order_id=require_str(p, "order_id"),
        amount=amount,
        fee=fee,
        total_payment=total,
        payment_method=require_str(p, "payment_method"),
        payment_number=require_str(p, "payment_number"),
        expired_at=expired_at,
    )


def parse_transaction(data: object) -> PakasirTransaction:
    """The ``transaction`` object of a transactiondetail response."""
    if not isinstance(data, dict) or not isinstance(data.get("transaction"), dict):
        raise ValueError("expected an object with a 'transaction' object")
    t: dict[str, object] = data["transaction"]
    method = t.get("payment_method")
    if method is not None and not isinstance(method, str):
        raise ValueError("payment_method must be a string or null")
    status = normalise_status(require_str(t, "status"))
    if status not in KNOWN_STATUSES:
        logger.warning("pakasir detail: unknown transaction status %r", status)
    return PakasirTransaction(
        project=require_str(t, "project"),
        order_id=require_str(t, "order_id"),
        amount=_gateway_amount(t.get("amount"), "amount"),
        status=status,
        payment_method=method or None,
        completed_at=optional_timestamp(t, "completed_at"),
    )
