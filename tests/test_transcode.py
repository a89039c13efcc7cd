"""Transfer-syntax conversion against pydicom's own test files (data we did not write)."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import ferrodicom
from ferrodicom import _core
from ferrodicom.transcode import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN as DEFL,
)
from ferrodicom.transcode import (
    EXPLICIT_VR_BIG_ENDIAN as EBE,
)
from ferrodicom.transcode import (
    EXPLICIT_VR_LITTLE_ENDIAN as ELE,
)
from ferrodicom.transcode import (
    IMPLICIT_VR_LITTLE_ENDIAN as ILE,
)
from ferrodicom.transcode import (
    PrivateDictionary,
    StreamConverter,
    set_default_private_dictionary,
    transcode_dataset,
)

# Pairs shipped by pydicom: the same object in a little- and a big-endian syntax.
PAIRS = [
    ("MR_small.dcm", "MR_small_bigendian.dcm"),
    ("MR_small_implicit.dcm", "MR_small_expb.dcm"),
    ("rtdose.dcm", "rtdose_expb.dcm"),
    ("rtdose_1frame.dcm", "rtdose_expb_1frame.dcm"),
    ("liver_1frame.dcm", "liver_expb_1frame.dcm"),
    ("SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm"),
]
LITTLE_ENDIAN_FILES = [
    "MR_small.dcm",
    "CT_small.dcm",
    "liver_1frame.dcm",
    "examples_palette.dcm",
    "test-SR.dcm",
]


def _path(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, name
    return path


def _read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _comparable(ds: Dataset):
    """Attribute values pydicom decodes independently of byte order (OB/OW/UN are raw bytes,
    group lengths are retired and recomputed or dropped)."""
    out = {}
    for elem in ds:
        if elem.VR in ("OB", "OW", "UN", "OF", "OD", "OL", "OV") or elem.tag.element == 0:
            continue
        if elem.VR == "SQ":
            out[elem.tag] = [_comparable(item) for item in elem.value]
        else:
            out[elem.tag] = elem.value
    return out


@pytest.mark.parametrize(("little", "big"), PAIRS)
@pytest.mark.parametrize("direction", ["to_big", "to_little"])
def test_pairs_convert_into_each_other(little: str, big: str, direction: str) -> None:
    src, ref = (little, big) if direction == "to_big" else (big, little)
    ref_ds = pydicom.dcmread(_path(ref))
    out = ferrodicom.transcode(_path(src), str(ref_ds.file_meta.TransferSyntaxUID))
    got = _read(out)
    assert got.file_meta.TransferSyntaxUID == ref_ds.file_meta.TransferSyntaxUID
    want = _comparable(ref_ds)
    have = _comparable(got)
    common = set(want) & set(have)
    assert len(common) > 10
    assert {t: have[t] for t in common} == {t: want[t] for t in common}
    np.testing.assert_array_equal(got.pixel_array, ref_ds.pixel_array)


@pytest.mark.parametrize("name", LITTLE_ENDIAN_FILES)
def test_le_to_ebe_to_le_is_byte_identical(name: str) -> None:
    original = open(_path(name), "rb").read()
    assert pydicom.dcmread(_path(name)).file_meta.TransferSyntaxUID == ELE
    big = ferrodicom.transcode(original, EBE)
    assert big != original
    assert _read(big).file_meta.TransferSyntaxUID == EBE
    assert ferrodicom.transcode(big, ELE) == original


@pytest.mark.parametrize("target", [ILE, ELE, EBE])
def test_deflated_file_inflates(target: str) -> None:
    path = _path("image_dfl.dcm")
    ref = pydicom.dcmread(path)
    assert ref.file_meta.TransferSyntaxUID == DEFL
    got = _read(ferrodicom.transcode(path, target))
    assert got.file_meta.TransferSyntaxUID == target
    assert _comparable(got) == _comparable(ref)
    np.testing.assert_array_equal(got.pixel_array, ref.pixel_array)


def test_deflate_round_trip_and_pydicom_reads_our_deflate() -> None:
    original = open(_path("MR_small.dcm"), "rb").read()
    deflated = ferrodicom.transcode(original, DEFL)
    assert len(deflated) < len(original)
    ds = _read(deflated)
    np.testing.assert_array_equal(ds.pixel_array, pydicom.dcmread(_path("MR_small.dcm")).pixel_array)
    assert ferrodicom.transcode(deflated, ELE) == original


def test_implicit_to_explicit_uses_the_dictionary() -> None:
    out = _read(ferrodicom.transcode(_path("MR_small_implicit.dcm"), ELE))
    ref = pydicom.dcmread(_path("MR_small.dcm"))
    for elem in ref:
        if elem.tag in out and elem.tag.group != 0x7FE0:
            assert out[elem.tag].VR == elem.VR, elem


def test_transcode_file_streams_same_bytes(tmp_path) -> None:
    src = _path("MR_small_bigendian.dcm")
    dst = tmp_path / "out.dcm"
    found = ferrodicom.transcode_file(src, dst, ELE, tags=["PatientName", "Rows", "SOPInstanceUID"])
    assert dst.read_bytes() == ferrodicom.transcode(src, ELE)
    assert not (tmp_path / "out.dcm.part").exists()
    ref = pydicom.dcmread(src)
    assert found[0x00100010].value == ref.PatientName
    assert found[0x00280010].value == ref.Rows
    assert found[0x00080018].value == ref.SOPInstanceUID


def test_extract_top_level_values() -> None:
    path = _path("CT_small.dcm")
    ref = pydicom.dcmread(path)
    keys = ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality", "Rows"]
    for source in (path, open(path, "rb").read()):
        got = ferrodicom.extract(source, keys + ["NumberOfFrames"])
        assert {e.keyword: e.value for e in got.values()} == {k: ref[k].value for k in keys}
    big = ferrodicom.extract(_path("MR_small_bigendian.dcm"), ["Columns", "PixelRepresentation"])
    assert [e.value for e in big.values()] == [64, 1]


def test_pydicom_helpers_round_trip() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "NM-1"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.PixelRepresentation = 2, 2, 16, 0
    ds.PixelData = np.arange(4, dtype="<u2").tobytes()
    data = ferrodicom.from_pydicom(ds, EBE)
    assert _read(data).file_meta.TransferSyntaxUID == EBE
    back = ferrodicom.to_pydicom(data, ILE)
    assert back.file_meta.TransferSyntaxUID == ILE
    assert back.PatientID == "NM-1"
    assert back.PixelData == ds.PixelData


def test_private_dictionary_resolves_implicit_private_elements() -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ILE
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    ds.SOPInstanceUID = generate_uid()
    block = ds.private_block(0x0011, "FERRO TEST 1", create=True)
    block.add_new(0x10, "SL", -7)
    block.add_new(0x12, "LO", "study")
    data = ferrodicom.from_pydicom(ds)
    assert _read(data).file_meta.TransferSyntaxUID == ILE

    unknown = _read(ferrodicom.transcode(data, EBE))
    assert unknown[0x00111010].VR == "UN"

    d = PrivateDictionary()
    d.add("FERRO TEST 1", 0x0011, 0x10, "SL")
    d.add("FERRO TEST 1", 0x0011, 0x12, "LO")
    assert len(d) == 2
    assert d.get("FERRO TEST 1", 0x0011, 0x10) == "SL"
    known = _read(ferrodicom.transcode(data, EBE, private_dictionary=d))
    assert known[0x00111010].VR == "SL"
    assert known[0x00111010].value == -7
    assert known[0x00111012].value == "study"

    late = PrivateDictionary()
    try:
        set_default_private_dictionary(d)
        assert _core.get_default_private_dictionary() is not None
        assert _read(ferrodicom.transcode(data, EBE))[0x00111010].value == -7
        # Entries added after the dictionary became the default are used too.
        set_default_private_dictionary(late)
        assert _read(ferrodicom.transcode(data, EBE))[0x00111010].VR == "UN"
        late.add("FERRO TEST 1", 0x0011, 0x10, "SL")
        assert _read(ferrodicom.transcode(data, EBE))[0x00111010].value == -7
    finally:
        set_default_private_dictionary(None)
    assert _read(ferrodicom.transcode(data, EBE))[0x00111010].VR == "UN"


def test_private_dictionary_rejects_bad_entries() -> None:
    d = PrivateDictionary()
    with pytest.raises(ValueError):
        d.add("X", 0x0010, 0x10, "LO")  # even group
    with pytest.raises(ValueError):
        d.add("X", 0x0011, 0x1010, "LO")  # not a low byte
    with pytest.raises(ValueError):
        d.add("X", 0x0011, 0x10, "QQ")
    assert len(d) == 0


def test_stream_converter_any_chunking() -> None:
    data = open(_path("MR_small_bigendian.dcm"), "rb").read()
    whole = ferrodicom.transcode(data, ELE)
    body, want = data[_meta_end(data) :], whole[_meta_end(whole) :]
    assert transcode_dataset(body, EBE, ELE) == want
    for step in (1, 7, 4096):
        conv = StreamConverter(EBE, ELE, tags=[0x00100020])
        out = b"".join(conv.feed(body[i : i + step]) for i in range(0, len(body), step))
        rest, found = conv.finish()
        assert out + rest == want
        assert found[0x00100020][0] == "LO"
    conv = StreamConverter(EBE, ELE)
    conv.feed(body[:-10])
    with pytest.raises(ferrodicom.CodecError, match="truncated"):
        conv.finish()


def _meta_end(data: bytes) -> int:
    fp = io.BytesIO(data)
    pydicom.filereader.read_preamble(fp, False)
    pydicom.filereader._read_file_meta_info(fp)
    return fp.tell()


def test_file_meta_helper() -> None:
    meta = _core.file_meta("1.2.840.10008.5.1.4.1.1.20", "1.2.3", EBE, "1.2.826.0.1.3680043.10.9", "FERRO", "NM1")
    ds = pydicom.dcmread(io.BytesIO(meta + b""), force=True)
    fm = ds.file_meta
    assert fm.MediaStorageSOPInstanceUID == "1.2.3"
    assert fm.TransferSyntaxUID == EBE
    assert fm.SourceApplicationEntityTitle == "NM1"
    assert fm.FileMetaInformationGroupLength == len(meta) - 144


def test_gil_is_released_during_conversion() -> None:
    """Another Python thread keeps running while Rust swaps bytes: with the GIL held for the
    whole call it could not record a single tick strictly inside the call."""
    data = ferrodicom.from_pydicom(_big_dataset(64), EBE)
    ticks: list = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())

    t = threading.Thread(target=tick)
    t.start()
    try:
        while not ticks:
            time.sleep(0.001)
        inside = 0
        for _ in range(3):
            begin = time.perf_counter()
            ferrodicom.transcode(data, ELE)
            end = time.perf_counter()
            quarter = (end - begin) / 4
            inside += sum(1 for x in ticks if begin + quarter < x < end - quarter)
    finally:
        stop.set()
        t.join()
    assert inside > 0


def _big_dataset(megabytes: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    ds.SOPInstanceUID = generate_uid()
    ds.BitsAllocated = 16
    ds.PixelData = np.zeros(megabytes * 512 * 1024, dtype="<u2").tobytes()
    return ds
