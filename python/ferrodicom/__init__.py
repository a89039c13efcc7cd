"""ferrodicom: a Rust-accelerated DICOM network node.

Bytes belong to Rust (``ferrodicom._core``); this package holds the meaning: AE and association
roles, services, archive, private dictionaries, device profiles and the command line.
"""

from ferrodicom import dictionaries as dictionaries  # registers the private dictionaries with pydicom
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

__all__ = [
    "AssociationError",
    "CodecError",
    "DicomError",
    "DicomTimeout",
    "DimseError",
    "NmError",
    "PduError",
]
