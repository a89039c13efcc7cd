"""The SQLite index: schema, the group-committing writer thread and read connections.

Four tables, one per Q/R level (PS3.4 C.6.1.1): patient, study, series, instance. Columns are named by
DICOM keyword so that a query key maps to a column without a table. Patients are keyed by
(PatientID, IssuerOfPatientID, PatientName), missing values stored as "" in the key columns; a study,
series or instance by its UID. The index runs in WAL mode; only the committer thread writes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any, Optional

from ferrodicom.archive.errors import ArchiveError

log = logging.getLogger("ferrodicom.archive")

SCHEMA_VERSION = 1

PATIENT_KEYS: tuple[str, ...] = ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex")
STUDY_KEYS: tuple[str, ...] = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
)
SERIES_KEYS: tuple[str, ...] = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "ProtocolName",
    "Manufacturer",
    "ManufacturerModelName",
    "StationName",
    "InstitutionName",
)
INSTANCE_KEYS: tuple[str, ...] = (
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
    "NumberOfFrames",
    "ContentDate",
    "ContentTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "ImageType",
    "ImageID",
    "Rows",
    "Columns",
    "SpecificCharacterSet",
)
#: Every data-set keyword the archive indexes (what the data path should extract, top level only).
INDEX_KEYWORDS: tuple[str, ...] = PATIENT_KEYS + STUDY_KEYS + SERIES_KEYS + INSTANCE_KEYS
#: Instance columns that do not come from the data set.
INSTANCE_META: tuple[str, ...] = ("TransferSyntaxUID", "size", "path", "received_at", "calling_ae", "called_ae")

_P_OTHER = PATIENT_KEYS[3:]
_S_OTHER = STUDY_KEYS[1:]
_SE_OTHER = SERIES_KEYS[1:]
_I_OTHER = INSTANCE_KEYS[2:]

_DDL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patient (
  PatientID TEXT NOT NULL, IssuerOfPatientID TEXT NOT NULL, PatientName TEXT NOT NULL,
  {", ".join(f"{k} TEXT" for k in _P_OTHER)},
  PRIMARY KEY (PatientID, IssuerOfPatientID, PatientName)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS study (
  StudyInstanceUID TEXT PRIMARY KEY,
  PatientID TEXT NOT NULL, IssuerOfPatientID TEXT NOT NULL, PatientName TEXT NOT NULL,
  {", ".join(f"{k} TEXT" for k in _S_OTHER)}
);
CREATE INDEX IF NOT EXISTS study_patient ON study (PatientID, IssuerOfPatientID, PatientName);
CREATE INDEX IF NOT EXISTS study_date ON study (StudyDate);
CREATE INDEX IF NOT EXISTS study_accession ON study (AccessionNumber);
CREATE TABLE IF NOT EXISTS series (
  SeriesInstanceUID TEXT PRIMARY KEY,
  StudyInstanceUID TEXT NOT NULL,
  {", ".join(f"{k} TEXT" for k in _SE_OTHER)}
);
CREATE INDEX IF NOT EXISTS series_study ON series (StudyInstanceUID);
CREATE TABLE IF NOT EXISTS instance (
  SOPInstanceUID TEXT PRIMARY KEY,
  SOPClassUID TEXT NOT NULL,
  SeriesInstanceUID TEXT NOT NULL,
  StudyInstanceUID TEXT NOT NULL,
  {", ".join(f"{k} TEXT" for k in _I_OTHER)},
  TransferSyntaxUID TEXT NOT NULL,
  size INTEGER NOT NULL,
  path TEXT NOT NULL UNIQUE,
  received_at REAL NOT NULL,
  calling_ae TEXT,
  called_ae TEXT
);
CREATE INDEX IF NOT EXISTS instance_series ON instance (SeriesInstanceUID);
CREATE INDEX IF NOT EXISTS instance_study ON instance (StudyInstanceUID);
"""


def _upsert(table: str, conflict: str, cols: Sequence[str], update: Sequence[str], keep_old: bool = True) -> str:
    sets = ", ".join(f"{c}=COALESCE(excluded.{c}, {c})" if keep_old else f"{c}=excluded.{c}" for c in update)
    action = f"DO UPDATE SET {sets}" if update else "DO NOTHING"
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
        f"ON CONFLICT({conflict}) {action}"
    )


_PATIENT_COLS = PATIENT_KEYS
_STUDY_COLS = ("StudyInstanceUID", "PatientID", "IssuerOfPatientID", "PatientName") + _S_OTHER
_SERIES_COLS = ("SeriesInstanceUID", "StudyInstanceUID") + _SE_OTHER
_INSTANCE_COLS = ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID") + _I_OTHER + INSTANCE_META

SQL_PATIENT = _upsert("patient", "PatientID, IssuerOfPatientID, PatientName", _PATIENT_COLS, _P_OTHER)
SQL_STUDY = _upsert("study", "StudyInstanceUID", _STUDY_COLS, _STUDY_COLS[1:])
SQL_SERIES = _upsert("series", "SeriesInstanceUID", _SERIES_COLS, _SERIES_COLS[1:])
SQL_INSTANCE = _upsert("instance", "SOPInstanceUID", _INSTANCE_COLS, _INSTANCE_COLS[1:], keep_old=False)
SQL_DELETE = "DELETE FROM instance WHERE SOPInstanceUID = ? AND path = ?"
SQL_LOOKUP = "SELECT path FROM instance WHERE SOPInstanceUID = ?"


def build_row(
    keys: dict[str, str],
    sop_instance_uid: str,
    sop_class_uid: str,
    study_uid: str,
    series_uid: str,
    meta: tuple[Any, ...],
) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """(patient, study, series, instance) parameter tuples for one instance."""
    g = keys.get
    pkey = (g("PatientID") or "", g("IssuerOfPatientID") or "", g("PatientName") or "")
    patient = pkey + tuple(map(g, _P_OTHER))
    study = (study_uid, *pkey, *map(g, _S_OTHER))
    series = (series_uid, study_uid, *map(g, _SE_OTHER))
    instance = (sop_instance_uid, sop_class_uid, series_uid, study_uid, *map(g, _I_OTHER), *meta)
    return patient, study, series, instance


def connect(path: str, synchronous: str, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(_DDL)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif row[0] != str(SCHEMA_VERSION):
        raise ArchiveError(f"index schema version {row[0]} is not {SCHEMA_VERSION}")


class Batch:
    """The operations one commit covers; ``done`` is set once the commit (or its failure) is known."""

    __slots__ = ("ops", "done", "error", "uids", "journal", "durable")

    def __init__(self) -> None:
        self.ops: list[tuple[str, Any]] = []
        self.uids: list[str] = []
        #: Journal records whose rows this batch commits (reported done after the commit).
        self.journal: list[int] = []
        #: Some operation needs the commit itself durable (not only a journal record's checkpoint).
        self.durable = False
        self.done = threading.Event()
        self.error: Optional[BaseException] = None


#: Rows that end a lingering batch early.
LINGER_ROWS = 512


class Committer:
    """The only writer: takes every pending operation, applies them in one transaction, commits, wakes
    all waiters (group commit). ``on_done(batch)`` runs in this thread after each batch.

    ``linger`` (seconds): when nobody waits for a commit (durability none, or rows whose journal record
    already made them durable), instead of one commit and one thread wake-up per row, rows gather for up
    to ``linger`` (or :data:`LINGER_ROWS` rows); a row somebody waits for is committed at once."""

    def __init__(self, db_path: str, synchronous: str, lock: threading.Lock, on_done: Any, linger: float = 0.0) -> None:
        self._conn = connect(db_path, synchronous)
        self._sync = self._mode = synchronous
        self._linger = linger
        self._lock = lock
        self._cv = threading.Condition(lock)
        self._batch = Batch()
        self._last: Optional[Batch] = None  # the batch being (or last) applied
        self._closing = False
        self._on_done = on_done
        self._seen: dict[str, tuple[Any, ...]] = {}  # upserted study/series/patient rows, to skip repeats
        self.commits = 0
        self.rows = 0
        self.max_batch = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="ferrodicom-archive-committer", daemon=True)
        self._thread.start()

    def submit(self, op: str, payload: Any, uid: Optional[str], journal_seq: Optional[int] = None) -> Batch:
        """Queues one operation; the returned batch's ``done`` is set once it is committed. Caller holds no lock."""
        with self._cv:
            if self._closing:
                raise RuntimeError("committer closed")
            batch = self._batch
            batch.ops.append((op, payload))
            if uid is not None:
                batch.uids.append(uid)
            if journal_seq is not None:
                batch.journal.append(journal_seq)
            elif self._sync == "FULL":
                batch.durable = True  # somebody waits for this commit to be durable
            if not self._linger or len(batch.ops) >= LINGER_ROWS or op != "put" or batch.durable:
                self._cv.notify()
            return batch

    def flush(self) -> None:
        """Waits until everything submitted so far is committed."""
        with self._cv:
            batch = self._batch if self._batch.ops else self._last
        if batch is not None:
            batch.done.wait()

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._batch.ops and not self._closing:
                    self._cv.wait(self._linger or None)
                if not self._batch.ops:
                    return
                lingering = not self._closing and not self._batch.durable and len(self._batch.ops) < LINGER_ROWS
                if self._linger and lingering:
                    self._cv.wait(self._linger)  # let more rows gather (woken early by a full batch)
                batch = self._batch
                self._batch = Batch()
                self._last = batch
            # Rows whose records are in the journal become durable at its checkpoint (syncfs): their
            # commit need not flush by itself.
            mode = self._sync if batch.durable else "NORMAL"
            try:
                if mode != self._mode:
                    self._conn.execute(f"PRAGMA synchronous = {mode}")
                    self._mode = mode
                self._apply(batch.ops)
            except BaseException as exc:  # noqa: BLE001 - reported to every waiter of the batch
                batch.error = exc
                self.failures += 1
                self._seen.clear()
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                log.error("archive index commit of %d operations failed: %s", len(batch.ops), exc)
            try:
                self._on_done(batch)
            finally:
                batch.done.set()

    def _apply(self, ops: list[tuple[str, Any]]) -> None:
        conn = self._conn
        seen = self._seen
        if len(seen) > 50_000:
            seen.clear()
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        n = 0
        for op, payload in ops:
            if op == "put":
                patient, study, series, instance = payload
                if seen.get("p" + "\x00".join(patient[:3])) != patient:
                    conn.execute(SQL_PATIENT, patient)
                    seen["p" + "\x00".join(patient[:3])] = patient
                if seen.get("s" + study[0]) != study:
                    conn.execute(SQL_STUDY, study)
                    seen["s" + study[0]] = study
                if seen.get("e" + series[0]) != series:
                    conn.execute(SQL_SERIES, series)
                    seen["e" + series[0]] = series
                conn.execute(SQL_INSTANCE, instance)
                n += 1
            elif op == "delete":
                conn.execute(SQL_DELETE, payload)
            else:  # pragma: no cover - programming error
                raise ValueError(op)
        conn.execute("COMMIT")
        self.commits += 1
        self.rows += n
        self.max_batch = max(self.max_batch, len(ops))
        log.debug("committed %d operations in %.2f ms", len(ops), (time.perf_counter() - started) * 1e3)
