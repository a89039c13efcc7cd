"""Data sets of DIMSE messages as pydicom Datasets: encoding in, and decoding from, a negotiated transfer
syntax (PS3.5 §10, Annex A). pydicom writes and reads Implicit and Explicit VR Little Endian; the Rust codec
converts to and from Explicit VR Big Endian and Deflated (PS3.5 A.3, A.5)."""

from __future__ import annotations

from io import BytesIO
from typing import Optional

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from ferrodicom import _core
from ferrodicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE


def encode(ds: Dataset, transfer_syntax: str) -> bytes:
    """``ds`` encoded in ``transfer_syntax`` (an uncompressed one, Deflated included)."""
    native = IMPLICIT_VR_LE if transfer_syntax == IMPLICIT_VR_LE else EXPLICIT_VR_LE
    data = _core.encode_dataset(ds, native == IMPLICIT_VR_LE)
    if data is None:  # what the Rust fast path leaves to pydicom (raw elements, other character sets, ...)
        buf = DicomBytesIO()
        buf.is_implicit_VR = native == IMPLICIT_VR_LE
        buf.is_little_endian = True
        write_dataset(buf, ds)
        data = buf.getvalue()
    if transfer_syntax != native:
        data = _core.transcode_dataset(data, native, transfer_syntax)
    return data


def decode(data: Optional[bytes], transfer_syntax: str) -> Dataset:
    """The data set ``data`` (encoded in ``transfer_syntax``) as a pydicom Dataset; empty when there is none."""
    if not data:
        return Dataset()
    if transfer_syntax not in (IMPLICIT_VR_LE, EXPLICIT_VR_LE):
        data = _core.transcode_dataset(data, transfer_syntax, EXPLICIT_VR_LE)
        transfer_syntax = EXPLICIT_VR_LE
    implicit = transfer_syntax == IMPLICIT_VR_LE
    ds = read_dataset(BytesIO(data), implicit, True)
    ds.set_original_encoding(implicit, True)
    return ds
