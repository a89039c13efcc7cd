"""PDUs for tools and tests (PS3.8 §9.3): ``decode(data)`` gives a typed object, ``.encode()`` the bytes."""

from __future__ import annotations

from ferrodicom._core import Pdu, decode_pdu

__all__ = ["Pdu", "decode"]


def decode(data: bytes, max_length: int | None = None) -> Pdu:
    """Decodes exactly one PDU; raises :class:`ferrodicom.PduError` (with ``.offset``) if malformed."""
    return decode_pdu(bytes(data), max_length)
