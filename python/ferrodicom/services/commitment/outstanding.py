"""The SCU's requests in a state file (SQLite), so that a process waiting for reports can be restarted: the new
one knows the Transaction UIDs still awaited (and answers their reports 0000), those whose wait has ended
(0213), and where the results go.

Two tables: ``request``, one row per Transaction UID (the peer, when it was sent, until when a report is
awaited, and what came: ``state`` ``waiting``, ``committed``, ``failures``, ``expired`` or ``failed``), and
``ref``, one row per instance with its outcome (NULL not reported, 0 committed, else the Failure Reason).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional, Union

_DDL = """
CREATE TABLE IF NOT EXISTS request (
  transaction_uid TEXT PRIMARY KEY,
  called_ae TEXT NOT NULL,
  host TEXT NOT NULL,
  port INTEGER NOT NULL,
  sent_at REAL NOT NULL,
  deadline REAL NOT NULL,
  state TEXT NOT NULL,
  event_type INTEGER,
  via TEXT,
  error TEXT
);
CREATE TABLE IF NOT EXISTS ref (
  transaction_uid TEXT NOT NULL,
  seq INTEGER NOT NULL,
  sop_class_uid TEXT NOT NULL,
  sop_instance_uid TEXT NOT NULL,
  outcome INTEGER,
  PRIMARY KEY (transaction_uid, seq)
) WITHOUT ROWID;
"""


class Outstanding:
    """A request as recorded: what was asked, of whom, and until when a report is awaited."""

    def __init__(
        self,
        transaction_uid: str,
        called_ae: str,
        host: str,
        port: int,
        deadline: float,
        refs: list[tuple[str, str]],
        state: str = "waiting",
    ) -> None:
        self.transaction_uid, self.called_ae, self.host, self.port = transaction_uid, called_ae, host, port
        self.deadline, self.refs, self.state = deadline, refs, state


class RequestLog:
    """The state file. Thread-safe; every write is durable when it returns."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.executescript(_DDL)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def add(self, req: Outstanding) -> None:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO request (transaction_uid, called_ae, host, port, sent_at, deadline, state) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (req.transaction_uid, req.called_ae, req.host, req.port, time.time(), req.deadline, req.state),
                )
                conn.executemany(
                    "INSERT INTO ref (transaction_uid, seq, sop_class_uid, sop_instance_uid) VALUES (?, ?, ?, ?)",
                    [(req.transaction_uid, k, c, i) for k, (c, i) in enumerate(req.refs)],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def finish(
        self,
        transaction_uid: str,
        state: str,
        outcomes: Optional[dict[str, int]] = None,
        event_type: Optional[int] = None,
        via: Optional[str] = None,
        error: Optional[str] = None,
    ) -> None:
        """The request ended (``state``); ``outcomes`` by SOP Instance UID (0 committed, else the reason)."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "UPDATE request SET state = ?, event_type = ?, via = ?, error = ? WHERE transaction_uid = ?",
                    (state, event_type, via, error, transaction_uid),
                )
                if outcomes:
                    conn.executemany(
                        "UPDATE ref SET outcome = ? WHERE transaction_uid = ? AND sop_instance_uid = ?",
                        [(o, transaction_uid, i) for i, o in outcomes.items()],
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def requests(self, states: tuple[str, ...] = ("waiting",)) -> list[Outstanding]:
        """The recorded requests in these states, oldest first."""
        with self._lock:
            marks = ", ".join("?" * len(states))
            rows = self._conn.execute(
                f"SELECT transaction_uid, called_ae, host, port, deadline, state FROM request "
                f"WHERE state IN ({marks}) ORDER BY sent_at",
                states,
            ).fetchall()
            found = []
            for uid, called, host, port, deadline, state in rows:
                refs = self._conn.execute(
                    "SELECT sop_class_uid, sop_instance_uid FROM ref WHERE transaction_uid = ? ORDER BY seq", (uid,)
                ).fetchall()
                found.append(Outstanding(uid, called, host, port, deadline, [(c, i) for c, i in refs], state))
            return found

    def state_of(self, transaction_uid: str) -> Optional[str]:
        with self._lock:
            row = self._conn.execute(
                "SELECT state FROM request WHERE transaction_uid = ?", (transaction_uid,)
            ).fetchone()
            return None if row is None else str(row[0])
