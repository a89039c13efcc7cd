"""ferrodicom: a Rust-accelerated DICOM network node.

Bytes belong to Rust (``ferrodicom._core``); this package holds the meaning: AE and association
roles, services, archive, private dictionaries, device profiles and the command line.
"""

from ferrodicom import dictionaries as dictionaries  # registers the private dictionaries with pydicom
from ferrodicom import events as evt
from ferrodicom import nm as nm  # NM volumes (PS3.3 C.8.4.8)
from ferrodicom._core import (
    AssociationAborted,
    AssociationError,
    AssociationRejected,
    CodecError,
    DicomError,
    DicomTimeout,
    DimseError,
    DimseTimeout,
    NmError,
    PduError,
)
from ferrodicom._core import __version__ as __version__
from ferrodicom.ae import AE, build_role
from ferrodicom.archive import Archive, ArchiveError
from ferrodicom.association import Association
from ferrodicom.status import Status
from ferrodicom.transcode import extract, from_pydicom, to_pydicom, transcode, transcode_file

__all__ = [
    "AE",
    "Archive",
    "ArchiveError",
    "Association",
    "AssociationAborted",
    "AssociationError",
    "AssociationRejected",
    "CodecError",
    "DicomError",
    "DicomTimeout",
    "DimseError",
    "DimseTimeout",
    "NmError",
    "PduError",
    "Status",
    "build_role",
    "evt",
    "extract",
    "from_pydicom",
    "to_pydicom",
    "transcode",
    "transcode_file",
]
