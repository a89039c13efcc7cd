"""The embedded archive: a folder of Part 10 files plus a SQLite index (PS3.4 Annex B Storage SCP side).

Layout: ``<root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``; ``<root>/.incoming`` holds
the data path's temporary ``.part`` files; ``<root>/index.sqlite`` is the index. A Study or Series UID
that is missing or unusable as a file name is replaced by ``_unknown`` in the path only (the index keeps
the value as received, "" if missing) and the instance is stored with warning B007.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from ferrodicom._core import Placer
from ferrodicom.archive import status as st
from ferrodicom.archive.errors import ArchiveError
from ferrodicom.archive.index import (
    INDEX_KEYWORDS,
    INSTANCE_KEYS,
    INSTANCE_META,
    PATIENT_KEYS,
    SERIES_KEYS,
    STUDY_KEYS,
    Batch,
    Committer,
    Index,
    ReaderPool,
    Schema,
    SqliteIndex,
    connect,
)
from ferrodicom.archive.recovery import recover as recover_archive
from ferrodicom.archive.uid import check_uid, clean_uid

__all__ = ["Archive", "ArchiveError", "Plan", "StoredInstance", "DURABILITIES", "DUPLICATE_POLICIES", "UNKNOWN_DIR"]

log = logging.getLogger("ferrodicom.archive")

DURABILITIES = ("full", "none")
DUPLICATE_POLICIES = ("keep-first", "replace", "reject")
UNKNOWN_DIR = "_unknown"
INCOMING_DIR = ".incoming"
QUARANTINE_DIR = ".quarantine"
INDEX_FILE = "index.sqlite"
CLEAN_MARKER = ".clean-shutdown"
LOCK_FILE = ".lock"
#: Size of a new archive's write-ahead journal (durability full; see ``journal`` below), and the largest
#: instance one of its records holds.
JOURNAL_BYTES = 128 << 20
JOURNAL_RECORD_BYTES = 1 << 20
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_COMMENT_MAX = 64  # Error Comment (0000,0902) is LO: 64 characters (PS3.7 E.1)


@dataclass
class StoredInstance:
    """One received data set, written by the data path as a complete Part 10 file (PS3.10 7.1).

    ``keys`` are top-level attributes by keyword as trimmed strings (absent ones missing); see
    :data:`ferrodicom.archive.INDEX_KEYWORDS`. ``coerced``/``discarded`` let the data path report that it
    changed or dropped elements (B000/B006); ``parse_error`` that it could not parse the data set (C000).
    """

    part_path: Union[Path, str]
    size: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    calling_ae: str = ""
    called_ae: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    coerced: bool = False
    discarded: bool = False
    parse_error: Optional[str] = None
    #: The journal record that already made the placed file durable (durability full), if any.
    journal_seq: Optional[int] = None


@dataclass(eq=False)
class Plan:
    """Where one instance goes, decided by :meth:`Archive.prepare` before its file is complete."""

    sop_uid: str
    sop_class: str
    study_uid: str
    series_uid: str
    study_dir: str
    series_dir: str
    rel: str
    #: Absolute path the file is to be renamed to.
    final: str
    keys: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: With the replace policy: a hard link to the file being replaced (restored if indexing fails).
    backup: Optional[str] = None
    #: With the replace policy: the replaced instance's file when it lived at another path.
    old_other: Optional[str] = None


def _comment(text: str) -> str:
    return text if len(text) <= _COMMENT_MAX else text[: _COMMENT_MAX - 3] + "..."


def _b007_comment(warnings: list[str]) -> str:
    """The Error Comment of a B007: the warnings as they are when they fit its 64 characters, else which UIDs
    are missing and which unusable, shorter and shorter (the log has the full text)."""
    text = "; ".join(warnings)
    if len(text) <= _COMMENT_MAX:
        return text
    missing: list[str] = []
    unusable: list[str] = []
    for w in warnings:
        if w.startswith("no SOP "):
            what = w[len("no SOP ") : -len(" UID in data set")]
            missing += ["SOP Instance", "SOP Class"] if what == "Instance/Class" else [f"SOP {what}"]
        elif w.endswith(" Instance UID: missing"):
            missing.append(w.split()[0])
        else:
            unusable.append(w.split()[0])

    def full(name: str) -> str:
        return f"{name} UID" if name.startswith("SOP") else f"{name} Instance UID"

    for fmt, names in (("{}: {}", full), ("{} UID: {}", str)):
        parts = [fmt.format("missing", ", ".join(map(names, missing)))] if missing else []
        parts += [fmt.format("unusable", ", ".join(map(names, unusable)))] if unusable else []
        text = "; ".join(parts)
        if len(text) <= _COMMENT_MAX:
            break
    return _comment(text)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_archive(path: Path) -> int:
    """An exclusive lock for the life of the Archive: one process (one Archive) per directory, since
    recovery deletes temporary files and rewrites the index."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise ArchiveError(f"archive {path.parent} is in use by another Archive (lock {path})") from exc
    return fd


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


_ReaderPool = ReaderPool


def _needs_decoding(keys: dict[str, str]) -> bool:
    """True when the data path's text may not be the values' characters: it decodes text as UTF-8, so a value
    outside ASCII is right only under ISO_IR 192 (anything else, ISO_IR 100 and ISO 2022 escapes included,
    is read again through pydicom, which applies the Specific Character Set)."""
    charset = keys.get("SpecificCharacterSet", "")
    if charset.replace(" ", "") in ("ISO_IR192", "\\ISO_IR192"):
        return any("\ufffd" in v for v in keys.values())
    return not all(v.isascii() for v in keys.values())


def _keys_from_file(path: str, keys: dict[str, str], keywords: Sequence[str]) -> dict[str, str]:
    """The index keys read from the placed file with pydicom (decoded in its character set); ``keys`` on
    failure."""
    import pydicom

    from ferrodicom.archive.recovery import keys_from_dataset

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        fixed = keys_from_dataset(ds, keywords)
    except Exception as exc:  # noqa: BLE001 - the data path's keys stay
        log.warning("cannot decode the text values of %s: %s", path, exc)
        return keys
    return {**keys, **{k: v for k, v in fixed.items() if k in keys}}


_LEVEL_SQL = {
    "patient": (f"SELECT {', '.join(PATIENT_KEYS)} FROM patient", PATIENT_KEYS),
    "study": (
        "SELECT "
        + ", ".join(
            f"study.{k}" for k in ("StudyInstanceUID", "PatientID", "IssuerOfPatientID", "PatientName", *STUDY_KEYS[1:])
        )
        + ", patient.PatientBirthDate, patient.PatientSex FROM study LEFT JOIN patient USING "
        "(PatientID, IssuerOfPatientID, PatientName)",
        PATIENT_KEYS + STUDY_KEYS,
    ),
    "series": ("SELECT series.* FROM series", SERIES_KEYS + ("StudyInstanceUID",)),
    "instance": (
        "SELECT instance.*, "
        + ", ".join(f"series.{k}" for k in SERIES_KEYS[1:])
        + ", "
        + ", ".join(f"study.{k}" for k in STUDY_KEYS[1:])
        + ", study.PatientID, study.IssuerOfPatientID, study.PatientName, patient.PatientBirthDate, "
        "patient.PatientSex FROM instance "
        "LEFT JOIN series USING (SeriesInstanceUID) "
        "LEFT JOIN study ON study.StudyInstanceUID = instance.StudyInstanceUID "
        "LEFT JOIN patient USING (PatientID, IssuerOfPatientID, PatientName)",
        INDEX_KEYWORDS + INSTANCE_META,
    ),
}
_QUALIFY = {
    "study": {k: "study." + k for k in ("PatientID", "IssuerOfPatientID", "PatientName", *STUDY_KEYS)},
    "instance": {
        **{k: "series." + k for k in SERIES_KEYS[1:]},
        **{k: "study." + k for k in ("PatientID", "IssuerOfPatientID", "PatientName", *STUDY_KEYS[1:])},
        **{k: "instance." + k for k in ("SeriesInstanceUID", "StudyInstanceUID", *INSTANCE_KEYS, *INSTANCE_META)},
    },
}


def query_sql(level: str, filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """The SELECT of :meth:`Archive.query` and its parameters (also run on a read-only connection by
    :mod:`ferrodicom.archive.inspect`)."""
    level = level.lower()
    if level == "image":
        level = "instance"
    if level not in _LEVEL_SQL:
        raise ArchiveError(f"unknown level {level!r}; one of {', '.join(_LEVEL_SQL)}")
    sql, allowed = _LEVEL_SQL[level]
    qualify = _QUALIFY.get(level, {})
    where: list[str] = []
    params: list[Any] = []
    for key, value in filters.items():
        if key not in allowed:
            raise ArchiveError(f"{key} is not a {level}-level key")
        col = qualify.get(key, key)
        if value is None:
            where.append(f"({col} IS NULL OR {col} = '')")
        elif isinstance(value, (list, tuple, set, frozenset)):
            values = list(value)
            where.append(f"{col} IN ({', '.join('?' * len(values))})" if values else "0")
            params.extend(values)
        elif isinstance(value, str) and ("*" in value or "?" in value):
            pattern = value.replace("[", "[[]").replace("*", "\x00").replace("?", "_q_")
            pattern = pattern.replace("\x00", "*").replace("_q_", "?")
            where.append(f"{col} GLOB ?")
            params.append(pattern)
        else:
            where.append(f"{col} = ?")
            params.append(value)
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql, params


class Archive:
    """A folder plus a SQLite index; :meth:`ingest` is called once per received C-STORE (PS3.4 B.2).

    ``durability="full"``: a 0000 is returned only after the file, its directory entry and its index row
    are on stable storage (group commit across threads). ``"none"``: nothing is fsynced and ingest does not
    wait for the index commit; flushing is left to the OS, as DCMTK's storescp does.
    ``duplicates``: "keep-first" (existing file stays, 0000), "replace" (new file replaces it, 0000) or
    "reject" (0xC003).
    ``journal``: size in bytes of the write-ahead journal ``<root>/.journal`` (durability full only; 0 for
    none). An instance up to ``journal_record`` bytes that arrives over the network streams into a journal
    record, is made durable by committing that record instead of fsyncing its file (the record is copied
    into the file while the commit flushes), and is answered then; its file and row become durable at the
    next checkpoint, and a crash
    before that is repaired at open by replaying the journal. See DESIGN.md, "Journal".
    """

    def __init__(
        self,
        root: Union[str, os.PathLike[str]],
        durability: str = "full",
        duplicates: str = "keep-first",
        journal: int = JOURNAL_BYTES,
        journal_record: int = JOURNAL_RECORD_BYTES,
        journal_checkpoint: float = 1.0,
        index_keys: Optional[Mapping[str, Sequence[str]]] = None,
    ) -> None:
        if durability not in DURABILITIES:
            raise ArchiveError(f"durability must be one of {DURABILITIES}, not {durability!r}")
        if duplicates not in DUPLICATE_POLICIES:
            raise ArchiveError(f"duplicates must be one of {DUPLICATE_POLICIES}, not {duplicates!r}")
        self.root = Path(root).resolve()
        try:
            #: What the index holds: the default keys plus ``index_keys`` ({level: [keyword, ...]}).
            self.schema = Schema(index_keys)
        except ValueError as exc:
            raise ArchiveError(str(exc)) from None
        self.durability = durability
        self.duplicates = duplicates
        self._full = durability == "full"
        self._journal_bytes = journal if self._full else 0
        self._journal_record = journal_record
        self._journal_checkpoint = journal_checkpoint
        self.journal: Optional[Any] = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.incoming_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise ArchiveError(f"cannot create archive directory {self.root}: {exc}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ArchiveError(f"archive directory {self.root} is not writable")
        self._lock_fd = _lock_archive(self.root / LOCK_FILE)
        self._root = str(self.root)
        self._incoming = str(self.incoming_dir)
        self._db_path = str(self.root / INDEX_FILE)
        try:
            self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _open(self) -> None:
        self._lock = threading.Lock()
        self._flush_hooks: list[Callable[[], None]] = []
        #: The SOP Instance UIDs reserved by an ingest in progress, the "<study>/<series>" directories made
        #: (and synced) by this process, and with them the data path's own decision for the common case
        #: (rust/node/src/placement.rs): the storage service hands it to the data path.
        self.placer = Placer(self._root)
        self._uid_ok: set[str] = set()  # Study/Series UIDs already checked usable as directory names
        self._dirs_lock = threading.Lock()
        self._closed = False
        self._dirty = False
        self._leading_zero_warnings = 0
        self._seq = 0
        try:
            SqliteIndex.create(self._db_path, "FULL" if self._full else "NORMAL", self.schema)
        except sqlite3.Error as exc:
            raise ArchiveError(f"cannot open index {self._db_path}: {exc}") from exc
        if not self._full:
            log.warning(
                "archive %s: durability none: files and index are not fsynced; flushing is left to the "
                "operating system (as DCMTK's storescp does); a power loss may lose acknowledged instances",
                self.root,
            )
        replayed: list[str] = []
        # A journal left by an earlier run is replayed whatever this run's durability or journal size.
        if self._journal_bytes or (self.root / ".journal").exists():
            # Replays what a crash left (files written again), before the recovery scan indexes them.
            from ferrodicom._core import Journal

            try:
                self.journal = Journal(
                    self._root, self._journal_bytes or JOURNAL_BYTES, self._journal_record, self._journal_checkpoint
                )
            except OSError as exc:
                raise ArchiveError(str(exc)) from exc
            replayed = self.journal.replayed
            damaged = self.journal.damaged
            if damaged:
                # Its records cannot be trusted without the header: the file is kept aside.
                log.error("archive %s: journal set aside: %s", self.root, damaged)
            if replayed:
                log.warning("archive %s: %d instances written again from the journal", self.root, len(replayed))
            if replayed or damaged:
                _unlink(str(self.root / CLEAN_MARKER))  # the recovery below runs its full scan
            if not self._journal_bytes:
                self.journal.close()
                self.journal = None
        self.last_recovery = self.recover(full_scan=None)
        self.last_recovery["journal_replayed"] = len(replayed)
        index = SqliteIndex(
            self._db_path,
            "FULL" if self._full else "NORMAL",
            self._batch_done,
            linger=0.02,
            schema=self.schema,
            lock=self._lock,
        )
        #: The index (the embedded SQLite backend); the Q/R services ask it through :class:`Index` only.
        self.index: Index = index
        self._readers = index._readers
        self._committer: Committer = index.committer
        if index.uid_filter is not None:
            # The data path may place what this archive would place without a remark and answer at once (see
            # early_status): a new UID, with durability none or through the journal.
            self.placer.attach(index.uid_filter, not (self._full and self.journal is None))

    # -- properties ---------------------------------------------------------------------------------

    @property
    def incoming_dir(self) -> Path:
        """Where the data path writes ``.part`` files (inside the archive: same filesystem)."""
        return self.root / INCOMING_DIR

    @property
    def stats(self) -> dict[str, int]:
        """Index writer counters: ``commits``, ``rows`` (instance rows written), ``max_batch``, ``failures``."""
        c = self._committer
        return {"commits": c.commits, "rows": c.rows, "max_batch": c.max_batch, "failures": c.failures}

    def new_part_path(self) -> Path:
        """A fresh unique ``.part`` path in :attr:`incoming_dir` (for callers that do not make their own)."""
        with self._lock:
            self._seq += 1
            seq = self._seq
        return self.incoming_dir / f"{os.getpid()}-{threading.get_ident()}-{seq}-{time.monotonic_ns()}.part"

    # -- ingest -------------------------------------------------------------------------------------

    def ingest(self, inst: StoredInstance) -> tuple[int, Optional[str]]:
        """Validates, places and indexes one received file; returns ``(status, error_comment)``.

        Every failure leaves neither the file nor an index row behind. See
        :mod:`ferrodicom.archive.status` for the codes (PS3.4 B.2.3). Equivalent to :meth:`prepare`,
        moving the file to ``plan.final``, then :meth:`complete`.
        """
        part = os.fspath(inst.part_path)
        if os.path.dirname(part) != self._incoming:
            raise ArchiveError(f"part file {part} is not in {self._incoming}")
        if inst.parse_error is not None:
            _unlink(part)
            return st.CANNOT_UNDERSTAND, _comment(f"cannot parse data set: {inst.parse_error}")
        plan = self.prepare(inst.sop_class_uid, inst.sop_instance_uid, inst.keys)
        if not isinstance(plan, Plan):
            _unlink(part)
            return plan
        try:
            os.replace(part, plan.final)
        except OSError as exc:
            part_missing = isinstance(exc, FileNotFoundError) and not os.path.exists(part)
            _unlink(part)
            self.abandon(plan, failed=not part_missing)
            if part_missing:
                return st.RECEIVED_FILE_UNUSABLE, "received file missing"
            if isinstance(exc, FileNotFoundError):
                return st.OUT_OF_RESOURCES_IO, "archive directory disappeared"
            if exc.errno in _DISK_FULL:
                return st.OUT_OF_RESOURCES_DISK, _comment(f"disk full: {os.strerror(exc.errno or 0)}")
            return st.OUT_OF_RESOURCES_IO, _comment(f"cannot place file: {exc.strerror or exc}")
        return self.complete(plan, inst)

    def prepare(
        self, sop_class_uid: str, sop_instance_uid: str, keys: dict[str, str]
    ) -> Union[Plan, tuple[int, Optional[str]]]:
        """First half of :meth:`ingest`, for a data path that knows the index keys before the data set
        has finished arriving (the Pixel Data usually follows them): validates the UIDs, applies the
        duplicate policy and makes the directory. Returns the final ``(status, comment)`` when the
        instance is not to be kept, else a :class:`Plan` whose file is to be placed at ``plan.final``
        (same filesystem as :attr:`incoming_dir`), followed by exactly one of :meth:`complete` or
        :meth:`abandon`. A plan reserves its SOP Instance UID until then.
        """
        if self._closed:
            return st.OUT_OF_RESOURCES_CLOSED, "archive closed"
        sop_uid = clean_uid(sop_instance_uid)
        ok, problem = check_uid(sop_uid)
        if not ok:
            return st.INVALID_SOP_INSTANCE_UID, _comment(f"SOP Instance UID: {problem}")
        if problem is not None:
            self._warn_leading_zero("SOP Instance", sop_uid)
        sop_class = clean_uid(sop_class_uid)
        warnings: list[str] = []
        ds_uid = keys.get("SOPInstanceUID")
        ds_class = keys.get("SOPClassUID")
        if ds_uid and ds_uid != sop_uid:
            return st.SOP_CLASS_MISMATCH, "data set SOP Instance UID differs from the command's"
        if ds_class and ds_class != sop_class:
            return st.SOP_CLASS_MISMATCH, "data set SOP Class UID differs from the command's"
        if not ds_uid and not ds_class:
            warnings.append("no SOP Instance/Class UID in data set")
        elif not ds_uid or not ds_class:
            warnings.append(f"no SOP {'Instance' if not ds_uid else 'Class'} UID in data set")
        plan = self._plan(sop_uid, sop_class, keys, warnings)

        # One ingest per SOP Instance UID at a time: the duplicate decision sees every earlier one committed.
        self.placer.reserve(sop_uid)  # waits while another ingest of this UID is in progress
        try:
            existing = self._lookup(sop_uid)
        except sqlite3.Error as exc:
            self.abandon(plan)
            return st.OUT_OF_RESOURCES_INDEX, _comment(f"index not readable: {exc}")
        if existing is not None:
            if self.duplicates == "reject":
                self.abandon(plan)
                return st.DUPLICATE_REJECTED, "duplicate SOP Instance UID refused"
            if self.duplicates == "keep-first":
                self.abandon(plan)
                log.info("duplicate SOP Instance %s: kept the first one (%s)", sop_uid, existing)
                return st.SUCCESS, None
            if existing == plan.rel:
                backup = f"{self.new_part_path()}.old"
                try:
                    os.link(plan.final, backup)
                    plan.backup = backup
                except FileNotFoundError:
                    pass
            else:
                plan.old_other = f"{self._root}/{existing}"
        try:
            self._ensure_dir(plan.study_dir, plan.series_dir)
        except OSError as exc:
            self.abandon(plan, failed=True)
            if exc.errno in _DISK_FULL:
                return st.OUT_OF_RESOURCES_DISK, _comment(f"disk full: {os.strerror(exc.errno or 0)}")
            return st.OUT_OF_RESOURCES_IO, _comment(f"cannot make directory: {exc.strerror or exc}")
        if warnings:
            log.warning(
                "SOP Instance %s is stored with warning B007 (data set does not match SOP Class): %s; filed as %s",
                sop_uid,
                "; ".join(warnings),
                plan.rel,
            )
        return plan

    def _plan(self, sop_uid: str, sop_class: str, keys: dict[str, str], warnings: list[str]) -> Plan:
        study_uid = keys.get("StudyInstanceUID") or ""
        series_uid = keys.get("SeriesInstanceUID") or ""
        study_dir, series_dir = self._dir_names(study_uid, series_uid, warnings)
        rel = f"{study_dir}/{series_dir}/{sop_uid}.dcm"
        return Plan(
            sop_uid, sop_class, study_uid, series_uid, study_dir, series_dir, rel, f"{self._root}/{rel}", keys, warnings
        )

    def complete_placed(self, inst: StoredInstance) -> tuple[int, Optional[str]]:
        """:meth:`complete` for an instance the data path placed by :attr:`placer`'s decision, which is the one
        :meth:`prepare` makes for a new instance without warnings (its UID is reserved, its directory made)."""
        plan = self._plan(clean_uid(inst.sop_instance_uid), clean_uid(inst.sop_class_uid), inst.keys, [])
        return self.complete(plan, inst)

    def early_status(self, plan: Plan) -> Optional[tuple[int, Optional[str]]]:
        """The status :meth:`complete` will return once the file is at ``plan.final``, for a data path
        that answers before indexing: with durability none once the file is there, with full once a
        journal record made it durable. None when the answer must wait for the index (a replacement,
        or full without a journal)."""
        if (self._full and self.journal is None) or plan.backup is not None or plan.old_other is not None:
            return None
        return self._status(None, plan.warnings)

    def abandon(self, plan: Plan, failed: bool = False) -> None:
        """Gives up a :meth:`prepare` plan whose file was not placed (releases its SOP Instance UID).
        ``failed``: placing failed, so the directory is checked again next time."""
        if plan.backup is not None:
            _unlink(plan.backup)
            plan.backup = None
        if failed:
            self.placer.forget_dir(f"{plan.study_dir}/{plan.series_dir}")
        self.placer.release(plan.sop_uid)

    def complete(self, plan: Plan, inst: StoredInstance) -> tuple[int, Optional[str]]:
        """Second half of :meth:`ingest`: the file is at ``plan.final``; indexes it (and with durability
        full waits until file, directory entry and index row are durable)."""
        try:
            keys = plan.keys
            if inst.parse_error is None and _needs_decoding(keys):
                keys = _keys_from_file(plan.final, keys, self.schema.keywords)
            row = self.schema.build_row(
                keys,
                plan.sop_uid,
                plan.sop_class,
                plan.study_uid,
                plan.series_uid,
                (inst.transfer_syntax_uid, inst.size, plan.rel, time.time(), inst.calling_ae, inst.called_ae),
            )
        except Exception:
            # No row will come: the UID must not stay reserved (the next ingest of it would wait forever),
            # and the file in place (perhaps answered already) is indexed by the next open's full scan.
            self._index_at_next_open()
            log.exception("cannot index %s; the next open indexes it", plan.final)
            self.abandon(plan)
            raise
        final, backup = plan.final, plan.backup
        journaled = inst.journal_seq is not None
        try:
            batch = self._committer.submit("put", row, plan.sop_uid, inst.journal_seq)
        except RuntimeError:
            if (journaled or not self._full) and self.early_status(plan) is not None:
                # The sender may already have its answer (early reply): keep the file, and make the next
                # open run the full recovery scan, which indexes it.
                self._index_at_next_open()
                log.error("archive closed before %s was indexed; the next open indexes it", final)
            else:
                self._undo(final, backup)
            self.abandon(plan)
            return st.OUT_OF_RESOURCES_CLOSED, "archive closed"
        if not self._full or journaled:
            # Answered already (early reply): nobody waits for this commit.
            if backup is not None or plan.old_other is not None:
                batch.done.wait()
                if batch.error is None:
                    self._after_replace(backup, plan.old_other)
            return self._status(inst, plan.warnings)

        fsync_error: Optional[OSError] = None
        try:
            _fsync_dir(f"{self._root}/{plan.study_dir}/{plan.series_dir}")
        except OSError as exc:
            fsync_error = exc
        batch.done.wait()
        if batch.error is not None:
            self._undo(final, backup)
            return st.OUT_OF_RESOURCES_INDEX, _comment(f"index not written: {batch.error}")
        if fsync_error is not None:
            self._committer.submit("delete", (plan.sop_uid, plan.rel), None).done.wait()
            self._undo(final, backup)
            code = st.OUT_OF_RESOURCES_DISK if fsync_error.errno in _DISK_FULL else st.OUT_OF_RESOURCES_IO
            return code, _comment(f"cannot sync directory: {fsync_error.strerror}")
        if self.journal is not None and (backup is not None or plan.old_other is not None):
            # The replacement is durable: a journal record of the copy it replaced must not be replayed.
            try:
                self.journal.supersede(plan.rel)
                if plan.old_other is not None:
                    self.journal.supersede(os.path.relpath(plan.old_other, self._root))
            except OSError as exc:
                log.error("journal: cannot cancel the replaced copy of %s: %s", plan.rel, exc)
        self._after_replace(backup, plan.old_other)
        return self._status(inst, plan.warnings)

    def _status(self, inst: Optional[StoredInstance], warnings: list[str]) -> tuple[int, Optional[str]]:
        if warnings:
            return st.WARN_MISMATCH, _b007_comment(warnings)
        if inst is None:
            return st.SUCCESS, None
        if inst.discarded:
            return st.WARN_DISCARDED, "elements discarded"
        if inst.coerced:
            return st.WARN_COERCED, "data elements coerced"
        return st.SUCCESS, None

    def _dir_names(self, study_uid: str, series_uid: str, warnings: list[str]) -> tuple[str, str]:
        names = []
        for label, uid in (("Study", study_uid), ("Series", series_uid)):
            if uid in self._uid_ok:  # checked before
                names.append(uid)
                continue
            ok, problem = check_uid(uid)
            if ok:
                if problem is not None:
                    self._warn_leading_zero(label, uid)
                names.append(uid)
            else:
                warnings.append(f"{label} Instance UID: {problem if uid else 'missing'}")
                names.append(UNKNOWN_DIR)
        return names[0], names[1]

    def _warn_leading_zero(self, label: str, uid: str) -> None:
        self._leading_zero_warnings += 1
        if self._leading_zero_warnings <= 10 or self._leading_zero_warnings % 1000 == 0:
            log.warning("%s UID %s has a component with a leading zero (PS3.5 9.1); accepted", label, uid)

    def _ensure_dir(self, study_dir: str, series_dir: str) -> None:
        key = f"{study_dir}/{series_dir}"
        if self.placer.has_dir(key):
            return
        with self._dirs_lock:
            if self.placer.has_dir(key):
                return
            study_path = f"{self._root}/{study_dir}"
            series_path = f"{study_path}/{series_dir}"
            made_study = made_series = False
            try:
                os.mkdir(study_path)
                made_study = True
            except FileExistsError:
                pass
            try:
                os.mkdir(series_path)
                made_series = True
            except FileExistsError:
                pass
            if self._full:
                # A new directory entry is durable only once its parent directory is synced.
                if made_study:
                    _fsync_dir(self._root)
                if made_series or made_study:
                    _fsync_dir(study_path)
            self.placer.add_dir(key)
            if len(self._uid_ok) > 100_000:
                self._uid_ok.clear()
            if study_dir != UNKNOWN_DIR:
                self._uid_ok.add(study_dir)
            if series_dir != UNKNOWN_DIR:
                self._uid_ok.add(series_dir)

    def _lookup(self, sop_uid: str) -> Optional[str]:
        return self.index.lookup(sop_uid)

    def _undo(self, final: str, backup: Optional[str]) -> None:
        """Takes a placed file back out after a failed commit (restoring the replaced one if any)."""
        if backup is not None:
            try:
                os.replace(backup, final)
                return
            except OSError:
                _unlink(backup)
        _unlink(final)

    def _index_at_next_open(self) -> None:
        """A file in place has no row coming: the next open runs the full recovery scan, which indexes it (no clean
        shutdown is recorded now, and the marker of the last one goes)."""
        self._dirty = True
        _unlink(str(self.root / CLEAN_MARKER))

    def _after_replace(self, backup: Optional[str], old_other: Optional[str]) -> None:
        if backup is not None:
            _unlink(backup)
        if old_other is not None:
            _unlink(old_other)

    def _batch_done(self, batch: Batch) -> None:
        """Committer thread: releases the batch's SOP Instance UIDs for the next ingest of the same UID."""
        if batch.error is not None:
            self._dirty = True
            if not self._full or batch.journal:
                log.error("archive index commit failed after the reply: %s; recovery runs at next open", batch.error)
        elif batch.journal and self.journal is not None:
            self.journal.done(batch.journal)
        if batch.uids:
            self.placer.release_all(batch.uids)

    # -- lifecycle ----------------------------------------------------------------------------------

    def add_flush_hook(self, hook: Callable[[], None]) -> None:
        """``hook()`` waits until a data path has handed over every instance it answered so far (the storage
        service indexes early-answered instances on a thread of its own): :meth:`flush` and :meth:`close`
        call it first."""
        self._flush_hooks.append(hook)

    def flush(self) -> None:
        """Waits until every instance answered so far is indexed and its row committed (matters with
        durability none, and for journaled instances)."""
        self._run_flush_hooks()
        self._committer.flush()

    def _run_flush_hooks(self) -> None:
        for hook in list(self._flush_hooks):
            hook()

    def close(self) -> None:
        """Commits what is queued, stops the committer thread and marks a clean shutdown."""
        if self._closed:
            return
        self._run_flush_hooks()  # instances answered before close are indexed, not left to the next open's scan
        self._closed = True
        self.placer.close()
        try:
            self.index.close()
            if self.journal is not None:
                self.journal.close()  # final checkpoint
            if not self._dirty:
                self._mark_clean()
        finally:
            os.close(self._lock_fd)

    def _mark_clean(self) -> None:
        conn = connect(self._db_path, "FULL")
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        marker = self.root / CLEAN_MARKER
        marker.write_bytes(b"")
        if self._full:
            fd = os.open(marker, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(self._root)

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recovery -----------------------------------------------------------------------------------

    def recover(self, full_scan: Optional[bool] = True) -> dict[str, int]:
        """Brings files and index back in line after a crash (run by ``Archive()`` at open).

        Deletes leftover ``.incoming`` files; with a full scan (always after an unclean shutdown) also
        indexes complete files missing from the index, removes index rows whose file is missing, and moves
        unreadable files to ``.quarantine``. Returns the counts.
        """
        if full_scan is None:
            marker = self.root / CLEAN_MARKER
            full_scan = not marker.exists()
            if not full_scan:
                marker.unlink()
                if self._full:
                    _fsync_dir(self._root)
        if getattr(self, "_committer", None) is not None:
            self.flush()
        with self._dirs_lock:
            self.placer.forget_dirs()
            self._uid_ok.clear()
        counts = recover_archive(self, full_scan)
        if full_scan and getattr(self, "index", None) is not None:
            self.index.rows_written_elsewhere()  # the scan wrote through its own connection
        return counts

    # -- queries ------------------------------------------------------------------------------------

    def count(self) -> int:
        """Number of indexed instances (after committing what is queued)."""
        self.flush()
        conn = self._readers.get()
        try:
            return int(conn.execute("SELECT count(*) FROM instance").fetchone()[0])
        finally:
            self._readers.put(conn)

    def query(self, level: str = "instance", **filters: Any) -> list[dict[str, Any]]:
        """Rows of one level ("patient", "study", "series", "instance") matching every filter.

        Filters are DICOM keywords (or ``path``, ``calling_ae``, ...): a string matches exactly, or as a
        PS3.4 C.2.2.2.4 wildcard if it contains ``*`` or ``?``; a list/tuple matches any of its values;
        None matches a missing value. Instance rows carry their series, study and patient attributes.
        """
        sql, params = query_sql(level, filters)
        self.flush()
        conn = self._readers.get()
        try:
            cur = conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        finally:
            self._readers.put(conn)
