"""Transfer-syntax conversion of DICOM Part 10 files (PS3.5 §10 and Annex A, PS3.10 §7.1).

The byte work (parsing, byte swapping, VR lookup, deflate) runs in Rust with the GIL released;
this module accepts paths, pydicom Datasets and tag keywords.

Converted between: Implicit VR Little Endian, Explicit VR Little Endian, Explicit VR Big
Endian and Deflated Explicit VR Little Endian. Encapsulated (compressed) syntaxes are passed
through unchanged when source and target are the same, and refused otherwise.
"""

from __future__ import annotations

import io
import os
import pathlib
from typing import Dict, Iterable, Optional, Tuple, Union

import pydicom
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from ferrodicom import _core
from ferrodicom._core import PrivateDictionary, set_default_private_dictionary

__all__ = [
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "EXPLICIT_VR_BIG_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "PrivateDictionary",
    "StreamConverter",
    "extract",
    "from_pydicom",
    "set_default_private_dictionary",
    "to_pydicom",
    "transcode",
    "transcode_dataset",
    "transcode_file",
]

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"

StreamConverter = _core.StreamConverter

Source = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]
TagLike = Union[int, str, Tuple[int, int]]


def _read(data: Source) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    return pathlib.Path(data).read_bytes()


def transcode(data: Source, transfer_syntax: str, *, private_dictionary: Optional[PrivateDictionary] = None) -> bytes:
    """Converts a Part 10 file (bytes or path) to ``transfer_syntax`` and returns the new file.

    The File Meta Information keeps its elements, with Transfer Syntax UID (0002,0010) and the
    group length (0002,0000) updated (PS3.10 §7.1). Raises :class:`ferrodicom.CodecError` on
    malformed input.
    """
    return _core.transcode(_read(data), transfer_syntax, private_dictionary=private_dictionary)


def transcode_dataset(
    data: bytes,
    source_syntax: str,
    transfer_syntax: str,
    *,
    private_dictionary: Optional[PrivateDictionary] = None,
) -> bytes:
    """Converts a bare data set (no preamble or File Meta) between transfer syntaxes."""
    return _core.transcode_dataset(bytes(data), source_syntax, transfer_syntax, private_dictionary=private_dictionary)


def _tags(tags: Iterable[TagLike]) -> list:
    return [int(Tag(t)) for t in tags]


def _elements(raw: Dict[int, Tuple[str, bytes]]) -> Dict[BaseTag, DataElement]:
    out: Dict[BaseTag, DataElement] = {}
    for tag, (vr, value) in raw.items():
        elem = RawDataElement(BaseTag(tag), vr, len(value), value, 0, False, True)
        out[BaseTag(tag)] = convert_raw_data_element(elem)
    return out


def transcode_file(
    src: Union[str, os.PathLike[str]],
    dst: Union[str, os.PathLike[str]],
    transfer_syntax: str,
    *,
    private_dictionary: Optional[PrivateDictionary] = None,
    tags: Iterable[TagLike] = (),
) -> Dict[BaseTag, DataElement]:
    """Streams the Part 10 file ``src`` into ``dst`` converted to ``transfer_syntax``.

    Memory stays bounded (1 MiB reads) whatever the file size. ``dst`` is written beside itself
    as ``<name>.part`` and renamed on success. Returns the top-level ``tags`` (keywords, ints or
    (group, element) pairs) that were present, as pydicom DataElements.
    """
    raw = _core.transcode_file(
        os.fspath(src),
        os.fspath(dst),
        transfer_syntax,
        private_dictionary=private_dictionary,
        tags=_tags(tags),
    )
    return _elements(raw)


def extract(
    source: Source,
    tags: Iterable[TagLike],
    *,
    private_dictionary: Optional[PrivateDictionary] = None,
) -> Dict[BaseTag, DataElement]:
    """Validates a Part 10 file in one streaming pass and returns the named top-level
    attributes that are present (e.g. ``["PatientID", "SOPInstanceUID", "NumberOfFrames"]``)
    as pydicom DataElements. Sequences cannot be extracted."""
    if isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    if not isinstance(source, bytes):
        source = os.fspath(source)
    raw = _core.extract(source, _tags(tags), private_dictionary=private_dictionary)
    return _elements(raw)


def from_pydicom(
    ds: Dataset,
    transfer_syntax: Optional[str] = None,
    *,
    private_dictionary: Optional[PrivateDictionary] = None,
) -> bytes:
    """Encodes a pydicom Dataset as a Part 10 file in ``transfer_syntax``.

    pydicom writes the data set in its own transfer syntax (File Meta's, else Explicit VR
    Little Endian); the Rust codec then converts it.
    """
    meta = getattr(ds, "file_meta", None)
    current = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if current is None:
        ds = ds.copy()
        ds.file_meta = pydicom.dataset.FileMetaDataset(meta or {})
        ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(EXPLICIT_VR_LITTLE_ENDIAN)
        current = EXPLICIT_VR_LITTLE_ENDIAN
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    data = buf.getvalue()
    if transfer_syntax is None or transfer_syntax == current:
        return data
    return transcode(data, transfer_syntax, private_dictionary=private_dictionary)


def to_pydicom(
    data: Source,
    transfer_syntax: Optional[str] = None,
    *,
    private_dictionary: Optional[PrivateDictionary] = None,
) -> Dataset:
    """Reads a Part 10 file (bytes or path) into a pydicom Dataset, first converting it to
    ``transfer_syntax`` in Rust when one is given."""
    raw = _read(data)
    if transfer_syntax is not None:
        raw = transcode(raw, transfer_syntax, private_dictionary=private_dictionary)
    return pydicom.dcmread(io.BytesIO(raw))
