"""Attribute matching of C-FIND (PS3.4 C.2.2.2), pure: a matching key's value becomes a :class:`Condition`
that says whether a stored value matches. Nothing here knows the index; the index backends translate the
conditions they can into their own query language and ask :meth:`Condition.matches` for the rest.

The rules, one class each:

- C.2.2.2.1 single value (:class:`Single`): exact and case-sensitive, except PN (see below); a DA, TM or DT
  value matches the stored values it denotes at its own precision ("1030" matches 10:30:00-10:30:59.999999);
- C.2.2.2.2 list of UIDs (:class:`UIDList`): a UI key with several values matches any of them;
- C.2.2.2.3 universal (:data:`UNIVERSAL`): a zero-length key matches everything (it is a return key);
- C.2.2.2.4 wild card (:class:`Wildcard`): ``*`` any run of characters, ``?`` one character, for the text
  VRs (AE CS LO LT PN SH ST UC UR UT); a key of only ``*`` is universal;
- C.2.2.2.5 range (:class:`Range`) of DA, TM and DT: ``a-b``, ``-b``, ``a-``, ends inclusive at their own
  precision; DT values compared as instants (a UTC offset in the key or the stored value is applied; a value
  without one is in ``local_offset``);
- C.2.2.2.5.1 combined date and time (:class:`DateTimeRange`): a DA key and its TM key taken as one DT range
  (when the requestor negotiated it, PS3.4 C.3.4);
- C.2.2.2.6 sequence (:class:`SequenceMatch`): a sequence key with one item matches if any stored item
  matches every key of that item; an empty item is universal;
- C.2.2.2.7 empty value: a key of ``""`` (two double quotes) matches an entity whose value is empty or absent;
- multiple values: a key with several values (other than a UI list) matches if any of them matches
  (:class:`AnyOf`), and a stored multi-valued attribute (``CT\\PT``) matches if any of its values does.

**PN policy.** A PN key matches case- and accent-insensitively by default (``"muller^*"`` matches
``Müller^Hans``): both sides are compared after :func:`normalise_pn` (Unicode NFKD, combining marks removed,
case folded). ``pn_policy="exact"`` makes PN case-sensitive like every other VR. PS3.4 C.2.2.2.1 allows
either for PN and only for PN.

Values are compared as decoded text (Specific Character Set applied before they reach this module).
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional, Union

__all__ = [
    "AnyOf",
    "Condition",
    "DateTimeRange",
    "Empty",
    "PN_POLICIES",
    "Range",
    "SequenceMatch",
    "Single",
    "UIDList",
    "UNIVERSAL",
    "Universal",
    "Wildcard",
    "WILDCARD_VRS",
    "condition",
    "dt_instant",
    "normalise_pn",
    "split_values",
]

#: VRs on which ``*`` and ``?`` are wild cards (PS3.4 C.2.2.2.4).
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
#: VRs that take range matching (PS3.4 C.2.2.2.5).
RANGE_VRS = frozenset({"DA", "TM", "DT"})
#: ``insensitive`` (default): PN compared without case and accents; ``exact``: PN as every other VR.
PN_POLICIES = ("insensitive", "exact")

StoredValue = Union[str, None, Sequence[Any]]


def normalise_pn(text: str) -> str:
    """A person name (or a PN wild-card pattern) as PN matching compares it: NFKD, combining marks removed,
    case folded. ``*`` and ``?`` are kept."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def split_values(text: str) -> list[str]:
    """A stored or requested string's values (PS3.5 6.4: backslash-separated), each trimmed."""
    return [v.strip(" ") for v in text.split("\\")] if "\\" in text else [text.strip(" ")]


class Condition:
    """A matching key's condition on one attribute."""

    #: True for a zero-length key (nothing to match).
    universal = False

    def matches(self, value: StoredValue) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _each(self, value: StoredValue, one: Any) -> bool:
        """Stored multi-valued attributes match if any value does; a missing or empty value matches nothing."""
        if value is None:
            return False
        if isinstance(value, str):
            if value == "":
                return False
            return any(one(v) for v in split_values(value))
        return any(one(str(v)) for v in value if str(v) != "")


@dataclass(frozen=True)
class Universal(Condition):
    """C.2.2.2.3: a zero-length key (or ``*``) matches every entity."""

    universal = True

    def matches(self, value: StoredValue) -> bool:
        return True


UNIVERSAL = Universal()


@dataclass(frozen=True)
class Empty(Condition):
    """C.2.2.2.7: a key of ``""`` matches entities whose value is empty or absent."""

    def matches(self, value: StoredValue) -> bool:
        if value is None:
            return True
        if isinstance(value, str):
            return value.strip(" ") == ""
        return all(str(v) == "" for v in value)


@dataclass(frozen=True)
class Single(Condition):
    """C.2.2.2.1: single value. PN (with ``fold``) compares normalised; DA/TM/DT at the key's precision."""

    value: str
    vr: str = "LO"
    fold: bool = False

    def matches(self, value: StoredValue) -> bool:
        if self.vr in RANGE_VRS:
            rng = Range(self.value, self.value, self.vr)
            return rng.matches(value)
        want = normalise_pn(self.value) if self.fold else self.value
        if self.fold:
            return self._each(value, lambda v: normalise_pn(v) == want)
        if self.vr in ("IS", "DS", "US", "UL", "SS", "SL", "FL", "FD"):
            return self._each(value, lambda v: _number(v) == _number(want))
        return self._each(value, lambda v: v == want)


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class UIDList(Condition):
    """C.2.2.2.2: any of these UIDs."""

    uids: frozenset[str]

    def matches(self, value: StoredValue) -> bool:
        return self._each(value, lambda v: v in self.uids)


@dataclass(frozen=True)
class Wildcard(Condition):
    """C.2.2.2.4: ``*`` and ``?``; case-sensitive except PN with ``fold``."""

    pattern: str
    fold: bool = False
    regex: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", _wildcard_regex(normalise_pn(self.pattern) if self.fold else self.pattern))

    def matches(self, value: StoredValue) -> bool:
        rx = self.regex
        if self.fold:
            return self._each(value, lambda v: rx.fullmatch(normalise_pn(v)) is not None)
        return self._each(value, lambda v: rx.fullmatch(v) is not None)

    @property
    def prefix(self) -> str:
        """The literal text before the first wild card (what an index can seek to)."""
        m = re.search(r"[*?]", self.pattern)
        return self.pattern[: m.start()] if m else self.pattern


@lru_cache(maxsize=256)
def _wildcard_regex(pattern: str) -> Any:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


# --- dates, times, date-times ----------------------------------------------------------------------------

_DA = re.compile(r"(\d{4})(?:(\d{2})(\d{2})?)?$")
_TM = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
_DT = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")
_MAXTIME = _dt.time(23, 59, 59, 999999)


def _da_bounds(text: str) -> Optional[tuple[_dt.date, _dt.date]]:
    """The first and last day a DA value (or its older ``YYYY.MM.DD`` form) denotes."""
    m = _DA.match(text.replace(".", "").strip())
    if m is None:
        return None
    y, mo, d = int(m[1]), m[2], m[3]
    try:
        if mo is None:
            return _dt.date(y, 1, 1), _dt.date(y, 12, 31)
        if d is None:
            first = _dt.date(y, int(mo), 1)
            nxt = _dt.date(y + (first.month == 12), first.month % 12 + 1, 1)
            return first, nxt - _dt.timedelta(days=1)
        day = _dt.date(y, int(mo), int(d))
    except ValueError:
        return None
    return day, day


def _tm_bounds(text: str) -> Optional[tuple[_dt.time, _dt.time]]:
    """The first and last instant of the day a TM value denotes at its precision."""
    m = _TM.match(text.strip())
    if m is None:
        return None
    try:
        h = int(m[1])
        if m[2] is None:
            return _dt.time(h), _dt.time(h, 59, 59, 999999)
        mi = int(m[2])
        if m[3] is None:
            return _dt.time(h, mi), _dt.time(h, mi, 59, 999999)
        s = min(int(m[3]), 59)  # a leap second (60) counts as 59
        if m[4] is None:
            return _dt.time(h, mi, s), _dt.time(h, mi, s, 999999)
        frac = m[4]
        lo = int(frac.ljust(6, "0"))
        hi = int(frac.ljust(6, "9"))
        return _dt.time(h, mi, s, lo), _dt.time(h, mi, s, hi)
    except ValueError:
        return None


def dt_instant(text: str, local_offset: Optional[_dt.timezone] = None, upper: bool = False) -> Optional[_dt.datetime]:
    """A DT value as an aware instant: its first (or with ``upper`` its last) instant at its precision, in its
    own UTC offset, or ``local_offset`` (default UTC) when it has none."""
    m = _DT.match(text.strip())
    if m is None:
        return None
    y = int(m[1])
    parts = [m[i] for i in range(2, 7)]
    frac = m[7]
    tz = local_offset or _dt.timezone.utc
    if m[8]:
        sign = -1 if m[8][0] == "-" else 1
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(m[8][1:3]), minutes=int(m[8][3:5])))
    try:
        if parts[0] is None:
            base = _dt.datetime(y, 12 if upper else 1, 31 if upper else 1)
        elif parts[1] is None:
            mo = int(parts[0])
            if upper:
                nxt = _dt.datetime(y + (mo == 12), mo % 12 + 1, 1)
                base = nxt - _dt.timedelta(days=1)
            else:
                base = _dt.datetime(y, mo, 1)
        else:
            base = _dt.datetime(y, int(parts[0]), int(parts[1]))
        fields = [int(p) if p is not None else None for p in parts[2:]]
        h, mi, s = fields
        if h is None:
            t = _MAXTIME if upper else _dt.time()
        elif mi is None:
            t = _dt.time(h, 59, 59, 999999) if upper else _dt.time(h)
        elif s is None:
            t = _dt.time(h, mi, 59, 999999) if upper else _dt.time(h, mi)
        elif frac is None:
            t = _dt.time(h, mi, min(s, 59), 999999 if upper else 0)
        else:
            t = _dt.time(h, mi, min(s, 59), int(frac.ljust(6, "9" if upper else "0")))
    except ValueError:
        return None
    return _dt.datetime.combine(base.date(), t, tz)


@dataclass(frozen=True)
class Range(Condition):
    """C.2.2.2.5: ``lo-hi`` of DA, TM or DT (an empty end is open); ends inclusive at their precision.

    A TM range whose lower end is after its upper end spans midnight (PS3.4 C.2.2.2.5, Note)."""

    lo: Optional[str]
    hi: Optional[str]
    vr: str = "DA"
    local_offset: Optional[_dt.timezone] = None

    def matches(self, value: StoredValue) -> bool:
        return self._each(value, self._one)

    def _one(self, v: str) -> bool:
        if self.vr == "DA":
            got = _da_bounds(v)
            if got is None:
                return False
            da_lo = _da_bounds(self.lo) if self.lo else None
            da_hi = _da_bounds(self.hi) if self.hi else None
            return (da_lo is None or got[1] >= da_lo[0]) and (da_hi is None or got[0] <= da_hi[1])
        if self.vr == "TM":
            t = _tm_bounds(v)
            if t is None:
                return False
            lo_b = _tm_bounds(self.lo) if self.lo else None
            hi_b = _tm_bounds(self.hi) if self.hi else None
            lo_t = lo_b[0] if lo_b else None
            hi_t = hi_b[1] if hi_b else None
            if lo_t is not None and hi_t is not None and lo_t > hi_t:  # over midnight
                return t[1] >= lo_t or t[0] <= hi_t
            return (lo_t is None or t[1] >= lo_t) and (hi_t is None or t[0] <= hi_t)
        first = dt_instant(v, self.local_offset)
        last = dt_instant(v, self.local_offset, upper=True)
        if first is None or last is None:
            return False
        lo_i = dt_instant(self.lo, self.local_offset) if self.lo else None
        hi_i = dt_instant(self.hi, self.local_offset, upper=True) if self.hi else None
        return (lo_i is None or last >= lo_i) and (hi_i is None or first <= hi_i)

    @property
    def da_bounds(self) -> tuple[Optional[str], Optional[str]]:
        """For a DA range: the inclusive YYYYMMDD bounds (what an index compares as text), None when open."""
        lo = _da_bounds(self.lo) if self.lo else None
        hi = _da_bounds(self.hi) if self.hi else None
        return (lo[0].strftime("%Y%m%d") if lo else None, hi[1].strftime("%Y%m%d") if hi else None)


@dataclass(frozen=True)
class DateTimeRange(Condition):
    """C.2.2.2.5.1: a DA key and a TM key matched together as one DT range against (date, time) pairs."""

    date_key: str
    time_key: str
    local_offset: Optional[_dt.timezone] = None

    def matches(self, value: StoredValue) -> bool:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            return False
        date, time = value
        if not date:
            return False
        dt_value = str(date).replace(".", "") + (str(time).replace(":", "") if time else "")
        return self._range().matches(dt_value)

    @property
    def date_bounds(self) -> tuple[Optional[str], Optional[str]]:
        """The inclusive YYYYMMDD bounds of the date part (what an index compares as text), None when open."""
        d_lo, d_hi = _split_range(self.date_key) or (self.date_key, self.date_key)
        return Range(d_lo, d_hi, "DA").da_bounds

    def _range(self) -> Range:
        d_lo, d_hi = _split_range(self.date_key) or (self.date_key, self.date_key)
        t_lo, t_hi = _split_range(self.time_key) or (self.time_key, self.time_key)
        if not self.time_key:
            t_lo = t_hi = None
        lo = (d_lo or "") + (t_lo or "") if d_lo else None
        hi = (d_hi or "") + (t_hi or "") if d_hi else None
        return Range(lo.replace(":", "") if lo else None, hi.replace(":", "") if hi else None, "DT", self.local_offset)


@dataclass(frozen=True)
class SequenceMatch(Condition):
    """C.2.2.2.6: the key's one item (keyword -> Condition) against the stored items (mappings)."""

    item: tuple[tuple[str, Condition], ...]

    def matches(self, value: StoredValue) -> bool:
        if not self.item or all(c.universal for _, c in self.item):
            return True
        if not value or isinstance(value, str):
            return False
        for stored in value:
            if isinstance(stored, Mapping):
                if all(cond.matches(_item_value(stored, kw)) for kw, cond in self.item):
                    return True
            else:
                if all(cond.matches(_item_value(stored, kw)) for kw, cond in self.item):
                    return True
        return False


def _item_value(item: Any, keyword: str) -> StoredValue:
    if isinstance(item, Mapping):
        return item.get(keyword)
    v = getattr(item, keyword, None)
    if v is None:
        return None
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return [str(x) for x in v]
    return v if isinstance(v, (str, list)) else str(v)


@dataclass(frozen=True)
class AnyOf(Condition):
    """A key with several values: an entity matches if any of the conditions does."""

    conditions: tuple[Condition, ...]

    def matches(self, value: StoredValue) -> bool:
        return any(c.matches(value) for c in self.conditions)


# --- building conditions ------------------------------------------------------------------------------------


def _split_range(text: str) -> Optional[tuple[Optional[str], Optional[str]]]:
    """``a-b``/``-b``/``a-`` as (a, b), or None when ``text`` is no range. DT values may carry a UTC offset
    (``-0500``): the dash that splits the range is the one whose two sides are both valid (or empty)."""
    if "-" not in text:
        return None
    for i, ch in enumerate(text):
        if ch != "-":
            continue
        lo, hi = text[:i].strip(), text[i + 1 :].strip()
        if (not lo or _valid_point(lo)) and (not hi or _valid_point(hi)) and (lo or hi):
            return (lo or None, hi or None)
    return None


def _valid_point(text: str) -> bool:
    return _valid_dt(text) or bool(_TM.match(text) or _DA.match(text.replace(".", "")))


def _valid_dt(text: str) -> bool:
    """A DT value whose UTC offset, if any, is one (-1200 to +1400, PS3.5 Table 6.2-1)."""
    m = _DT.match(text)
    if m is None:
        return False
    if m[8]:
        hours, minutes = int(m[8][1:3]), int(m[8][3:5])
        return minutes < 60 and (hours <= 12 if m[8][0] == "-" else hours <= 14)
    return True


def condition(
    vr: str,
    value: Any,
    pn_policy: str = "insensitive",
    local_offset: Optional[_dt.timezone] = None,
) -> Condition:
    """The condition of a matching key of this VR whose value (as pydicom gives it: str, a multi-value, a PN,
    a list of items for SQ) is ``value``."""
    if pn_policy not in PN_POLICIES:
        raise ValueError(f"pn_policy must be one of {PN_POLICIES}, not {pn_policy!r}")
    if vr == "SQ":
        items = list(value or [])
        if not items:
            return UNIVERSAL
        first = items[0]
        item: list[tuple[str, Condition]] = []
        for elem in first:
            item.append((elem.keyword or str(elem.tag), condition(elem.VR, elem.value, pn_policy, local_offset)))
        return SequenceMatch(tuple(item))
    values = _as_texts(value)
    if not values or all(v == "" for v in values):
        return UNIVERSAL
    if vr == "UI":
        uids = frozenset(v.strip("\x00 ") for v in values if v)
        return UIDList(uids)
    conds = [_one(vr, v, pn_policy, local_offset) for v in values if v != ""]
    if any(c.universal for c in conds):
        return UNIVERSAL
    return conds[0] if len(conds) == 1 else AnyOf(tuple(conds))


def _as_texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v).strip(" ") for v in value]
    text = str(value)
    return split_values(text) if "\\" in text else [text.strip(" ")]


def _one(vr: str, text: str, pn_policy: str, local_offset: Optional[_dt.timezone]) -> Condition:
    if text == '""':
        return Empty()
    fold = vr == "PN" and pn_policy == "insensitive"
    if vr == "DT" and _valid_dt(text) and len(text) > 8:
        # One value with a UTC offset ("20200101120000-0500"), not a range ending in year 0500.
        return Range(text, text, vr, local_offset)
    if vr in RANGE_VRS:
        rng = _split_range(text) if "-" in text else None
        if rng is not None:
            return Range(rng[0], rng[1], vr, local_offset)
        if vr == "DT":
            return Range(text, text, vr, local_offset)
        return Single(text, vr)
    if vr in WILDCARD_VRS and ("*" in text or "?" in text):
        if text.strip("*") == "":
            return UNIVERSAL
        return Wildcard(text, fold)
    return Single(text, vr, fold)


def matches_all(conditions: Mapping[str, Condition], record: Mapping[str, StoredValue]) -> bool:
    """True if ``record`` (keyword -> stored value) satisfies every condition (absent keys: None)."""
    return all(c.matches(record.get(k)) for k, c in conditions.items())


def combined(
    conditions: dict[str, Condition], pairs: Iterable[tuple[str, str]], raw: Mapping[str, str], local_offset: Any = None
) -> dict[str, Condition]:
    """C.2.2.2.5.1: for each (date keyword, time keyword) pair whose date key is a range or single value and
    whose time key is given, replaces both with one :class:`DateTimeRange` under the key ``"date\\time"``."""
    out = dict(conditions)
    for dk, tk in pairs:
        d, t = raw.get(dk, ""), raw.get(tk, "")
        if (
            d
            and t
            and not isinstance(out.get(dk), (Universal, Empty))
            and not isinstance(out.get(tk), (Universal, Empty))
        ):
            out.pop(dk, None)
            out.pop(tk, None)
            out[f"{dk}\\{tk}"] = DateTimeRange(d, t, local_offset)
    return out
