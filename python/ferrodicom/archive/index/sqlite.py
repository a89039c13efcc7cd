"""The SQLite backend of the index (the embedded default): tables, the group-committing writer thread, read
connections and the query engine.

Four tables, one per Q/R level (:mod:`ferrodicom.archive.index.schema`); columns are named by DICOM keyword.
The index runs in WAL mode; only the committer thread writes, readers never wait for it. Queries translate
each matching condition (:mod:`ferrodicom.archive.matching`) into SQL an index can serve where one exists
(equality, UID lists, wild cards with a literal prefix through GLOB, date ranges as text ranges, PN through
the normalised ``PatientNameNorm`` column); the rest (time and date-time ranges, multi-valued attributes,
other PN attributes) is asked of the matching module row by row through a function registered on the
connection, after SQLite has narrowed the rows with the others.

Sized for 10^7 instances: every key users query has an index (PatientID, PatientNameNorm, StudyDate,
AccessionNumber, StudyID, the UIDs, Modality with its study), and counts per study or series come from the
instance table's study and series indexes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Optional

from ferrodicom.archive.errors import ArchiveError
from ferrodicom.archive.index.base import LEVELS, Index, InstanceRef, Query
from ferrodicom.archive.index.schema import (
    COMPUTED,
    DEFAULT_SCHEMA,
    INSTANCE_META,
    PATIENT_KEYS,
    SERIES_KEYS,
    STUDY_KEYS,
    Schema,
)
from ferrodicom.archive.index.uid_filter import UidFilter
from ferrodicom.archive.matching import (
    AnyOf,
    DateTimeRange,
    Empty,
    Range,
    Single,
    UIDList,
    Wildcard,
    normalise_pn,
)

log = logging.getLogger("ferrodicom.archive")

#: 1: the first index; 2: PatientNameNorm (PN matching) and the Q/R indexes.
SCHEMA_VERSION = 2

_P_OTHER = PATIENT_KEYS[3:]
_S_OTHER = STUDY_KEYS[1:]
_SE_OTHER = SERIES_KEYS[1:]

_DDL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patient (
  PatientID TEXT NOT NULL, IssuerOfPatientID TEXT NOT NULL, PatientName TEXT NOT NULL,
  {", ".join(f"{k} TEXT" for k in _P_OTHER)},
  PatientNameNorm TEXT,
  PRIMARY KEY (PatientID, IssuerOfPatientID, PatientName)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS study (
  StudyInstanceUID TEXT PRIMARY KEY,
  PatientID TEXT NOT NULL, IssuerOfPatientID TEXT NOT NULL, PatientName TEXT NOT NULL,
  {", ".join(f"{k} TEXT" for k in _S_OTHER)},
  PatientNameNorm TEXT
);
CREATE TABLE IF NOT EXISTS series (
  SeriesInstanceUID TEXT PRIMARY KEY,
  StudyInstanceUID TEXT NOT NULL,
  {", ".join(f"{k} TEXT" for k in _SE_OTHER)}
);
CREATE TABLE IF NOT EXISTS instance (
  SOPInstanceUID TEXT PRIMARY KEY,
  SOPClassUID TEXT NOT NULL,
  SeriesInstanceUID TEXT NOT NULL,
  StudyInstanceUID TEXT NOT NULL,
  {", ".join(f"{k} TEXT" for k in ("InstanceNumber", "NumberOfFrames", "ContentDate", "ContentTime",
                                     "AcquisitionDate", "AcquisitionTime", "ImageType", "ImageID", "Rows",
                                     "Columns", "SpecificCharacterSet"))},
  TransferSyntaxUID TEXT NOT NULL,
  size INTEGER NOT NULL,
  path TEXT NOT NULL UNIQUE,
  received_at REAL NOT NULL,
  calling_ae TEXT,
  called_ae TEXT
);
"""  # fmt: skip

#: The indexes (made after a migration has added the columns they use).
_INDEXES = """
CREATE INDEX IF NOT EXISTS study_patient ON study (PatientID, IssuerOfPatientID, PatientName);
CREATE INDEX IF NOT EXISTS study_date ON study (StudyDate);
CREATE INDEX IF NOT EXISTS study_accession ON study (AccessionNumber);
CREATE INDEX IF NOT EXISTS study_name ON study (PatientNameNorm);
CREATE INDEX IF NOT EXISTS study_id ON study (StudyID);
CREATE INDEX IF NOT EXISTS patient_name ON patient (PatientNameNorm);
CREATE INDEX IF NOT EXISTS series_study ON series (StudyInstanceUID);
CREATE INDEX IF NOT EXISTS series_modality ON series (Modality, StudyInstanceUID);
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


class Statements:
    """The upserts of one schema (extra keys change them)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        pc = schema.patient_cols
        self.patient = _upsert("patient", "PatientID, IssuerOfPatientID, PatientName", pc, pc[3:])
        self.study = _upsert("study", "StudyInstanceUID", schema.study_cols, schema.study_cols[1:])
        self.series = _upsert("series", "SeriesInstanceUID", schema.series_cols, schema.series_cols[1:])
        ic = schema.instance_cols
        self.instance = _upsert("instance", "SOPInstanceUID", ic, ic[1:], keep_old=False)


DEFAULT_STATEMENTS = Statements(DEFAULT_SCHEMA)
SQL_PATIENT = DEFAULT_STATEMENTS.patient
SQL_STUDY = DEFAULT_STATEMENTS.study
SQL_SERIES = DEFAULT_STATEMENTS.series
SQL_INSTANCE = DEFAULT_STATEMENTS.instance
SQL_DELETE = "DELETE FROM instance WHERE SOPInstanceUID = ? AND path = ?"
SQL_LOOKUP = "SELECT path FROM instance WHERE SOPInstanceUID = ?"
build_row = DEFAULT_SCHEMA.build_row


def connect(path: str, synchronous: str, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def create_schema(conn: sqlite3.Connection, schema: Schema = DEFAULT_SCHEMA) -> None:
    """Creates the tables, or brings an older index to :data:`SCHEMA_VERSION` (version 1: PatientNameNorm
    filled from PatientName); adds the columns of the schema's extra keys."""
    conn.executescript(_DDL)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is not None and row[0] not in ("1", str(SCHEMA_VERSION)):
        raise ArchiveError(f"index schema version {row[0]} is not {SCHEMA_VERSION}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if row is not None and row[0] == "1":
            conn.create_function("fd_norm", 1, lambda v: normalise_pn(v or ""), deterministic=True)
            for table in ("patient", "study"):
                if "PatientNameNorm" not in _columns(conn, table):
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN PatientNameNorm TEXT")
                conn.execute(f"UPDATE {table} SET PatientNameNorm = fd_norm(PatientName)")
            log.warning("index upgraded from schema version 1 to %d (PatientNameNorm, Q/R indexes)", SCHEMA_VERSION)
        for level, table in (("PATIENT", "patient"), ("STUDY", "study"), ("SERIES", "series"), ("IMAGE", "instance")):
            have = set(_columns(conn, table))
            for key in schema.extra[level]:
                if key not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {key} TEXT")
                    log.warning("index: new key %s on the %s level (filled for instances received from now on)",
                                key, table)  # fmt: skip
                conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_{key} ON {table} ({key})")
        for statement in _INDEXES.strip().split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT(key) DO UPDATE SET value = ?",
            (str(SCHEMA_VERSION), str(SCHEMA_VERSION)),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


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

    def __init__(
        self,
        db_path: str,
        synchronous: str,
        lock: threading.Lock,
        on_done: Any,
        linger: float = 0.0,
        statements: Optional[Statements] = None,
        uids: Optional[UidFilter] = None,
    ) -> None:
        self._conn = connect(db_path, synchronous)
        self._uids = uids  # told of every row's UID before its commit
        self._sql = statements or DEFAULT_STATEMENTS
        self._sync = self._mode = synchronous
        self._linger = linger
        self._lock = lock
        self._cv = threading.Condition(lock)
        self._batch = Batch()
        self._last: Optional[Batch] = None  # the batch being (or last) applied
        self._closing = False
        self._on_done = on_done
        self._seen: dict[tuple[str, ...], tuple[Any, ...]] = {}  # upserted study/series/patient rows, to skip repeats
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
        sql = self._sql
        seen = self._seen
        if len(seen) > 50_000:
            seen.clear()
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        n = 0
        uids = self._uids
        instances: list[tuple[Any, ...]] = []  # inserted together, in order, before any later delete
        for op, payload in ops:
            if op == "put":
                patient, study, series, instance = payload
                if uids is not None:
                    uids.add(instance[0])  # before the row can be seen (see uid_filter)
                patient_key = ("p", *patient[:3])
                if seen.get(patient_key) != patient:
                    conn.execute(sql.patient, patient)
                    seen[patient_key] = patient
                if seen.get(("s", study[0])) != study:
                    conn.execute(sql.study, study)
                    seen[("s", study[0])] = study
                if seen.get(("e", series[0])) != series:
                    conn.execute(sql.series, series)
                    seen[("e", series[0])] = series
                instances.append(instance)
                n += 1
            elif op == "delete":
                if instances:
                    conn.executemany(sql.instance, instances)
                    instances = []
                conn.execute(SQL_DELETE, payload)
            else:  # pragma: no cover - programming error
                raise ValueError(op)
        if instances:
            conn.executemany(sql.instance, instances)
        conn.execute("COMMIT")
        self.commits += 1
        self.rows += n
        self.max_batch = max(self.max_batch, len(ops))
        log.debug("committed %d operations in %.2f ms", len(ops), (time.perf_counter() - started) * 1e3)


# --- reading ----------------------------------------------------------------------------------------------


class ReaderPool:
    """Read-only connections for the calling threads (the writer connection belongs to the committer)."""

    def __init__(self, db_path: str) -> None:
        self._db = db_path
        self._free: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        with self._lock:
            if self._free:
                return self._free.pop()
        conn = connect(self._db, "NORMAL", readonly=True)
        with self._lock:
            self._all.append(conn)
        return conn

    def put(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            self._free.append(conn)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
            self._free.clear()


_ALIAS = {"PATIENT": "p", "STUDY": "s", "SERIES": "se", "IMAGE": "i"}
_DEPTH = {"PATIENT": 0, "STUDY": 1, "SERIES": 2, "IMAGE": 3}
_PATIENT_JOIN = (
    "LEFT JOIN patient p ON p.PatientID = s.PatientID AND p.IssuerOfPatientID = s.IssuerOfPatientID "
    "AND p.PatientName = s.PatientName"
)
_FROM = {
    "PATIENT": "patient p",
    "STUDY": f"study s {_PATIENT_JOIN}",
    "SERIES": f"series se JOIN study s ON s.StudyInstanceUID = se.StudyInstanceUID {_PATIENT_JOIN}",
    "IMAGE": "instance i JOIN series se ON se.SeriesInstanceUID = i.SeriesInstanceUID "
    f"JOIN study s ON s.StudyInstanceUID = i.StudyInstanceUID {_PATIENT_JOIN}",
}
_PATIENT_ID = ("PatientID", "IssuerOfPatientID", "PatientName")
#: Entities without any instance left (their instances deleted) are not matched.
_HAS_INSTANCES = {
    "PATIENT": "EXISTS (SELECT 1 FROM study x JOIN instance y ON y.StudyInstanceUID = x.StudyInstanceUID "
    "WHERE x.PatientID = p.PatientID AND x.IssuerOfPatientID = p.IssuerOfPatientID AND x.PatientName = p.PatientName)",
    "STUDY": "EXISTS (SELECT 1 FROM instance y WHERE y.StudyInstanceUID = s.StudyInstanceUID)",
    "SERIES": "EXISTS (SELECT 1 FROM instance y WHERE y.SeriesInstanceUID = se.SeriesInstanceUID)",
    "IMAGE": "",
}
_SAME_PATIENT = (
    "x.PatientID = {a}.PatientID AND x.IssuerOfPatientID = {a}.IssuerOfPatientID AND x.PatientName = {a}.PatientName"
)
_COMPUTED_SQL = {
    "NumberOfPatientRelatedStudies": "(SELECT count(DISTINCT y.StudyInstanceUID) FROM study x JOIN instance y ON "
    "y.StudyInstanceUID = x.StudyInstanceUID WHERE " + _SAME_PATIENT + ")",
    "NumberOfPatientRelatedSeries": "(SELECT count(DISTINCT y.SeriesInstanceUID) FROM study x JOIN instance y ON "
    "y.StudyInstanceUID = x.StudyInstanceUID WHERE " + _SAME_PATIENT + ")",
    "NumberOfPatientRelatedInstances": "(SELECT count(*) FROM study x JOIN instance y ON "
    "y.StudyInstanceUID = x.StudyInstanceUID WHERE " + _SAME_PATIENT + ")",
    "NumberOfStudyRelatedSeries": "(SELECT count(DISTINCT y.SeriesInstanceUID) FROM instance y "
    "WHERE y.StudyInstanceUID = s.StudyInstanceUID)",
    "NumberOfStudyRelatedInstances": "(SELECT count(*) FROM instance y WHERE y.StudyInstanceUID = s.StudyInstanceUID)",
    "ModalitiesInStudy": "(SELECT group_concat(m, '\\') FROM (SELECT DISTINCT x.Modality AS m FROM series x "
    "WHERE x.StudyInstanceUID = s.StudyInstanceUID AND x.Modality IS NOT NULL AND x.Modality != '' AND EXISTS "
    "(SELECT 1 FROM instance y WHERE y.SeriesInstanceUID = x.SeriesInstanceUID) ORDER BY m))",
    "SOPClassesInStudy": "(SELECT group_concat(c, '\\') FROM (SELECT DISTINCT y.SOPClassUID AS c FROM instance y "
    "WHERE y.StudyInstanceUID = s.StudyInstanceUID ORDER BY c))",
    "NumberOfSeriesRelatedInstances": "(SELECT count(*) FROM instance y "
    "WHERE y.SeriesInstanceUID = se.SeriesInstanceUID)",
}
#: Computed attributes whose matching condition applies to one stored attribute of a lower level:
#: (table, column), matched as "the study has one whose value matches".
_COMPUTED_VALUES = {"ModalitiesInStudy": ("series", "Modality"), "SOPClassesInStudy": ("instance", "SOPClassUID")}
_NUMERIC_VRS = frozenset({"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD"})


def _vr_vm(keyword: str) -> tuple[str, str]:
    from pydicom.datadict import dictionary_VM, dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return "LO", "1"
    return dictionary_VR(tag), dictionary_VM(tag)


def _glob(pattern: str) -> str:
    return pattern.replace("[", "[[]")


def _upper_bound(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class _Sql:
    """One query's WHERE clause under construction: SQL text, its parameters, and the conditions left to the
    matching module (called through ``fd_match(n, value...)``)."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.params: list[Any] = []
        self.fallback: list[Any] = []

    def call(self, cond: Any, *exprs: str) -> str:
        self.fallback.append(cond)
        return f"fd_match({len(self.fallback) - 1}, {', '.join(exprs)})"


class SqliteIndex(Index):
    """The embedded index: one SQLite file (see the module documentation)."""

    def __init__(
        self,
        db_path: str,
        synchronous: str = "FULL",
        on_done: Any = None,
        linger: float = 0.0,
        schema: Optional[Schema] = None,
        lock: Optional[threading.Lock] = None,
        writer: bool = True,
    ) -> None:
        self.db_path = db_path
        self.schema = schema or DEFAULT_SCHEMA
        self.statements = DEFAULT_STATEMENTS if self.schema is DEFAULT_SCHEMA else Statements(self.schema)
        self._readers = ReaderPool(db_path)
        self._committer: Optional[Committer] = None
        #: The UIDs of the rows (see :mod:`.uid_filter`): only while this object is the index's one writer.
        self.uid_filter: Optional[UidFilter] = None
        if writer:
            self.uid_filter = UidFilter(self._max_rowid())
            self._committer = Committer(
                db_path,
                synchronous,
                lock or threading.Lock(),
                on_done or (lambda b: None),
                linger,
                self.statements,
                self.uid_filter,
            )
            filler = threading.Thread(target=self._fill_uids, args=(self.uid_filter,), name="ferrodicom-uid-filter")
            filler.daemon = True
            filler.start()

    def _max_rowid(self) -> int:
        rows = self._read("SELECT max(rowid) FROM instance")
        return int(rows[0][0] or 0)

    def _fill_uids(self, uids: UidFilter) -> None:
        """Background thread at open: the rows already there into the filter (the committer adds the rows it
        commits from now on: the filter existed before it took any)."""
        conn = connect(self.db_path, "NORMAL", readonly=True)
        try:
            uids.add_many(uid for (uid,) in conn.execute("SELECT SOPInstanceUID FROM instance"))
            uids.ready = True
        except Exception as exc:  # noqa: BLE001 - the filter stays "maybe": every check asks SQLite
            log.warning("index: duplicate checks go to SQLite only (%s)", exc)
        finally:
            conn.close()

    def rows_written_elsewhere(self) -> None:
        """Rows were written by another connection (recovery, :meth:`apply`, :meth:`bulk_load`): the UID filter
        no longer knows every row, so duplicate checks ask SQLite from now on."""
        if self.uid_filter is not None:
            self.uid_filter.disable()  # every answer "maybe", for the archive's placer too

    @staticmethod
    def create(db_path: str, synchronous: str, schema: Schema = DEFAULT_SCHEMA) -> None:
        """Creates (or upgrades) the tables of an index file."""
        try:
            conn = connect(db_path, synchronous)
        except sqlite3.Error as exc:
            raise ArchiveError(f"cannot open index {db_path}: {exc}") from exc
        try:
            create_schema(conn, schema)
        finally:
            conn.close()

    # --- writing -------------------------------------------------------------------------------------
    @property
    def committer(self) -> Committer:
        if self._committer is None:
            raise ArchiveError("this index was opened read-only")
        return self._committer

    def submit(self, op: str, payload: Any, uid: Optional[str], journal_seq: Optional[int] = None) -> Batch:
        return self.committer.submit(op, payload, uid, journal_seq)

    def flush(self) -> None:
        if self._committer is not None:
            self._committer.flush()

    def apply(self, ops: Any, synchronous: str = "NORMAL") -> None:
        self.rows_written_elsewhere()
        conn = connect(self.db_path, synchronous)
        sql = self.statements
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, payload in ops:
                if op == "put":
                    patient, study, series, instance = payload
                    conn.execute(sql.patient, patient)
                    conn.execute(sql.study, study)
                    conn.execute(sql.series, series)
                    conn.execute(sql.instance, instance)
                elif op == "delete":
                    conn.execute(SQL_DELETE, payload)
                else:
                    raise ValueError(op)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def bulk_load(self, rows: Any, batch: int = 20_000) -> int:
        """Loads many instances fast (benchmarks, imports): ``rows`` yields :meth:`Schema.build_row` tuples;
        committed every ``batch`` rows without syncing, repeated study/series/patient rows skipped."""
        self.rows_written_elsewhere()
        conn = connect(self.db_path, "OFF")
        sql = self.statements
        n = 0
        last: dict[str, Any] = {}
        try:
            conn.execute("BEGIN")
            for patient, study, series, instance in rows:
                if last.get("p") != patient:
                    conn.execute(sql.patient, patient)
                    last["p"] = patient
                if last.get("s") != study:
                    conn.execute(sql.study, study)
                    last["s"] = study
                if last.get("e") != series:
                    conn.execute(sql.series, series)
                    last["e"] = series
                conn.execute(sql.instance, instance)
                n += 1
                if n % batch == 0:
                    conn.execute("COMMIT")
                    conn.execute("BEGIN")
            conn.execute("COMMIT")
            conn.execute("ANALYZE")
        finally:
            conn.close()
        return n

    # --- reading -------------------------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self._readers.get()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            self._readers.put(conn)

    def lookup(self, sop_instance_uid: str) -> Optional[str]:
        uids = self.uid_filter
        if uids is not None and sop_instance_uid not in uids:
            return None  # never added: certainly not a row
        rows = self._read(SQL_LOOKUP, (sop_instance_uid,))
        return None if not rows else str(rows[0][0])

    def paths(self) -> list[tuple[str, str]]:
        return [(str(u), str(p)) for u, p in self._read("SELECT SOPInstanceUID, path FROM instance")]

    def totals(self) -> dict[str, int]:
        row = self._read(
            "SELECT (SELECT count(*) FROM patient), (SELECT count(*) FROM study), (SELECT count(*) FROM series), "
            "(SELECT count(*) FROM instance)"
        )[0]
        return dict(zip(("patients", "studies", "series", "instances"), map(int, row)))

    def _expr(self, keyword: str, level: str) -> str:
        """The column of ``keyword`` in the FROM clause of ``level`` (the keyword's level is at or above it)."""
        if keyword in _PATIENT_ID or keyword == "PatientNameNorm":
            return f"{'p' if level == 'PATIENT' else 's'}.{keyword}"
        if keyword == "StudyInstanceUID":
            return {"STUDY": "s", "SERIES": "se", "IMAGE": "i"}.get(level, "s") + ".StudyInstanceUID"
        if keyword == "SeriesInstanceUID":
            return {"SERIES": "se", "IMAGE": "i"}.get(level, "se") + ".SeriesInstanceUID"
        if keyword in INSTANCE_META:
            return f"i.{keyword}"
        return f"{_ALIAS[self.schema.level_of[keyword]]}.{keyword}"

    def level_of(self, keyword: str) -> Optional[str]:
        """The level whose entity holds ``keyword`` (None when the index does not hold it)."""
        if keyword in _COMPUTED_SQL:
            return COMPUTED[keyword]
        if keyword in INSTANCE_META:
            return "IMAGE"
        return self.schema.level_of.get(keyword)

    def _condition(self, sql: _Sql, keyword: str, cond: Any, level: str, narrowed: bool = False) -> None:
        """Adds one condition, for an attribute at or above ``level`` (``narrowed``: other conditions select
        the rows too)."""
        if cond.universal:
            return
        if isinstance(cond, DateTimeRange):
            dk, tk = keyword.split("\\")
            d_expr, t_expr = self._expr(dk, level), self._expr(tk, level)
            lo, hi = cond.date_bounds
            if lo:
                sql.where.append(f"{d_expr} >= ?")
                sql.params.append(lo)
            if hi:
                sql.where.append(f"{d_expr} <= ?")
                sql.params.append(hi)
            sql.where.append(sql.call(cond, d_expr, t_expr))
            return
        if keyword in _COMPUTED_VALUES:
            table, column = _COMPUTED_VALUES[keyword]
            inner = _Sql()
            inner.fallback = sql.fallback
            vr, _ = _vr_vm(column)
            text = self._translate(inner, cond, f"x.{column}", vr, "1", None)
            if narrowed:  # other keys narrow the studies: look at each one's series (or instances)
                sql.where.append(
                    f"EXISTS (SELECT 1 FROM {table} x WHERE x.StudyInstanceUID = s.StudyInstanceUID AND {text})"
                )
            else:  # the studies that have one
                sql.where.append(f"s.StudyInstanceUID IN (SELECT x.StudyInstanceUID FROM {table} x WHERE {text})")
            sql.params.extend(inner.params)
            return
        if keyword in _COMPUTED_SQL:
            sql.where.append(sql.call(cond, _COMPUTED_SQL[keyword].format(a="p" if level == "PATIENT" else "s")))
            return
        vr, vm = _vr_vm(keyword)
        norm = self._expr("PatientNameNorm", level) if keyword == "PatientName" else None
        sql.where.append(self._translate(sql, cond, self._expr(keyword, level), vr, vm, norm))

    def _translate(self, sql: _Sql, cond: Any, expr: str, vr: str, vm: str, norm: Optional[str]) -> str:
        """SQL for one condition on ``expr`` (parameters appended to ``sql.params``)."""
        multi = vm != "1"
        if isinstance(cond, UIDList):
            uids = sorted(cond.uids)
            sql.params.extend(uids)
            return f"{expr} = ?" if len(uids) == 1 else f"{expr} IN ({', '.join('?' * len(uids))})"
        if isinstance(cond, Empty):
            return f"({expr} IS NULL OR {expr} = '')"
        if isinstance(cond, AnyOf):
            parts = [self._translate(sql, c, expr, vr, vm, norm) for c in cond.conditions]
            return "(" + " OR ".join(parts) + ")"
        if isinstance(cond, Single) and vr not in ("DA", "TM", "DT") and not multi:
            if cond.fold:
                if norm is None:
                    return sql.call(cond, expr)
                sql.params.append(normalise_pn(cond.value))
                return f"{norm} = ?"
            if vr in _NUMERIC_VRS:
                sql.params.append(cond.value)
                return f"CAST({expr} AS REAL) = CAST(? AS REAL)"
            sql.params.append(cond.value)
            return f"{expr} = ?"
        if isinstance(cond, Wildcard) and not multi:
            column = expr
            pattern = cond.pattern
            if cond.fold:
                if norm is None:
                    return sql.call(cond, expr)
                column, pattern = norm, normalise_pn(pattern)
            prefix = Wildcard(pattern).prefix
            text = f"{column} GLOB ?"
            sql.params.append(_glob(pattern))
            if prefix:
                text = f"({column} >= ? AND {column} < ? AND {text})"
                sql.params[-1:-1] = [prefix, _upper_bound(prefix)]
            return text
        if isinstance(cond, (Range, Single)) and vr == "DA" and not multi:
            rng = cond if isinstance(cond, Range) else Range(cond.value, cond.value, "DA")
            lo, hi = rng.da_bounds
            parts = [f"{expr} >= ?" if lo else f"{expr} >= '0'"]
            sql.params.append(lo) if lo else None
            if hi:
                parts.append(f"{expr} <= ?")
                sql.params.append(hi)
            return f"({' AND '.join(parts)})"  # stored DA values are YYYYMMDD (Schema.build_row)
        return sql.call(cond, expr)

    def _where(self, q: Query, level: str) -> _Sql:
        """The WHERE clause of ``q`` evaluated at ``level`` (keys below it through subqueries when relational)."""
        sql = _Sql()
        below: dict[str, dict[str, Any]] = {}
        for keyword, cond in q.conditions.items():
            if cond.universal:
                continue
            first = keyword.split("\\")[0]
            at = self.level_of(first)
            if at is None:
                continue  # not held: the service treats it as universal
            if _DEPTH[at] > _DEPTH[level]:
                if q.relational:
                    below.setdefault(at, {})[keyword] = cond
                continue
            self._condition(sql, keyword, cond, level, narrowed=len(q.conditions) > 1)
        if below:
            deep = max(below, key=_DEPTH.__getitem__)
            inner = _Sql()
            inner.fallback = sql.fallback
            for conds in below.values():
                for keyword, cond in conds.items():
                    self._condition(inner, keyword, cond, deep)
            if level == "PATIENT":
                link = "(p.PatientID, p.IssuerOfPatientID, p.PatientName)"
                cols = "s.PatientID, s.IssuerOfPatientID, s.PatientName"
            elif level == "STUDY":
                link, cols = "s.StudyInstanceUID", "s.StudyInstanceUID"
            else:
                link, cols = "se.SeriesInstanceUID", "se.SeriesInstanceUID"
            where = " AND ".join(inner.where) or "1"
            sql.where.append(f"{link} IN (SELECT {cols} FROM {_FROM[deep]} WHERE {where})")
            sql.params.extend(inner.params)
        if _HAS_INSTANCES[level]:
            sql.where.append(_HAS_INSTANCES[level])
        return sql

    def _select(self, q: Query) -> tuple[str, _Sql, list[str]]:
        level = q.level
        names: list[str] = []
        cols: list[str] = []
        for lvl in LEVELS[: _DEPTH[level] + 1]:
            for kw in self.schema.level_keys[lvl]:
                if level != "PATIENT" and lvl == "PATIENT" and kw in _PATIENT_ID:
                    pass
                names.append(kw)
                cols.append(self._expr(kw, level))
        if level == "IMAGE":
            for kw in INSTANCE_META:
                names.append(kw)
                cols.append(f"i.{kw}")
        for kw in q.computed:
            if kw in _COMPUTED_SQL and _DEPTH[COMPUTED[kw]] <= _DEPTH[level] and kw not in names:
                names.append(kw)
                cols.append(_COMPUTED_SQL[kw].format(a="p" if level == "PATIENT" else "s"))
        sql = self._where(q, level)
        text = f"SELECT {', '.join(cols)} FROM {_FROM[level]}"
        if sql.where:
            text += " WHERE " + " AND ".join(sql.where)
        return text, sql, names

    def _cursor_rows(self, text: str, sql: _Sql) -> Iterator[tuple[Any, ...]]:
        conn = self._readers.get()
        fallback = list(sql.fallback)

        def fd_match(n: int, *values: Any) -> int:
            value: Any = values[0] if len(values) == 1 else tuple(values)
            if isinstance(value, (int, float)):
                value = str(value)
            return 1 if fallback[n].matches(value) else 0

        try:
            conn.create_function("fd_match", -1, fd_match, deterministic=True)
            cur = conn.execute(text, sql.params)
            while True:
                chunk = cur.fetchmany(64)
                if not chunk:
                    break
                yield from chunk
            cur.close()
        finally:
            self._readers.put(conn)

    def sql(self, q: Query) -> tuple[str, list[Any]]:
        """The SELECT of :meth:`query` and its parameters (for EXPLAIN QUERY PLAN)."""
        text, sql, _ = self._select(q)
        return text, sql.params

    def query(self, q: Query) -> Iterator[dict[str, Any]]:
        text, sql, names = self._select(q)
        if q.limit is not None:
            text += f" LIMIT {int(q.limit)}"
        for row in self._cursor_rows(text, sql):
            yield dict(zip(names, row))

    def count(self, q: Query) -> int:
        sql = self._where(q, q.level)
        text = f"SELECT count(*) FROM {_FROM[q.level]}"
        if sql.where:
            text += " WHERE " + " AND ".join(sql.where)
        return int(next(self._cursor_rows(text, sql))[0])

    def instances(self, q: Query) -> Iterator[InstanceRef]:
        sql = _Sql()
        for keyword, cond in q.conditions.items():
            if not cond.universal and self.level_of(keyword.split("\\")[0]) is not None:
                self._condition(sql, keyword, cond, "IMAGE")
        text = f"SELECT i.SOPInstanceUID, i.SOPClassUID, i.TransferSyntaxUID, i.path, i.size FROM {_FROM['IMAGE']}"
        if sql.where:
            text += " WHERE " + " AND ".join(sql.where)
        text += " ORDER BY i.StudyInstanceUID, i.SeriesInstanceUID, CAST(i.InstanceNumber AS INTEGER)"
        if q.limit is not None:
            text += f" LIMIT {int(q.limit)}"
        for uid, cls, ts, path, size in self._cursor_rows(text, sql):
            yield InstanceRef(uid, cls, ts, path, int(size or 0))

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
        self._readers.close()
