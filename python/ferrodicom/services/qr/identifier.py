"""A C-FIND, C-MOVE or C-GET Identifier as a matching tree for the index (PS3.4 C.4.1.1.3, C.4.2.1.4), and a
matched entity as a response Identifier in the requestor's character set (C.4.1.1.3.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from ferrodicom.archive.index import COMPUTED, Query
from ferrodicom.archive.matching import UNIVERSAL, Condition, combined, condition
from ferrodicom.services.qr.models import ROOT_LEVELS, UNIQUE_KEY

__all__ = ["BadIdentifier", "Parsed", "parse", "response"]

#: Date and time keys matched together when combined date-time matching is negotiated (C.2.2.2.5.1).
DATE_TIME_PAIRS = (
    ("StudyDate", "StudyTime"),
    ("SeriesDate", "SeriesTime"),
    ("ContentDate", "ContentTime"),
    ("AcquisitionDate", "AcquisitionTime"),
)
#: Attributes of the identifier that are not keys.
NOT_KEYS = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "TimezoneOffsetFromUTC",
                      "QueryRetrieveView", "InstanceAvailability"})  # fmt: skip
_LEVEL_DEPTH = {"PATIENT": 0, "STUDY": 1, "SERIES": 2, "IMAGE": 3}


class BadIdentifier(ValueError):
    """The identifier does not fit the SOP class (A900) or cannot be processed (C000): ``status``, message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Parsed:
    query: Query
    #: The requested elements, in order: what each response carries.
    requested: list[DataElement] = field(default_factory=list)
    #: Matching keys given with a value that the index does not hold (matched as universal: FF01).
    unsupported: list[str] = field(default_factory=list)
    charset: list[str] = field(default_factory=list)


def parse(
    ds: Dataset,
    root: str,
    level_of: Callable[[str], Optional[str]],
    relational: bool = False,
    combined_datetime: bool = False,
    pn_policy: str = "insensitive",
    retrieve: bool = False,
) -> Parsed:
    """The identifier ``ds`` of a ``root`` ("patient"/"study") model as a :class:`Parsed` query; ``level_of``
    says which level of the index holds a keyword (None: not held). Raises :class:`BadIdentifier`."""
    level = str(ds.get("QueryRetrieveLevel", "") or "").strip().upper()
    levels = ROOT_LEVELS[root]
    if not level:
        raise BadIdentifier(0xA900, "no Query/Retrieve Level (0008,0052)")
    if level not in levels:
        raise BadIdentifier(0xA900, f"Query/Retrieve Level {level!r} is not one of {'/'.join(levels)} of this model")
    depth = _LEVEL_DEPTH[level]
    conditions: dict[str, Condition] = {}
    raw: dict[str, str] = {}
    requested: list[DataElement] = []
    unsupported: list[str] = []
    computed: list[str] = []
    for elem in ds:
        kw = elem.keyword
        if elem.tag.group in (0x0000, 0x0002) or elem.tag.is_private:
            continue
        requested.append(elem)
        if kw in NOT_KEYS or not kw:
            continue
        try:
            value = elem.value
        except Exception as exc:  # noqa: BLE001 - a value pydicom cannot decode
            raise BadIdentifier(0xC000, f"cannot decode {kw}: {exc}") from None
        held = level_of(kw)
        if kw in COMPUTED:
            computed.append(kw)
        try:
            cond = condition(elem.VR, value, pn_policy) if not elem.is_empty else UNIVERSAL
        except ValueError as exc:
            raise BadIdentifier(0xC000, f"{kw}: {exc}") from None
        if cond.universal:
            continue
        if held is None or elem.VR == "SQ":
            unsupported.append(kw)
            continue
        if _LEVEL_DEPTH[held] > depth and not relational:
            # Hierarchical: keys below the level take no part in matching (PS3.4 C.4.1.2.1).
            unsupported.append(kw)
            continue
        conditions[kw] = cond
        raw[kw] = str(value) if not isinstance(value, (list, tuple)) else "\\".join(map(str, value))
    if retrieve and not conditions:
        # A retrieve names what it wants (its unique keys, PS3.4 C.4.2.2.1): never the whole archive.
        raise BadIdentifier(0xA900, f"no {UNIQUE_KEY[level]} (nor any other key) for a {level}-level retrieve")
    if combined_datetime:
        conditions = combined(conditions, DATE_TIME_PAIRS, raw)
    charset = ds.get("SpecificCharacterSet")
    cs = [] if charset is None else ([charset] if isinstance(charset, str) else list(charset))
    return Parsed(Query(level, conditions, relational, tuple(computed)), requested, unsupported, cs)


_NUMERIC = {"US", "UL", "SS", "SL"}


def response(
    parsed: Parsed,
    row: dict[str, Any],
    retrieve_aet: str,
    level_of: Callable[[str], Optional[str]],
) -> Dataset:
    """The response Identifier for one matched row: every requested element, with the row's value when the
    index holds it at or above the query level, else empty (C.4.1.1.3.2); plus the level, the level's
    unique key, Retrieve AE Title and the Specific Character Set the values need."""
    level = parsed.query.level
    depth = _LEVEL_DEPTH[level]
    out = Dataset()
    out.QueryRetrieveLevel = level
    non_ascii = False
    for elem in parsed.requested:
        kw = elem.keyword
        if kw in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            continue
        if kw == "RetrieveAETitle":
            out.RetrieveAETitle = retrieve_aet
            continue
        held = level_of(kw) if kw else None
        value: Any = None
        if held is not None and _LEVEL_DEPTH[held] <= depth:
            value = row.get(kw)
        if elem.VR == "SQ":
            out.add_new(elem.tag, "SQ", [])
            continue
        if value is None or value == "":
            out.add_new(elem.tag, elem.VR, None)
            continue
        text = str(value)
        if not text.isascii():
            non_ascii = True
        out.add_new(elem.tag, elem.VR, _typed(elem.VR, text))
    unique = UNIQUE_KEY[level]
    if unique not in out and row.get(unique):
        setattr(out, unique, row[unique])
    if "RetrieveAETitle" not in out:
        out.RetrieveAETitle = retrieve_aet
    if non_ascii:
        out.SpecificCharacterSet = _charset_for(parsed.charset, out)
    elif parsed.charset:
        out.SpecificCharacterSet = parsed.charset[0] if len(parsed.charset) == 1 else parsed.charset
    return out


def _typed(vr: str, text: str) -> Any:
    values = text.split("\\")
    if vr in _NUMERIC:
        nums = [int(v) for v in values if v.strip().lstrip("-").isdigit()]
        return nums[0] if len(nums) == 1 else nums
    return values[0] if len(values) == 1 else values


def _charset_for(requested: list[str], ds: Dataset) -> str:
    """The requestor's single-byte character set when every value fits it, else UTF-8 (ISO_IR 192)."""
    if requested == ["ISO_IR 100"]:
        try:
            for elem in ds:
                if isinstance(elem.value, str):
                    elem.value.encode("latin-1")
                elif elem.VR == "PN" and elem.value is not None:
                    str(elem.value).encode("latin-1")
            return "ISO_IR 100"
        except UnicodeEncodeError:
            pass
    return "ISO_IR 192"
