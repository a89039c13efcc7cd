"""Property test: random data sets round-trip through every pair of the four syntaxes."""

from __future__ import annotations

import io
import itertools

import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

import ferrodicom
from ferrodicom.transcode import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    PrivateDictionary,
)

SYNTAXES = [
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
]
CREATOR = "FERRO PROPERTY 1"

# (keyword, strategy) for standard attributes of assorted VRs.
text = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ^", max_size=20).map(str.strip)
u16 = st.integers(0, 0xFFFF)
ATTRS = {
    "PatientID": text,  # LO
    "Modality": st.sampled_from(["NM", "PT", "CT"]),  # CS
    "PatientName": text,  # PN
    "Rows": u16,  # US
    "Columns": u16,
    "NumberOfFrames": st.integers(1, 9999),  # IS
    "SliceThickness": st.integers(0, 10000).map(lambda i: i / 100),  # DS
    "ReferencedFrameNumber": st.lists(st.integers(1, 1000), min_size=1, max_size=4),  # IS multi
    "FrameIncrementPointer": st.sampled_from([0x00540010, 0x00540020]),  # AT
    "RescaleSlope": st.integers(1, 10000).map(lambda i: i / 100),
    "ActualFrameDuration": st.integers(0, 2**31 - 1),  # IS
    "ImagePositionVolume": st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=3, max_size=3),  # FD
    "RecommendedDisplayFrameRateInFloat": st.floats(0, 100, width=32),  # FL
    "ReferencePixelX0": st.integers(-(2**31), 2**31 - 1),  # SL
    "SOPInstanceUID": st.from_regex(r"1\.2\.[1-9][0-9]{0,8}\.[1-9][0-9]{0,8}", fullmatch=True),
    "CountsAccumulated": st.integers(0, 2**32 - 1),  # UL
    "SmallestImagePixelValue": u16,  # US or SS
}
PRIVATE = {
    0x10: ("UL", st.integers(0, 2**32 - 1)),
    0x11: ("FD", st.floats(allow_nan=False)),
    0x12: ("LO", text),
}


@st.composite
def datasets(draw, depth: int = 0) -> Dataset:
    ds = Dataset()
    for kw in draw(st.lists(st.sampled_from(sorted(ATTRS)), unique=True, max_size=len(ATTRS))):
        setattr(ds, kw, draw(ATTRS[kw]))
    if draw(st.booleans()):
        block = ds.private_block(0x0013, CREATOR, create=True)
        for off in draw(st.lists(st.sampled_from(sorted(PRIVATE)), unique=True, min_size=1)):
            vr, strat = PRIVATE[off]
            block.add_new(off, vr, draw(strat))
    if depth < 2 and draw(st.booleans()):
        items = draw(st.lists(datasets(depth + 1), max_size=3))
        ds.EnergyWindowInformationSequence = Sequence(items)
    if depth == 0 and draw(st.booleans()):
        ds.BitsAllocated = draw(st.sampled_from([8, 16, 32]))
        ds.PixelRepresentation = 0
        n = draw(st.integers(0, 16)) * 4
        ds.PixelData = draw(st.binary(min_size=n, max_size=n))
    return ds


def _dictionary() -> PrivateDictionary:
    d = PrivateDictionary()
    for off, (vr, _) in PRIVATE.items():
        d.add(CREATOR, 0x0013, off, vr)
    return d


DICT = _dictionary()


def _encode(ds: Dataset) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    if "SOPInstanceUID" not in ds:
        ds.SOPInstanceUID = "1.2.3"
    return ferrodicom.from_pydicom(ds)


def _values(data: bytes) -> bytes:
    """A canonical form: through Implicit VR (all lengths undefined) back to Explicit VR LE."""
    return ferrodicom.transcode(
        ferrodicom.transcode(data, IMPLICIT_VR_LITTLE_ENDIAN, private_dictionary=DICT),
        EXPLICIT_VR_LITTLE_ENDIAN,
        private_dictionary=DICT,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_round_trip_every_pair(ds: Dataset) -> None:
    base = _encode(ds)
    canonical = _values(base)
    ref = pydicom.dcmread(io.BytesIO(base))
    for a, b in itertools.product(SYNTAXES, SYNTAXES):
        in_a = ferrodicom.transcode(base, a, private_dictionary=DICT)
        in_b = ferrodicom.transcode(in_a, b, private_dictionary=DICT)
        back = ferrodicom.transcode(in_b, a, private_dictionary=DICT)
        if IMPLICIT_VR_LITTLE_ENDIAN not in (a, b):
            assert back == in_a, (a, b)
        assert _values(back) == canonical, (a, b)
        got = pydicom.dcmread(io.BytesIO(in_b))
        assert got.file_meta.TransferSyntaxUID == b
        for elem in ref:
            if elem.VR in ("SQ", "OB", "OW", "UN") or elem.tag.is_private:
                continue
            assert got[elem.tag].value == elem.value, (a, b, elem)
