"""The archive's exception: misuse of the archive, or an unusable archive folder or index."""

from __future__ import annotations

from ferrodicom._core import DicomError


class ArchiveError(DicomError):
    """Misuse of the archive or an unusable archive directory/index (not a per-instance failure:
    those are DIMSE statuses returned by :meth:`Archive.ingest`)."""
