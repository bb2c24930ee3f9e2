"""Identifiers shown to people: invoices, voucher codes, bank ids (CSPRNG, unambiguous)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

# No 0/O or 1/I: invoices are read aloud to support and typed back.
INVOICE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
VOUCHER_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def new_invoice_id(prefix: str = "QC", now: datetime | None = None) -> str:
    """`QC` + yymmdd + 8 random characters: 16 characters, under the seed's 20."""
    stamp = (now or datetime.now(UTC)).strftime("%y%m%d")
    return prefix + stamp + "".join(secrets.choice(INVOICE_ALPHABET) for _ in range(8))


def new_voucher_code(length: int = 8) -> str:
    """An 8-character A–Z0–9 code from the OS CSPRNG."""
    return "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(length))


def new_bank_id() -> str:
    """A 6-digit internal account id (uniqueness is the database's job)."""
    return f"{secrets.randbelow(900000) + 100000}"
