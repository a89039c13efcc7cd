"""Read-only views of an archive's index for ``ferrodicom ls`` and ``ferrodicom stats``.

:class:`IndexReader` opens ``<root>/index.sqlite`` read-only: no lock, no recovery, nothing created or changed
in the archive, so it works while ``ferrodicom serve`` runs (SQLite's WAL lets readers see every committed
row; with durability none the last ~20 ms of acknowledged instances may not be committed yet). When no
process holds the archive the index is read as an immutable file (a serve starting during the read could
make that read fail; run it again).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any, Optional, Union

from ferrodicom.archive.core import INDEX_FILE, LOCK_FILE, ArchiveError, query_sql
from ferrodicom.archive.index import INDEX_KEYWORDS, INSTANCE_META, PATIENT_KEYS, SERIES_KEYS, STUDY_KEYS

__all__ = ["LEVELS", "IndexReader", "in_use", "level_keys", "parse_filters"]

LEVELS = ("patient", "study", "series", "instance")

#: The attributes each level's rows carry (instance rows carry every level's, see Archive.query).
_LEVEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "patient": PATIENT_KEYS,
    "study": ("StudyInstanceUID",) + PATIENT_KEYS + STUDY_KEYS[1:],
    "series": ("SeriesInstanceUID", "StudyInstanceUID", "PatientID", "PatientName") + SERIES_KEYS[1:],
    "instance": INDEX_KEYWORDS + INSTANCE_META,
}
#: What identifies a row of each level.
_GROUP_BY = {
    "patient": ("PatientID", "IssuerOfPatientID", "PatientName"),
    "study": ("StudyInstanceUID",),
    "series": ("SeriesInstanceUID",),
}
_ORDER = {
    "patient": "PatientName, PatientID",
    "study": "StudyDate, StudyTime, StudyInstanceUID",
    "series": "StudyInstanceUID, CAST(SeriesNumber AS INTEGER), SeriesInstanceUID",
    "instance": "StudyInstanceUID, SeriesInstanceUID, CAST(InstanceNumber AS INTEGER), SOPInstanceUID",
}


def level_keys() -> tuple[str, ...]:
    """Every key ``-k`` accepts, at any level (an instance row carries the attributes of all four)."""
    return INDEX_KEYWORDS + INSTANCE_META


def parse_filters(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as filters of :meth:`IndexReader.query`: a value with ``*``/``?`` is a wildcard
    (PS3.4 C.2.2.2.4), a UID key takes a backslash-separated list (PS3.4 C.2.2.2.2), an empty value matches a
    missing one. Raises ValueError."""
    filters: dict[str, Any] = {}
    allowed = set(level_keys())
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{pair!r} is not KEY=VALUE")
        if key not in allowed:
            raise ValueError(f"{key!r} is not an indexed key; one of {', '.join(sorted(allowed))}")
        if value == "":
            filters[key] = None
        elif key.endswith("UID") and "\\" in value:
            filters[key] = value.split("\\")
        else:
            filters[key] = value
    return filters


def in_use(root: Union[str, Path]) -> bool:
    """True while another process holds the archive's lock (``serve``, a repair); creates nothing."""
    try:
        fd = os.open(Path(root) / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


class IndexReader:
    """A read-only connection to an archive's index."""

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        db = self.root / INDEX_FILE
        if not self.root.is_dir():
            raise ArchiveError(f"no archive at {self.root}: not a folder")
        if not db.is_file():
            raise ArchiveError(f"no archive at {self.root}: it has no {INDEX_FILE}")
        uri = "file:" + urllib.parse.quote(str(db.resolve()))
        # Nobody holds the archive: read the file as it is (a read-only connection to a WAL database would
        # leave -wal and -shm files behind). Held by a serve: a read-only connection sees its commits.
        self.live = in_use(self.root)
        try:
            self.conn = sqlite3.connect(uri + ("?mode=ro" if self.live else "?immutable=1"), uri=True)
            self.conn.execute("SELECT count(*) FROM instance").fetchone()
        except sqlite3.Error as exc:
            raise ArchiveError(f"cannot read the index {db}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> IndexReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def query(self, level: str = "study", filters: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
        """Rows of ``level`` having at least one instance that matches every filter (any indexed key, at any
        level), with counts: ``instances``, ``bytes``, and above the instance level ``series`` and
        ``modalities`` (and ``studies`` for patients)."""
        level = level.lower()
        if level not in LEVELS:
            raise ArchiveError(f"unknown level {level!r}; one of {', '.join(LEVELS)}")
        inner, params = query_sql("instance", dict(filters or {}))
        if level == "instance":
            return self._rows(f"SELECT * FROM ({inner}) ORDER BY {_ORDER[level]}", params)
        cols = ", ".join(f"max({c}) AS {c}" for c in _LEVEL_COLUMNS[level] if c not in _GROUP_BY[level])
        keys = ", ".join(_GROUP_BY[level])
        counts = "count(*) AS instances, sum(size) AS bytes, group_concat(DISTINCT Modality) AS modalities"
        if level in ("patient", "study"):
            counts += ", count(DISTINCT SeriesInstanceUID) AS series"
        if level == "patient":
            counts += ", count(DISTINCT StudyInstanceUID) AS studies"
        sql = f"SELECT {keys}, {cols}, {counts} FROM ({inner}) GROUP BY {keys} ORDER BY {_ORDER[level]}"
        rows = self._rows(sql, params)
        for r in rows:
            r["modalities"] = "\\".join(sorted(set((r.get("modalities") or "").split(",")) - {""}))
        return rows

    def stats(self) -> dict[str, Any]:
        """Counts, bytes, oldest/newest (received, and study dates), and the same by modality and SOP class."""
        one = self.conn.execute(
            "SELECT count(*), coalesce(sum(size), 0), min(received_at), max(received_at), "
            "count(DISTINCT SeriesInstanceUID), count(DISTINCT StudyInstanceUID) FROM instance"
        ).fetchone()
        patients = self.conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT PatientID, IssuerOfPatientID, PatientName FROM study "
            "WHERE StudyInstanceUID IN (SELECT StudyInstanceUID FROM instance))"
        ).fetchone()[0]
        dates = self.conn.execute(
            "SELECT min(StudyDate), max(StudyDate) FROM study WHERE StudyDate IS NOT NULL AND StudyDate != '' "
            "AND StudyInstanceUID IN (SELECT StudyInstanceUID FROM instance)"
        ).fetchone()
        by = (
            "SELECT {key} AS {name}, count(*) AS instances, coalesce(sum(i.size), 0) AS bytes, "
            "count(DISTINCT i.SeriesInstanceUID) AS series, count(DISTINCT i.StudyInstanceUID) AS studies, "
            "min(i.received_at) AS oldest_received, max(i.received_at) AS newest_received "
            "FROM instance i LEFT JOIN series s USING (SeriesInstanceUID) GROUP BY 1 ORDER BY 2 DESC, 1"
        )
        return {
            "archive": str(self.root),
            "patients": patients,
            "studies": one[5],
            "series": one[4],
            "instances": one[0],
            "bytes": one[1],
            "oldest_received": one[2],
            "newest_received": one[3],
            "oldest_study_date": dates[0],
            "newest_study_date": dates[1],
            "by_modality": self._rows(by.format(key="coalesce(s.Modality, '')", name="modality")),
            "by_sop_class": self._rows(by.format(key="i.SOPClassUID", name="sop_class_uid")),
        }
