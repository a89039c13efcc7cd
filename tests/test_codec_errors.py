"""Malformed input surfaces as ferrodicom.CodecError (a DicomError) naming offset and tag."""

from __future__ import annotations

import struct

import pytest
from pydicom.data import get_testdata_file

import ferrodicom
from ferrodicom import _core
from ferrodicom.transcode import EXPLICIT_VR_BIG_ENDIAN as EBE
from ferrodicom.transcode import EXPLICIT_VR_LITTLE_ENDIAN as ELE
from ferrodicom.transcode import IMPLICIT_VR_LITTLE_ENDIAN as ILE
from ferrodicom.transcode import transcode_dataset


def _el(tag: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    n = len(value) if length is None else length
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return head + b"\0\0" + struct.pack("<I", n) + value
    return head + struct.pack("<H", n) + value


def _part10(body: bytes, ts: str = ELE) -> bytes:
    meta = _core.file_meta("1.2.840.10008.5.1.4.1.1.20", "1.2.3", ts, "1.2.3.4")
    return meta + body


def _error(data: bytes, ts: str = EBE) -> ferrodicom.CodecError:
    with pytest.raises(ferrodicom.CodecError) as info:
        ferrodicom.transcode(data, ts)
    assert isinstance(info.value, ferrodicom.DicomError)
    return info.value


def test_truncated_file() -> None:
    data = open(get_testdata_file("MR_small.dcm"), "rb").read()
    err = _error(data[:-1000])
    assert "(7FE0,0010)" in str(err)
    assert "byte" in str(err)


def test_pydicom_truncated_samples() -> None:
    for name in ("MR_truncated.dcm", "rtplan_truncated.dcm"):
        for ts in (ILE, ELE, EBE):
            _error(open(get_testdata_file(name), "rb").read(), ts)


def test_length_past_end() -> None:
    body = _el(0x00080060, b"CS", b"NM") + _el(0x00100010, b"PN", b"Doe^J ", length=200)
    err = _error(_part10(body))
    assert "(0010,0010)" in str(err) and "at byte 10" in str(err)


def test_odd_length() -> None:
    err = _error(_part10(_el(0x00100010, b"PN", b"Doe")))
    assert "odd length 3" in str(err) and "(0010,0010)" in str(err)


def test_sequence_that_never_ends() -> None:
    body = _el(0x00540016, b"SQ", b"", length=0xFFFFFFFF)
    body += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + _el(0x00181072, b"TM", b"101010")
    err = _error(_part10(body))
    assert "never" in str(err) or "item" in str(err)


def test_undefined_vr() -> None:
    err = _error(_part10(_el(0x00080060, b"CS", b"NM") + _el(0x00100010, b"Q!", b"AB")))
    assert "(0010,0010)" in str(err) and "at byte 10" in str(err)


def test_four_gigabyte_length_on_one_kilobyte() -> None:
    body = _el(0x00091010, b"OB", b"", length=0xFFFFFFF0).ljust(1024, b"\0")
    err = _error(_part10(body))
    assert "(0009,1010)" in str(err)
    with pytest.raises(ferrodicom.CodecError):
        ferrodicom.extract(_part10(body), [0x00091010])


def test_not_part10_and_unsupported() -> None:
    with pytest.raises(ferrodicom.CodecError, match="DICM"):
        ferrodicom.transcode(b"\0" * 300, ELE)
    jpeg = open(get_testdata_file("JPEG-lossy.dcm"), "rb").read()
    with pytest.raises(ferrodicom.CodecError, match="cannot convert"):
        ferrodicom.transcode(jpeg, ELE)
    # Encapsulated syntaxes still pass through to themselves, validated.
    assert ferrodicom.transcode(jpeg, "1.2.840.10008.1.2.4.51") == jpeg


def test_bare_dataset_errors() -> None:
    with pytest.raises(ferrodicom.CodecError, match="truncated|past the end"):
        transcode_dataset(_el(0x00100010, b"PN", b"Doe^J ")[:-2], ELE, EBE)


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError):
        ferrodicom.transcode_file("/nonexistent/x.dcm", "/tmp/y.dcm", ELE)


def test_failed_transcode_file_leaves_no_output(tmp_path) -> None:
    src = tmp_path / "bad.dcm"
    src.write_bytes(_part10(_el(0x00100010, b"PN", b"Doe")))
    dst = tmp_path / "out.dcm"
    with pytest.raises(ferrodicom.CodecError):
        ferrodicom.transcode_file(src, dst, EBE)
    assert list(tmp_path.iterdir()) == [src]
