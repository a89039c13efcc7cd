"""PS3.4 C.2.2.2 attribute matching (ferrodicom.archive.matching), one table per rule: (VR, key value, stored
value, matches?)."""

from __future__ import annotations

import datetime as dt

import pytest
from pydicom.dataset import Dataset

from ferrodicom.archive.matching import (
    UNIVERSAL,
    AnyOf,
    DateTimeRange,
    Empty,
    Range,
    SequenceMatch,
    Single,
    UIDList,
    Wildcard,
    combined,
    condition,
    normalise_pn,
)


def check(vr, key, stored, expected, **kw):
    cond = condition(vr, key, **kw)
    assert cond.matches(stored) is expected, (vr, key, stored, cond)


# C.2.2.2.1 single value matching: exact, case-sensitive except PN
SINGLE = [
    ("LO", "P001", "P001", True),
    ("LO", "P001", "p001", False),  # case-sensitive outside PN
    ("LO", "P001", "P0011", False),
    ("SH", "ACC1", "ACC1", True),
    ("CS", "CT", "CT", True),
    ("CS", "CT", "ct", False),
    ("CS", "CT", None, False),  # no value: no match
    ("CS", "CT", "", False),
    ("IS", "3", "03", True),  # numbers compare as numbers
    ("DA", "20200229", "20200229", True),
    ("DA", "20200229", "20200228", False),
    ("DA", "20200229", "2020.02.29", True),  # the older form of DA
    ("TM", "1030", "103000", True),  # a TM key at its own precision
    ("TM", "1030", "103059.999", True),
    ("TM", "1030", "1031", False),
    ("TM", "10:30", "103012", True),  # the older form of TM
    ("DT", "20200229103000", "20200229103000.5", True),
]


@pytest.mark.parametrize("vr, key, stored, expected", SINGLE)
def test_single_value(vr, key, stored, expected):
    check(vr, key, stored, expected)


# PN: case- and accent-insensitive by default, exact when asked (C.2.2.2.1 allows either for PN only)
PN = [
    ("Müller^Hans", "Müller^Hans", "insensitive", True),
    ("MULLER^HANS", "Müller^Hans", "insensitive", True),
    ("muller^hans", "Müller^Hans", "insensitive", True),
    ("Müller^Hans", "Müller^Hans", "exact", True),
    ("muller^hans", "Müller^Hans", "exact", False),
    ("MÜLLER^HANS", "Müller^Hans", "exact", False),
    ("zoe", "Zoë", "insensitive", True),
    ("łukasik^zoe", "Łukasik^Zoë", "insensitive", True),  # Ł has no decomposition: case-folded only
    ("lukasik^zoe", "Łukasik^Zoë", "insensitive", False),
]


@pytest.mark.parametrize("key, stored, policy, expected", PN)
def test_person_name_policy(key, stored, policy, expected):
    check("PN", key, stored, expected, pn_policy=policy)


def test_normalised_person_name():
    assert normalise_pn("Gómez^José") == "gomez^jose"
    assert normalise_pn("SMITH*") == "smith*"
    with pytest.raises(ValueError):
        condition("PN", "x", pn_policy="fuzzy")


# C.2.2.2.2 list of UID matching
UIDS = [
    ("1.2.3\\1.2.4", "1.2.4", True),
    ("1.2.3\\1.2.4", "1.2.5", False),
    (["1.2.3", "1.2.4"], "1.2.3", True),
    ("1.2.3", "1.2.3", True),
    ("1.2.3", "1.2.30", False),
]


@pytest.mark.parametrize("key, stored, expected", UIDS)
def test_list_of_uids(key, stored, expected):
    cond = condition("UI", key)
    assert isinstance(cond, UIDList)
    assert cond.matches(stored) is expected


# C.2.2.2.3 universal matching: zero length (and a lone *) matches everything, a missing value included
@pytest.mark.parametrize("vr, key", [("PN", ""), ("DA", ""), ("UI", ""), ("LO", "*"), ("PN", "**"), ("SQ", [])])
def test_universal(vr, key):
    cond = condition(vr, key)
    assert cond is UNIVERSAL and cond.universal
    assert cond.matches(None) and cond.matches("anything")


# C.2.2.2.4 wild card matching: * and ?, case-sensitive except PN
WILDCARD = [
    ("LO", "P00*", "P001", True),
    ("LO", "P00*", "P00", True),  # * matches nothing too
    ("LO", "P00?", "P001", True),
    ("LO", "P00?", "P0012", False),
    ("LO", "p00*", "P001", False),  # case-sensitive
    ("SH", "*CC*", "ACC0101", True),
    ("LO", "A[1]*", "A[1]x", True),  # no other character is special
    ("LO", "A.*", "AB", False),
    ("PN", "smith*", "Smith^John", True),
    ("PN", "SM?TH^*", "Smith^John", True),
    ("PN", "*^JOHN", "Smith^John", True),
    ("PN", "mull*", "Müller^Hans", True),
    ("CS", "ORIG*", "ORIGINAL\\PRIMARY", True),  # any value of a multi-valued attribute
    ("CS", "PRIM*", "ORIGINAL\\PRIMARY", True),
    ("CS", "SEC*", "ORIGINAL\\PRIMARY", False),
]


@pytest.mark.parametrize("vr, key, stored, expected", WILDCARD)
def test_wildcard(vr, key, stored, expected):
    check(vr, key, stored, expected)


def test_wildcard_prefix_and_exact_pn():
    assert Wildcard("SMI*TH").prefix == "SMI" and Wildcard("*X").prefix == ""
    check("PN", "smith*", "Smith^John", False, pn_policy="exact")
    # * and ? are not wild cards for DA, TM, UI (taken literally: nothing matches)
    assert not isinstance(condition("UI", "1.2.*"), Wildcard)
    check("UI", "1.2.*", "1.2.3", False)


# C.2.2.2.5 range matching: DA, TM, DT; open ends; inclusive at each end's precision
RANGES = [
    ("DA", "20200101-20201231", "20200615", True),
    ("DA", "20200101-20201231", "20200101", True),
    ("DA", "20200101-20201231", "20201231", True),
    ("DA", "20200101-20201231", "20210101", False),
    ("DA", "-20191231", "20190314", True),
    ("DA", "-20191231", "20200101", False),
    ("DA", "20230101-", "20240110", True),
    ("DA", "20230101-", "20221231", False),
    ("DA", "20200101-20201231", None, False),
    ("TM", "0800-1200", "083000", True),
    ("TM", "0800-1200", "120059.9", True),  # 1200 covers 12:00:00-12:00:59.999999
    ("TM", "0800-1200", "120100", False),
    ("TM", "-0900", "085959", True),
    ("TM", "2200-0200", "233000", True),  # over midnight
    ("TM", "2200-0200", "013000", True),
    ("TM", "2200-0200", "120000", False),
    ("DT", "20200101120000-20200101130000", "20200101123000", True),
    ("DT", "20200101120000-20200101130000", "20200101140000", False),
    ("DT", "2020-2021", "20211231235959", True),  # year precision
    ("DT", "20200101-", "20191231", False),
]


@pytest.mark.parametrize("vr, key, stored, expected", RANGES)
def test_range(vr, key, stored, expected):
    check(vr, key, stored, expected)


# DT with UTC offsets: compared as instants; the '-' of an offset is not the range's
DT_OFFSETS = [
    ("20200101120000+0100-20200101130000+0100", "20200101113000+0000", True),  # 12:30 at +01:00
    ("20200101120000+0100-20200101130000+0100", "20200101123000+0000", False),  # 13:30 at +01:00
    ("20200101070000-0500-20200101080000-0500", "20200101123000+0000", True),  # 07:30 at -05:00
    ("20200101070000-0500-", "20200101115959+0000", False),  # before 12:00 UTC
    ("-20200101080000-0500", "20200101130000+0000", True),
    ("20200101120000-0500", "20200101170000+0000", True),  # single value at an offset
]


@pytest.mark.parametrize("key, stored, expected", DT_OFFSETS)
def test_datetime_with_utc_offsets(key, stored, expected):
    check("DT", key, stored, expected)


def test_datetime_without_offset_uses_the_local_offset():
    plus2 = dt.timezone(dt.timedelta(hours=2))
    cond = condition("DT", "20200101120000-20200101130000", local_offset=plus2)
    assert cond.matches("20200101103000+0000")  # 12:30 at +02:00
    assert not cond.matches("20200101123000+0000")


def test_date_range_bounds_for_an_index():
    assert Range("20200101", "20201231", "DA").da_bounds == ("20200101", "20201231")
    assert Range(None, "202006", "DA").da_bounds == (None, "20200630")


# C.2.2.2.5.1 combined date-time matching: a DA and its TM key as one range
COMBINED = [
    ("20200101-20200105", "1000-1200", ("20200101", "110000"), True),
    ("20200101-20200105", "1000-1200", ("20200101", "090000"), False),  # before the start instant
    ("20200101-20200105", "1000-1200", ("20200103", "230000"), True),  # a middle day: any time
    ("20200101-20200105", "1000-1200", ("20200105", "130000"), False),  # after the end instant
    ("20200101", "1000-1200", ("20200101", "113000"), True),
    ("-20200105", "-1200", ("20191231", "235959"), True),
    ("20200101-", "1000-", ("20200101", "095959"), False),
    ("20200101-", "1000-", ("20200101", ""), True),  # no time: the whole day may be in range
]


@pytest.mark.parametrize("date, time, stored, expected", COMBINED)
def test_combined_date_time(date, time, stored, expected):
    conds = {"StudyDate": condition("DA", date), "StudyTime": condition("TM", time)}
    merged = combined(conds, [("StudyDate", "StudyTime")], {"StudyDate": date, "StudyTime": time})
    assert list(merged) == ["StudyDate\\StudyTime"]
    assert isinstance(merged["StudyDate\\StudyTime"], DateTimeRange)
    assert merged["StudyDate\\StudyTime"].matches(stored) is expected


def test_combined_date_time_differs_from_separate_ranges():
    """Separately, 20200103 23:00 fails the 10:00-12:00 time range; combined it is inside the interval."""
    separate = {"StudyDate": condition("DA", "20200101-20200105"), "StudyTime": condition("TM", "1000-1200")}
    assert not all(c.matches(v) for c, v in zip(separate.values(), ("20200103", "230000")))


# C.2.2.2.6 sequence matching
def _item(**kw):
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


SRT = {"CodeValue": "T-A0100", "CodingSchemeDesignator": "SRT"}
DCM = {"CodeValue": "T-A0100", "CodingSchemeDesignator": "DCM"}
SEQUENCES = [
    ([_item(CodeValue="T-A0100", CodingSchemeDesignator="SRT")], [SRT], True),
    ([_item(CodeValue="T-A0100")], [{"CodeValue": "X"}, {"CodeValue": "T-A0100"}], True),  # any stored item
    ([_item(CodeValue="T-A0100", CodingSchemeDesignator="SRT")], [DCM], False),
    ([_item(CodeValue="T-A*")], [{"CodeValue": "T-A0100"}], True),  # each key by its own rule
    ([_item(CodeValue="")], [{"CodeValue": "anything"}], True),  # universal keys only: matches
    ([_item(CodeValue="T-A0100")], None, False),
]  # fmt: skip


@pytest.mark.parametrize("key, stored, expected", SEQUENCES)
def test_sequence(key, stored, expected):
    cond = condition("SQ", key)
    if expected and all(not e.value for e in key[0]):
        assert cond.matches(stored)
        return
    assert isinstance(cond, SequenceMatch)
    assert cond.matches(stored) is expected


# multiple values in a key (other than UIDs): any of them
MULTIPLE = [
    ("CS", "CT\\PT", "PT", True),
    ("CS", "CT\\PT", "NM", False),
    ("CS", "CT\\P*", "PT", True),
    ("CS", ["NM", "MR"], "MR", True),
    ("CS", "CT\\PT", "NM\\PT", True),  # stored multi-valued (ModalitiesInStudy)
]


@pytest.mark.parametrize("vr, key, stored, expected", MULTIPLE)
def test_multiple_values(vr, key, stored, expected):
    cond = condition(vr, key)
    assert isinstance(cond, AnyOf)
    assert cond.matches(stored) is expected


# C.2.2.2.7 empty value matching: "" matches an empty or missing value
@pytest.mark.parametrize("stored, expected", [(None, True), ("", True), ("X", False)])
def test_empty_value(stored, expected):
    cond = condition("LO", '""')
    assert isinstance(cond, Empty)
    assert cond.matches(stored) is expected


def test_single_is_a_single_for_text_and_numbers():
    assert isinstance(condition("LO", "X"), Single)
    assert condition("IS", "5").matches("5") and not condition("IS", "5").matches("6")
