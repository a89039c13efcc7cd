"""ferrodicom.archive: the embedded archive — a folder of Part 10 files plus a SQLite index.

The data path (Rust) writes each received data set to ``archive.incoming_dir`` and calls
:meth:`Archive.ingest` once per C-STORE; the returned ``(status, comment)`` goes into the C-STORE-RSP
(PS3.4 B.2.3). A data path that extracts the index keys before the data set ends can split that call in
two: :meth:`Archive.prepare` mid-stream, :meth:`Archive.complete` once the file is in place.
See :mod:`ferrodicom.archive.status` for the codes.
"""

from ferrodicom.archive.core import (
    DUPLICATE_POLICIES,
    DURABILITIES,
    UNKNOWN_DIR,
    Archive,
    Plan,
    StoredInstance,
)
from ferrodicom.archive.errors import ArchiveError
from ferrodicom.archive.index import INDEX_KEYWORDS
from ferrodicom.archive.recovery import keys_from_dataset
from ferrodicom.archive.status import PRIVATE_STORE_STATUSES, STORE_STATUSES, store_status_meaning
from ferrodicom.archive.uid import check_uid

__all__ = [
    "DUPLICATE_POLICIES",
    "DURABILITIES",
    "INDEX_KEYWORDS",
    "PRIVATE_STORE_STATUSES",
    "STORE_STATUSES",
    "UNKNOWN_DIR",
    "Archive",
    "ArchiveError",
    "Plan",
    "StoredInstance",
    "check_uid",
    "keys_from_dataset",
    "store_status_meaning",
]
