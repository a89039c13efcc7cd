"""The Rust fast path that encodes response data sets (``_core.encode_dataset``, used by ``datasets.encode``) gives
what pydicom's writer gives, value for value, in Implicit and Explicit VR Little Endian (PS3.5 §7.1), and leaves
to pydicom what it does not handle (returns None)."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from ferrodicom import _core, datasets
from ferrodicom.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE


def pydicom_bytes(ds: Dataset, implicit: bool) -> bytes:
    buf = DicomBytesIO()
    buf.is_implicit_VR = implicit
    buf.is_little_endian = True
    write_dataset(buf, ds)
    return buf.getvalue()


def full() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "Müller^Jörg=ミュラー^ヨルグ"
    ds.PatientID = "P1"
    ds.StudyDescription = "Ärzte — 日本"  # odd byte length in UTF-8: padded with a space
    ds.StudyInstanceUID = "1.2.3"  # odd: padded with NUL
    ds.StudyDate = "20240131"
    ds.ModalitiesInStudy = ["NM", "CT", "PT"]
    ds.Rows = 512
    ds.PixelSpacing = [0.5, 0.25]
    ds.SliceThickness = "2.5"
    ds.ImagePositionPatient = [1.5, -2, 3]
    ds.InstanceNumber = 7
    ds.NumberOfStudyRelatedInstances = None  # a requested key with no value: zero length
    ds.FrameIncrementPointer = [0x00540010, 0x00540020]
    ds.add_new(0x00291010, "OB", b"\x01\x02\x03")
    ds.add_new(0x00291011, "UN", b"")
    ds.add_new(0x00180088, "DS", 3.0)
    ds.add_new(0x00280106, "US", 0)
    ds.add_new(0x00181310, "US", [0, 256, 256, 0])
    ds.add_new(0x00189219, "FD", 2.5)
    item = Dataset()
    item.CodeValue = "X"
    item.CodingSchemeDesignator = "DCM"
    inner = Dataset()
    inner.CodeMeaning = "nested"
    item.ConceptNameCodeSequence = Sequence([inner])
    ds.ProcedureCodeSequence = Sequence([item, Dataset()])
    ds.ReferencedSeriesSequence = Sequence([])
    return ds


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize(
    "make",
    [
        full,
        lambda: Dataset(),
        lambda: Dataset.from_json({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Ab^Cd"}]}}),
        lambda: _latin1(),
    ],
    ids=["full", "empty", "from-json", "latin1"],
)
def test_same_values_as_pydicom(make, implicit):
    ds = make()
    fast = _core.encode_dataset(ds, implicit)
    assert fast is not None
    assert len(fast) % 2 == 0
    ours = read_dataset(BytesIO(fast), implicit, True)
    theirs = read_dataset(BytesIO(pydicom_bytes(ds, implicit)), implicit, True)
    assert ours == theirs
    assert [e.tag for e in ours] == [e.tag for e in theirs]


def _latin1() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jörg"
    ds.InstitutionName = "Hôpital"
    return ds


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda: dcmread(get_testdata_file("CT_small.dcm")), "elements still raw from the file"),
        (lambda: _charset("ISO_IR 144", "Иванов^Иван"), "another character set (Cyrillic)"),
        (lambda: _charset(None, "Müller"), "non-ASCII text without a Specific Character Set"),
        (lambda: _ambiguous(), "an ambiguous VR (US or SS)"),
    ],
)
def test_what_it_leaves_to_pydicom(make, why):
    ds = make()
    assert _core.encode_dataset(ds, False) is None, why
    # ...and datasets.encode still encodes it, through pydicom.
    if why != "non-ASCII text without a Specific Character Set":
        assert read_dataset(BytesIO(datasets.encode(ds, EXPLICIT_VR_LE)), False, True) == ds


def _charset(charset, name) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = name
    return ds


def _ambiguous() -> Dataset:
    ds = Dataset()
    ds.add_new(0x00280106, "US or SS", 0)
    return ds


@pytest.mark.parametrize("ts", [IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE])
def test_encode_and_decode_round_trip_in_every_syntax(ts):
    ds = full()
    implicit = ts == IMPLICIT_VR_LE  # private elements decode as UN without their VR
    ours = datasets.decode(datasets.encode(ds, ts), ts)
    theirs = read_dataset(BytesIO(pydicom_bytes(ds, implicit)), implicit, True)
    assert values(ours) == values(theirs)


def values(ds: Dataset) -> list:
    """(tag, VR, value) of every element, items of sequences recursively (Dataset.__eq__ would also compare
    how each sequence's length was encoded: defined by pydicom, undefined by the fast path, both valid)."""
    return [(e.tag, e.VR, [values(item) for item in e.value] if e.VR == "SQ" else e.value) for e in ds]
