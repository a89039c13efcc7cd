"""The Storage Commitment SCP's transactions, kept in ``<archive>/commitments.sqlite`` so that a request answered
with Success is reported on even when the node is killed before the report went out.

Why a file of its own beside ``index.sqlite`` rather than tables in the index: the index has one writer thread
that group-commits the rows of every C-STORE (a second writer would make C-STORE responses wait on the
commitment's commits, and the reverse), it is about to sit behind an interface that may be PostgreSQL shared by
several nodes (a node's outstanding reports are its own), and its schema version and recovery (which rebuilds
rows from files) know nothing of transactions. The archive's instances are read through ``Archive.query``.

Two tables: ``txn``, one row per request, and ``item``, one row per referenced instance with its outcome once
known. A request is committed (``synchronous = FULL``) before its N-ACTION response goes out; each change of
state after that is committed as it happens. ``state`` is:

``waiting``
    some instances are still being looked for (not yet received, up to ``deadline``);
``ready``
    every outcome is known; the report waits to be sent (``next_attempt``);
``delivered``
    the peer answered the N-EVENT-REPORT with Success or 0107 (``via``: the requesting association, "same",
    or a new one, "new");
``failed``
    not delivered: the peer answered with another status, or the retries ran out (``error`` says which).

Outcomes: NULL not yet known, 0 committed, else the Failure Reason (0008,1197).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from ferrodicom.archive import ArchiveError
from ferrodicom.services.commitment.statuses import EVENT_FAILURES_EXIST, EVENT_SUCCESSFUL

FILE_NAME = "commitments.sqlite"
SCHEMA_VERSION = 1
OPEN_STATES = ("waiting", "ready")

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS txn (
  id INTEGER PRIMARY KEY,
  transaction_uid TEXT NOT NULL,
  calling_ae TEXT NOT NULL,
  called_ae TEXT NOT NULL,
  peer_address TEXT,
  received_at REAL NOT NULL,
  deadline REAL NOT NULL,
  duplicate INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt REAL NOT NULL DEFAULT 0,
  finished_at REAL,
  via TEXT,
  response_status INTEGER,
  error TEXT
);
CREATE INDEX IF NOT EXISTS txn_uid ON txn (transaction_uid);
CREATE INDEX IF NOT EXISTS txn_state ON txn (state);
CREATE TABLE IF NOT EXISTS item (
  txn INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  sop_class_uid TEXT NOT NULL,
  sop_instance_uid TEXT NOT NULL,
  outcome INTEGER,
  PRIMARY KEY (txn, seq)
) WITHOUT ROWID;
"""


@dataclass(eq=False)
class Transaction:
    """One Storage Commitment Request and what became of it."""

    transaction_uid: str
    calling_ae: str
    called_ae: str
    items: list[tuple[str, str]]
    received_at: float
    deadline: float
    peer_address: Optional[str] = None
    #: The Transaction UID was already in use: every instance fails with 0131.
    duplicate: bool = False
    state: str = "waiting"
    #: Per item: None not yet known, 0 committed, else the Failure Reason.
    outcomes: list[Optional[int]] = field(default_factory=list)
    attempts: int = 0
    next_attempt: float = 0.0
    error: Optional[str] = None
    id: int = 0
    # --- in memory only: the requesting association and its N-ACTION (for a report on it), the next check
    assoc: Any = None
    request: Any = None
    next_check: float = 0.0

    def __post_init__(self) -> None:
        if not self.outcomes:
            self.outcomes = [None] * len(self.items)

    @property
    def event_type(self) -> int:
        """1 when every instance is committed, else 2 (PS3.4 J.3.3.1)."""
        return EVENT_SUCCESSFUL if all(o == 0 for o in self.outcomes) else EVENT_FAILURES_EXIST

    def committed(self) -> list[tuple[str, str]]:
        return [it for it, o in zip(self.items, self.outcomes) if o == 0]

    def failed(self) -> list[tuple[str, str, int]]:
        return [(c, i, o) for (c, i), o in zip(self.items, self.outcomes) if o]

    def unresolved(self) -> list[int]:
        return [k for k, o in enumerate(self.outcomes) if o is None]

    def describe(self) -> str:
        return f"transaction {self.transaction_uid} of {self.calling_ae} ({len(self.items)} instances)"


class TransactionStore:
    """The transactions file. Thread-safe (one connection, one lock); every write is committed durably."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA busy_timeout = 30000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.executescript(_DDL)
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise ArchiveError(f"{self.path}: schema version {row[0]} is not {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise ArchiveError(f"cannot open {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _write(self, statements: list[tuple[str, Any]]) -> None:
        """Runs ``(sql, params)`` (a list of tuples: executemany) in one durable transaction."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    if isinstance(params, list):
                        conn.executemany(sql, params)
                    else:
                        conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def add(self, txn: Transaction) -> None:
        """Records a new request (durable when this returns); sets ``txn.id``."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT INTO txn (transaction_uid, calling_ae, called_ae, peer_address, received_at, deadline, "
                    "duplicate, state, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (txn.transaction_uid, txn.calling_ae, txn.called_ae, txn.peer_address, txn.received_at,
                     txn.deadline, int(txn.duplicate), txn.state, txn.next_attempt),
                )  # fmt: skip
                txn.id = int(cur.lastrowid or 0)
                conn.executemany(
                    "INSERT INTO item (txn, seq, sop_class_uid, sop_instance_uid) VALUES (?, ?, ?, ?)",
                    [(txn.id, k, c, i) for k, (c, i) in enumerate(txn.items)],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def known(self, transaction_uid: str) -> bool:
        """Whether any request (open or finished) used this Transaction UID."""
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM txn WHERE transaction_uid = ? LIMIT 1", (transaction_uid,))
            return row.fetchone() is not None

    def open_transactions(self) -> list[Transaction]:
        """The requests not yet reported on (after a restart), oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, transaction_uid, calling_ae, called_ae, peer_address, received_at, deadline, duplicate, "
                "state, attempts, next_attempt, error FROM txn WHERE state IN ('waiting', 'ready') ORDER BY id"
            ).fetchall()
            found = []
            for r in rows:
                items = self._conn.execute(
                    "SELECT sop_class_uid, sop_instance_uid, outcome FROM item WHERE txn = ? ORDER BY seq", (r[0],)
                ).fetchall()
                txn = Transaction(
                    r[1], r[2], r[3], [(c, i) for c, i, _ in items], r[5], r[6], r[4], bool(r[7]), r[8],
                    [o for _, _, o in items], r[9], r[10], r[11], id=r[0],
                )  # fmt: skip
                found.append(txn)
            return found

    def resolve(self, txn: Transaction) -> None:
        """Every outcome is known: records them, and the state ``ready``."""
        self._write(
            [
                ("UPDATE item SET outcome = ? WHERE txn = ? AND seq = ?",
                 [(o, txn.id, k) for k, o in enumerate(txn.outcomes)]),
                ("UPDATE txn SET state = 'ready', next_attempt = ? WHERE id = ?", (txn.next_attempt, txn.id)),
            ]
        )  # fmt: skip

    def attempt_failed(self, txn: Transaction) -> None:
        """A delivery attempt failed and another will be made at ``txn.next_attempt``."""
        self._write(
            [("UPDATE txn SET attempts = ?, next_attempt = ?, error = ? WHERE id = ?",
              (txn.attempts, txn.next_attempt, txn.error, txn.id))]
        )  # fmt: skip

    def finish(self, txn: Transaction, via: Optional[str], status: Optional[int]) -> None:
        """Delivered or given up (``txn.state``)."""
        self._write(
            [("UPDATE txn SET state = ?, attempts = ?, finished_at = ?, via = ?, response_status = ?, error = ? "
              "WHERE id = ?", (txn.state, txn.attempts, time.time(), via, status, txn.error, txn.id))]
        )  # fmt: skip

    def rows(self) -> list[dict[str, Any]]:
        """Every transaction row (for inspection and tests), oldest first."""
        with self._lock:
            cur = self._conn.execute("SELECT * FROM txn ORDER BY id")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def purge(self, finished_before: float) -> int:
        """Forgets requests finished before this time (their Transaction UIDs may then be used again)."""
        with self._lock:
            ids = [
                r[0]
                for r in self._conn.execute(
                    "SELECT id FROM txn WHERE state NOT IN ('waiting', 'ready') AND finished_at < ?",
                    (finished_before,),
                ).fetchall()
            ]
        if ids:
            self._write(
                [("DELETE FROM item WHERE txn = ?", [(i,) for i in ids]),
                 ("DELETE FROM txn WHERE id = ?", [(i,) for i in ids])]
            )  # fmt: skip
        return len(ids)
