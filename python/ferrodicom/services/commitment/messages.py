"""The Storage Commitment module's data sets (PS3.4 Table J.3-1 and J.3-2), read and written without pydicom.

A request or a result may reference tens of thousands of instances: pydicom spends ~70 us per sequence item
reading one (0.7 s for 10,000) and as much building one, where walking the bytes takes a few microseconds.
Both data sets are flat: a Transaction UID, then sequences of items holding UIDs (and a Failure Reason). They
are written and read here in Explicit or Implicit VR Little Endian; other transfer syntaxes (Explicit VR Big
Endian, Deflated) go through the Rust codec to and from Explicit VR Little Endian. Reading walks every element
(undefined lengths included) and refuses a data set that does not end where its elements do (:class:`Unreadable`;
pydicom would return what it read of a truncated one).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ferrodicom import _core
from ferrodicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE

TRANSACTION_UID = 0x00081195
REFERENCED_SOP_SEQUENCE = 0x00081199
FAILED_SOP_SEQUENCE = 0x00081198
REFERENCED_SOP_CLASS_UID = 0x00081150
REFERENCED_SOP_INSTANCE_UID = 0x00081155
FAILURE_REASON = 0x00081197

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"))
#: Sequences read as such in Implicit VR (where an element does not say it is one).
_SEQUENCES = frozenset((REFERENCED_SOP_SEQUENCE, FAILED_SOP_SEQUENCE))

Elements = dict[int, Union[bytes, list[Any]]]


class Unreadable(ValueError):
    """The data set cannot be read."""


@dataclass
class ActionInfo:
    """A Storage Commitment Request (PS3.4 Table J.3-1): ``items`` as (SOP Class UID, SOP Instance UID), ""
    for a missing value; None for an attribute the data set does not have."""

    transaction_uid: Optional[str]
    items: Optional[list[tuple[str, str]]]


@dataclass
class EventInfo:
    """A Storage Commitment Result (PS3.4 Table J.3-2)."""

    transaction_uid: Optional[str]
    committed: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, Optional[int]]] = field(default_factory=list)


# --- writing -----------------------------------------------------------------------------------------------


def _element(tag: int, vr: bytes, value: bytes, explicit: bool) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    group, elem = tag >> 16, tag & 0xFFFF
    if not explicit:
        return struct.pack("<HHI", group, elem, len(value)) + value
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def _uid(tag: int, uid: str, explicit: bool) -> bytes:
    return _element(tag, b"UI", uid.encode("ascii"), explicit)


def _sequence(tag: int, items: list[bytes], explicit: bool) -> bytes:
    item = struct.Struct("<HHI")
    body = b"".join(item.pack(0xFFFE, 0xE000, len(it)) + it for it in items)
    return _element(tag, b"SQ", body, explicit)


def _in(data: bytes, transfer_syntax: str) -> bytes:
    """``data`` (Explicit VR Little Endian unless the syntax is Implicit) in ``transfer_syntax``."""
    if transfer_syntax in (IMPLICIT_VR_LE, EXPLICIT_VR_LE):
        return data
    return _core.transcode_dataset(data, EXPLICIT_VR_LE, transfer_syntax)


def encode_action(transaction_uid: str, items: list[tuple[str, str]], transfer_syntax: str) -> bytes:
    """The N-ACTION's Action Information: Transaction UID and Referenced SOP Sequence (PS3.4 Table J.3-1)."""
    explicit = transfer_syntax != IMPLICIT_VR_LE
    refs = [
        _uid(REFERENCED_SOP_CLASS_UID, cls, explicit) + _uid(REFERENCED_SOP_INSTANCE_UID, inst, explicit)
        for cls, inst in items
    ]
    data = _uid(TRANSACTION_UID, transaction_uid, explicit) + _sequence(REFERENCED_SOP_SEQUENCE, refs, explicit)
    return _in(data, transfer_syntax)


def encode_result(
    transaction_uid: str,
    committed: list[tuple[str, str]],
    failed: list[tuple[str, str, int]],
    transfer_syntax: str,
) -> bytes:
    """The N-EVENT-REPORT's Event Information (PS3.4 Table J.3-2): Transaction UID, the Failed SOP Sequence
    with a Failure Reason per item when any failed, the Referenced SOP Sequence when any succeeded (both
    Type 1C), so that together they hold every instance of the request (J.3.3.1.2)."""
    explicit = transfer_syntax != IMPLICIT_VR_LE
    data = _uid(TRANSACTION_UID, transaction_uid, explicit)
    if failed:
        items = [
            _uid(REFERENCED_SOP_CLASS_UID, cls, explicit)
            + _uid(REFERENCED_SOP_INSTANCE_UID, inst, explicit)
            + _element(FAILURE_REASON, b"US", struct.pack("<H", reason), explicit)
            for cls, inst, reason in failed
        ]
        data += _sequence(FAILED_SOP_SEQUENCE, items, explicit)
    if committed:
        refs = [
            _uid(REFERENCED_SOP_CLASS_UID, cls, explicit) + _uid(REFERENCED_SOP_INSTANCE_UID, inst, explicit)
            for cls, inst in committed
        ]
        data += _sequence(REFERENCED_SOP_SEQUENCE, refs, explicit)
    return _in(data, transfer_syntax)


# --- reading -----------------------------------------------------------------------------------------------


def _parse(buf: bytes, pos: int, end: int, explicit: bool, delimited: bool) -> tuple[Elements, int]:
    """Elements from ``pos`` to ``end`` (or to an item delimiter when ``delimited``)."""
    out: Elements = {}
    unpack = struct.unpack_from
    while pos < end:
        if pos + 8 > end:
            raise Unreadable(f"truncated element header at byte {pos}")
        group, elem = unpack("<HH", buf, pos)
        tag = (group << 16) | elem
        if tag == _ITEM_END:
            if not delimited:
                raise Unreadable(f"item delimiter outside an item at byte {pos}")
            return out, pos + 8
        vr = b""
        if explicit:
            vr = buf[pos + 4 : pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    raise Unreadable(f"truncated element header at byte {pos}")
                (length,) = unpack("<I", buf, pos + 8)
                pos += 12
            else:
                (length,) = unpack("<H", buf, pos + 6)
                pos += 8
            is_sequence = vr == b"SQ" or (vr == b"UN" and length == _UNDEFINED)
        else:
            (length,) = unpack("<I", buf, pos + 4)
            pos += 8
            is_sequence = tag in _SEQUENCES or length == _UNDEFINED
        if is_sequence:
            items, pos = _items(buf, pos, length, end, explicit and vr != b"UN")
            out[tag] = items
            continue
        if length == _UNDEFINED or pos + length > end:
            raise Unreadable(f"({group:04X},{elem:04X}) runs past the end of the data set")
        out[tag] = buf[pos : pos + length]
        pos += length
    if delimited:
        raise Unreadable("an item of undefined length has no delimiter")
    return out, pos


def _items(buf: bytes, pos: int, length: int, end: int, explicit: bool) -> tuple[list[Elements], int]:
    stop = end if length == _UNDEFINED else pos + length
    if stop > end:
        raise Unreadable("a sequence runs past the end of the data set")
    items: list[Elements] = []
    while pos < stop:
        if pos + 8 > stop:
            raise Unreadable(f"truncated item header at byte {pos}")
        group, elem, item_length = struct.unpack_from("<HHI", buf, pos)
        tag = (group << 16) | elem
        pos += 8
        if tag == _SEQUENCE_END:
            if length != _UNDEFINED:
                raise Unreadable("sequence delimiter in a sequence of defined length")
            return items, pos
        if tag != _ITEM:
            raise Unreadable(f"({group:04X},{elem:04X}) where a sequence item belongs")
        if item_length == _UNDEFINED:
            item, pos = _parse(buf, pos, stop, explicit, True)
        else:
            if pos + item_length > stop:
                raise Unreadable("an item runs past the end of its sequence")
            item, _ = _parse(buf, pos, pos + item_length, explicit, False)
            pos += item_length
        items.append(item)
    if length == _UNDEFINED:
        raise Unreadable("a sequence of undefined length has no delimiter")
    return items, pos


def read(data: bytes, transfer_syntax: str) -> Elements:
    """Top-level elements by tag: a value's bytes, or a sequence as a list of items (dicts alike)."""
    if transfer_syntax not in (IMPLICIT_VR_LE, EXPLICIT_VR_LE):
        try:
            data = _core.transcode_dataset(data, transfer_syntax, EXPLICIT_VR_LE)
        except _core.DicomError as exc:
            raise Unreadable(str(exc)) from None
        transfer_syntax = EXPLICIT_VR_LE
    return _parse(data, 0, len(data), transfer_syntax == EXPLICIT_VR_LE, False)[0]


def _text(value: Any) -> str:
    if not isinstance(value, bytes):
        raise Unreadable("a sequence where a UID belongs")
    return value.rstrip(b"\0 ").lstrip(b" ").decode("ascii", "replace")


def _reference(item: Elements) -> tuple[str, str]:
    cls, inst = item.get(REFERENCED_SOP_CLASS_UID), item.get(REFERENCED_SOP_INSTANCE_UID)
    return ("" if cls is None else _text(cls)), ("" if inst is None else _text(inst))


def _references(elements: Elements, tag: int) -> Optional[list[Elements]]:
    value = elements.get(tag)
    if value is None:
        return None
    if isinstance(value, bytes):
        if value:
            raise Unreadable(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is not a sequence")
        return []
    return value


def action_info(data: Optional[bytes], transfer_syntax: str) -> ActionInfo:
    """The request's Transaction UID and references (None for an attribute not in the data set). Raises
    :class:`Unreadable` when the data set cannot be read at all."""
    elements = _elements(data, transfer_syntax)
    uid = elements.get(TRANSACTION_UID)
    refs = _references(elements, REFERENCED_SOP_SEQUENCE)
    return ActionInfo(None if uid is None else _text(uid), None if refs is None else [_reference(i) for i in refs])


def event_info(data: Optional[bytes], transfer_syntax: str) -> EventInfo:
    """The result's Transaction UID, committed and failed instances. Raises :class:`Unreadable`."""
    elements = _elements(data, transfer_syntax)
    uid = elements.get(TRANSACTION_UID)
    info = EventInfo(None if uid is None else _text(uid))
    info.committed = [_reference(i) for i in _references(elements, REFERENCED_SOP_SEQUENCE) or []]
    for item in _references(elements, FAILED_SOP_SEQUENCE) or []:
        reason = item.get(FAILURE_REASON)
        code = struct.unpack("<H", reason[:2])[0] if isinstance(reason, bytes) and len(reason) >= 2 else None
        info.failed.append((*_reference(item), code))
    return info


def _elements(data: Optional[bytes], transfer_syntax: str) -> Elements:
    if not data:
        return {}
    try:
        return read(data, transfer_syntax)
    except struct.error as exc:
        raise Unreadable(str(exc)) from None
