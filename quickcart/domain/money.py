"""Money rules: IDR amounts are whole rupiah held in Decimal; the QRIS fee formula."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext

from babel.numbers import format_currency

ZERO = Decimal("0")
QRIS_FEE_RATE = Decimal("0.007")
QRIS_FEE_FIXED = Decimal("310")
# Largest amount a DECIMAL(15,2) column holds, in whole rupiah.
MAX_AMOUNT = Decimal("9999999999999")
_THOUSANDS = re.compile(r"\d{1,3}([.,]\d{3})+")


class InvalidAmountError(ValueError):
    """An amount that is not a whole, non-negative rupiah value within range."""


def rupiah(value: Decimal | int | str) -> Decimal:
    """Parse `value` as whole rupiah; refuses floats, fractions, negatives and overflow."""
    if isinstance(value, (float, bool)):
        raise InvalidAmountError("amounts must not be floats")
    try:
        amount = _parse_text(value) if isinstance(value, str) else Decimal(value)
    except InvalidOperation as exc:
        raise InvalidAmountError(f"not an amount: {value!r}") from exc
    if not amount.is_finite() or amount != amount.to_integral_value():
        raise InvalidAmountError(f"not a whole rupiah amount: {value!r}")
    if amount < ZERO or amount > MAX_AMOUNT:
        raise InvalidAmountError(f"amount out of range: {value!r}")
    return amount.quantize(Decimal("1"))


def _parse_text(text: str) -> Decimal:
    """Read `25000`, `25.000`, `Rp 25.000` or `25000.00`; dots grouping thousands are dropped."""
    cleaned = text.strip().removeprefix("Rp").removeprefix("rp").strip().replace(" ", "")
    if _THOUSANDS.fullmatch(cleaned):
        cleaned = cleaned.replace(".", "").replace(",", "")
    return Decimal(cleaned)


def qris_fee(amount: Decimal) -> Decimal:
    """Pakasir's QRIS fee estimate: 0.7% of `amount`, rounded up to whole rupiah, plus Rp310."""
    if amount <= ZERO:
        return ZERO
    percent = (amount * QRIS_FEE_RATE).to_integral_value(rounding=ROUND_CEILING)
    return percent + QRIS_FEE_FIXED


def format_idr(amount: Decimal) -> str:
    """Render as Indonesians write it (CLDR's id_ID rupiah, whole rupiah): Rp12.500."""
    if not amount.is_finite():
        raise ValueError(f"not an amount: {amount!r}")
    # Rounded here (half-even, as before) and shown without decimals; `or ZERO` drops the
    # sign of a negative zero, which Babel would print as -Rp0.
    whole = amount.to_integral_value() or ZERO
    with localcontext() as ctx:
        # Babel quantizes in the current context: room for every digit of a huge amount.
        ctx.prec = max(ctx.prec, whole.adjusted() + 2)
        return format_currency(whole, "IDR", format="¤#,##0", locale="id_ID",
                               currency_digits=False)


def as_text(amount: Decimal | int) -> str:
    """Whole rupiah as text for results and messages: Decimal('3000.00') → '3000'."""
    return str(Decimal(amount).quantize(Decimal("1")))
