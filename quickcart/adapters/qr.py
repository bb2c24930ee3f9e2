"""QRIS payload → PNG, for the payment photo."""

from __future__ import annotations

import io

import segno


def qr_png(payload: str, scale: int = 8) -> bytes:
    """Render `payload` as a PNG QR code (error correction M, as QRIS apps expect)."""
    buffer = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()
