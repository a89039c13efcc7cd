"""The index interface: what the archive and the Q/R services ask of an index, whatever its backend (SQLite
embedded, a server database later). A backend implements :class:`Index`; nothing above it knows which runs.

A query is a :class:`Query`: the level (PATIENT, STUDY, SERIES, IMAGE), the matching conditions by keyword
(:mod:`ferrodicom.archive.matching`; the combined date-time condition under ``"StudyDate\\StudyTime"``),
whether keys below the level may match (relational, PS3.4 C.4.1.2.2) and a row limit. Rows come back as
dictionaries keyword -> stored text (None when absent), one per matching entity, as an iterator that the
caller may stop at any time (the backend streams them; it does not collect them first).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ferrodicom.archive.index.schema import Schema
from ferrodicom.archive.matching import Condition

__all__ = ["LEVELS", "Index", "InstanceRef", "Query"]

#: Q/R levels, top down (PS3.4 C.6.1.1).
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


@dataclass
class Query:
    """A matching tree: every condition must hold (C.2.2.2); universal conditions may be left out."""

    level: str
    conditions: dict[str, Condition] = field(default_factory=dict)
    #: Keys below ``level`` take part in matching (relational query or retrieve); else they are ignored.
    relational: bool = False
    #: Computed attributes to return (see :data:`ferrodicom.archive.index.schema.COMPUTED`).
    computed: tuple[str, ...] = ()
    #: At most this many rows (None: all).
    limit: Optional[int] = None

    def __post_init__(self) -> None:
        self.level = self.level.upper()
        if self.level == "INSTANCE":
            self.level = "IMAGE"
        if self.level not in LEVELS:
            raise ValueError(f"unknown level {self.level!r}; one of {', '.join(LEVELS)}")


@dataclass(frozen=True)
class InstanceRef:
    """What a retrieve needs of one instance."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    #: The file, relative to the archive's root.
    path: str
    size: int = 0


#: One queued write: ("put", row tuples of :meth:`Schema.build_row`) or ("delete", (sop_uid, path)).
Operation = tuple[str, Any]


class Index(ABC):
    """An index of the archive's instances (see the module documentation)."""

    schema: Schema

    # --- writing -------------------------------------------------------------------------------------
    @abstractmethod
    def submit(self, op: str, payload: Any, uid: Optional[str], journal_seq: Optional[int] = None) -> Any:
        """Queues one write for the next group commit; returns a batch whose ``done`` event is set once it is
        committed (``error`` holds a failure)."""

    @abstractmethod
    def apply(self, ops: Iterable[Operation]) -> None:
        """Applies writes at once in one transaction (bulk loads, recovery)."""

    @abstractmethod
    def flush(self) -> None:
        """Waits until every write submitted so far is committed."""

    def rows_written_elsewhere(self) -> None:  # noqa: B027 - a hook most backends need not implement
        """Rows were written around :meth:`submit` (a recovery scan's own connection): a backend that
        remembers which rows it holds (the SQLite index's UID filter) forgets it."""

    # --- reading -------------------------------------------------------------------------------------
    @abstractmethod
    def lookup(self, sop_instance_uid: str) -> Optional[str]:
        """The file (relative path) of an indexed instance, or None."""

    @abstractmethod
    def query(self, q: Query) -> Iterator[dict[str, Any]]:
        """The rows of the entities at ``q.level`` that match, with the attributes of that level and the ones
        above it, and the computed ones asked for."""

    @abstractmethod
    def count(self, q: Query) -> int:
        """How many entities :meth:`query` would return (ignoring ``q.limit``)."""

    @abstractmethod
    def instances(self, q: Query) -> Iterator[InstanceRef]:
        """The instances under the matching entities (what a C-MOVE or C-GET sends)."""

    @abstractmethod
    def paths(self) -> list[tuple[str, str]]:
        """(SOP Instance UID, path) of every instance (the recovery scan)."""

    @abstractmethod
    def totals(self) -> dict[str, int]:
        """Counts of patients, studies, series and instances."""

    @abstractmethod
    def close(self) -> None: ...


#: Builds a backend: (database location, synchronous mode, on_done callback, linger, schema) -> Index.
IndexFactory = Callable[..., Index]
