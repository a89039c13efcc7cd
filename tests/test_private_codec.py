"""Private elements through the Rust codec (issues 3 and 5): implicit VR data whose VRs are known only from
ferrodicom's private dictionaries must survive byte swapping to Explicit VR Big Endian and back (PS3.5 §7.1, §A.3)."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, generate_uid

import ferrodicom
from ferrodicom import _core


def _implicit_file() -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "PRIV"
    genie9 = ds.private_block(0x0009, "GEMS_GENIE_1", create=True)
    genie9.add_new(0x11, "SL", -123456)  # Study Flags
    genie9.add_new(0x2E, "FD", 1234.5678)  # Distance Prescribed
    genie9.add_new(0x35, "UL", 0xDEADBEEF)  # Gantry Locus Type
    petd9 = ds.private_block(0x0009, "GEMS_PETD_01", create=True)  # a second creator in group 0009
    genie11 = ds.private_block(0x0011, "GEMS_GENIE_1", create=True)
    genie11.add_new(0x19, "FD", -3.25)  # Radius Of Rotation
    item = Dataset()
    inner = item.private_block(0x0019, "GEMS_GENIE_1", create=True)
    inner.add_new(0x86, "UL", 77)  # FrameNumber, nested one level down
    genie13 = ds.private_block(0x0013, "GEMS_GENIE_1", create=True)
    genie13.add_new(0x13, "SQ", Sequence([item]))  # GENIE Frame Sequence
    genie33 = ds.private_block(0x0033, "GEMS_GENIE_1", create=True)
    genie33.add_new(0x1C, "OB", b"\x01\x02\x03\x04")  # BulkData: never swapped
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    assert petd9.block_start  # reserved, even if empty
    buf = BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_private_values_survive_swap_to_big_endian_and_back():
    ferrodicom.dictionaries.use_product(None)
    ile = _implicit_file()
    ebe = ferrodicom.transcode(ile, ExplicitVRBigEndian)
    ds = dcmread(BytesIO(ebe))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    g9 = ds.private_block(0x0009, "GEMS_GENIE_1")
    assert g9[0x11].VR == "SL" and g9[0x11].value == -123456
    assert g9[0x2E].VR == "FD" and g9[0x2E].value == pytest.approx(1234.5678)
    assert g9[0x35].VR == "UL" and g9[0x35].value == 0xDEADBEEF
    assert ds.private_block(0x0011, "GEMS_GENIE_1")[0x19].value == -3.25
    seq = ds.private_block(0x0013, "GEMS_GENIE_1")[0x13]
    assert seq.VR == "SQ"
    assert seq.value[0].private_block(0x0019, "GEMS_GENIE_1")[0x86].value == 77
    assert ds.private_block(0x0033, "GEMS_GENIE_1")[0x1C].value == b"\x01\x02\x03\x04"
    # Back to implicit VR little endian: every private value (nested ones included) is as it was.
    back = ferrodicom.transcode(ebe, ImplicitVRLittleEndian)
    assert dcmread(BytesIO(back)).PatientID == "PRIV"
    ds_orig, ds_back = dcmread(BytesIO(ile)), dcmread(BytesIO(back))
    assert [(e.tag, e.value) for e in ds_back.iterall() if e.tag.is_private and e.VR != "SQ"] == [
        (e.tag, e.value) for e in ds_orig.iterall() if e.tag.is_private and e.VR != "SQ"
    ]


def test_without_private_dictionary_private_elements_become_un():
    ile = _implicit_file()
    ebe = ferrodicom.transcode(ile, ExplicitVRBigEndian, private_dictionary=_core.PrivateDictionary())
    # Unknown private elements are written as UN (PS3.5 §6.2.2) with their little-endian bytes unswapped:
    # (0009,102E) in big endian, "UN", 2 reserved bytes, 4-byte length 8, then the FD as stored.
    import struct

    raw = struct.pack("<d", 1234.5678)
    assert b"\x00\x09\x10\x2eUN\x00\x00\x00\x00\x00\x08" + raw in ebe
    # With the dictionary the same element is FD and swapped.
    with_dict = ferrodicom.transcode(ile, ExplicitVRBigEndian)
    assert b"\x00\x09\x10\x2eFD\x00\x08" + struct.pack(">d", 1234.5678) in with_dict
