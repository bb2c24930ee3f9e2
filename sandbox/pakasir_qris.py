"""The QRIS strings the Pakasir sandbox hands out: EMVCo merchant-presented QR payloads.

A payload is a flat run of tag-length-value fields ending in tag 63, a CRC-16/CCITT checksum
over everything before it; `parse_tlv` splits one back into its fields for tests.
"""

from __future__ import annotations

from decimal import Decimal


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), the checksum EMVCo QR codes end with."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _tlv(tag: str, value: str) -> str:
    if len(value) > 99:
        raise ValueError(f"EMVCo value for tag {tag} too long")
    return f"{tag}{len(value):02d}{value}"


def build_qris_payload(
    *, total: Decimal, reference: str, merchant: str = "PAKASIR SANDBOX", city: str = "JAKARTA"
) -> str:
    """A dynamic QRIS (EMVCo MPM) string for `total` rupiah, ending in tag 63 with its CRC."""
    body = "".join(
        [
            _tlv("00", "01"),
            _tlv("01", "12"),  # 12 = dynamic (single-use) QR
            _tlv(
                "26",
                _tlv("00", "ID.CO.SANDBOX.WWW")
                + _tlv("01", "936000000000000001")
                + _tlv("02", "SANDBOX0001")
                + _tlv("03", "UMI"),
            ),
            _tlv(
                "51",
                _tlv("00", "ID.CO.QRIS.WWW") + _tlv("02", "ID1020000000001") + _tlv("03", "UMI"),
            ),
            _tlv("52", "5816"),  # MCC: digital goods
            _tlv("53", "360"),  # IDR
            _tlv("54", f"{int(total)}.00"),  # Pakasir writes the amount with ".00"
            _tlv("58", "ID"),
            _tlv("59", merchant[:25]),
            _tlv("60", city[:15]),
            _tlv("61", "10110"),
            _tlv("62", _tlv("05", reference[:25])),
        ]
    )
    crc_input = body + "6304"
    return f"{crc_input}{crc16_ccitt(crc_input.encode('ascii')):04X}"


def parse_tlv(payload: str) -> dict[str, str]:
    """Split a flat EMVCo TLV string into {tag: value}; raises ValueError if truncated."""
    out: dict[str, str] = {}
    i = 0
    while i < len(payload):
        if i + 4 > len(payload):
            raise ValueError("truncated TLV header")
        tag, length = payload[i : i + 2], int(payload[i + 2 : i + 4])
        value = payload[i + 4 : i + 4 + length]
        if len(value) != length:
            raise ValueError(f"truncated TLV value for tag {tag}")
        out[tag] = value
        i += 4 + length
    return out
