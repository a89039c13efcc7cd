"""ferrodicom: a Rust-accelerated DICOM network node.

Bytes belong to Rust (``ferrodicom._core``); this package holds the meaning: AE and association
roles, services, archive, private dictionaries, device profiles and the command line.
"""

from ferrodicom._core import (
    AssociationError,
    CodecError,
    DicomError,
    DicomTimeout,
    DimseError,
    NmError,
    PduError,
)
from ferrodicom._core import __version__ as __version__
from ferrodicom.transcode import extract, from_pydicom, to_pydicom, transcode, transcode_file  # noqa: E402

__all__ = [
    "AssociationError",
    "CodecError",
    "DicomError",
    "DicomTimeout",
    "DimseError",
    "NmError",
    "PduError",
    "extract",
    "from_pydicom",
    "to_pydicom",
    "transcode",
    "transcode_file",
]
