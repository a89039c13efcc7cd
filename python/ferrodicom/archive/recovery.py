"""Crash recovery: files and index back in line (run at open; a full scan after an unclean shutdown).

The invariants afterwards: no temporary file in ``.incoming``; every index row has its file; every
readable ``<study>/<series>/<sop>.dcm`` file has its index row. Files renamed into place but not yet
indexed when the process died are indexed again from their own content (pydicom, stop_before_pixels).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from ferrodicom.archive.index import DEFAULT_SCHEMA, INDEX_KEYWORDS, Statements, connect
from ferrodicom.archive.uid import check_uid

log = logging.getLogger("ferrodicom.archive")

__all__ = ["keys_from_dataset", "recover"]


def keys_from_dataset(ds: Any, keywords: Sequence[str] = INDEX_KEYWORDS) -> dict[str, str]:
    """The index keys of a pydicom data set, as the data path extracts them: top-level values as trimmed
    strings, multi-valued ones joined by backslash (PS3.5 6.4), absent or empty ones left out."""
    keys: dict[str, str] = {}
    for kw in keywords:
        elem = ds.get(kw)
        if elem is None:
            continue
        if isinstance(elem, (list, tuple)) or type(elem).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in elem)
        else:
            text = str(elem)
        text = text.strip(" \x00")
        if text:
            keys[kw] = text
    return keys


def _walk(root: str) -> set[str]:
    """Relative paths of the ``<study>/<series>/<file>.dcm`` files (dot-directories are not archive data)."""
    found: set[str] = set()
    with os.scandir(root) as studies:
        for study in studies:
            if study.name.startswith(".") or not study.is_dir(follow_symlinks=False):
                continue
            with os.scandir(study.path) as series_it:
                for series in series_it:
                    if not series.is_dir(follow_symlinks=False):
                        continue
                    with os.scandir(series.path) as files:
                        for f in files:
                            if f.name.endswith(".dcm") and f.is_file(follow_symlinks=False):
                                found.add(f"{study.name}/{series.name}/{f.name}")
    return found


def recover(archive: Any, full_scan: bool) -> dict[str, int]:
    """See :meth:`ferrodicom.archive.Archive.recover` (``archive`` is the Archive being opened)."""
    counts = {
        "part_removed": 0,
        "reindexed": 0,
        "rows_removed": 0,
        "quarantined": 0,
        "duplicates_removed": 0,
        "full_scan": int(full_scan),
    }
    incoming = str(archive.incoming_dir)
    with os.scandir(incoming) as it:
        for entry in it:
            if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                os.unlink(entry.path)
                counts["part_removed"] += 1
    if not full_scan:
        return counts

    root = str(archive.root)
    on_disk = _walk(root)
    conn = connect(str(archive.root / "index.sqlite"), "FULL" if archive.durability == "full" else "NORMAL")
    try:
        rows = conn.execute("SELECT SOPInstanceUID, path FROM instance").fetchall()
        missing = [(uid, path) for uid, path in rows if path not in on_disk]
        indexed_paths = {path for _, path in rows}
        del rows
        orphans = sorted(on_disk - indexed_paths)
        conn.execute("BEGIN IMMEDIATE")
        if missing:
            conn.executemany("DELETE FROM instance WHERE SOPInstanceUID = ? AND path = ?", missing)
            counts["rows_removed"] = len(missing)
            log.warning("recovery: removed %d index rows whose file is missing", len(missing))
        schema = getattr(archive, "schema", DEFAULT_SCHEMA)
        statements = Statements(schema)
        for rel in orphans:
            outcome = _reindex(conn, root, rel, schema, statements)
            counts[outcome] += 1
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    if counts["reindexed"]:
        log.warning("recovery: indexed %d complete files that were missing from the index", counts["reindexed"])
    return counts


def _reindex(conn: Any, root: str, rel: str, schema: Any, statements: Statements) -> str:
    import pydicom

    path = f"{root}/{rel}"
    sop_uid = rel.rsplit("/", 1)[1][: -len(".dcm")]
    ok, _ = check_uid(sop_uid)
    try:
        if not ok:
            raise ValueError(f"file name {sop_uid!r} is not a UID")
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        meta = ds.file_meta
        tsyntax = str(meta.get("TransferSyntaxUID", "") or "")
        if not tsyntax:
            raise ValueError("no Transfer Syntax UID in File Meta")
        keys = keys_from_dataset(ds, schema.keywords)
        if keys.get("SOPInstanceUID", sop_uid) != sop_uid:
            raise ValueError("SOP Instance UID of the data set differs from the file name")
        sop_class = keys.get("SOPClassUID") or str(meta.get("MediaStorageSOPClassUID", "") or "")
        if not sop_class:
            raise ValueError("no SOP Class UID")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is set aside, never deleted
        dest_dir = f"{root}/.quarantine"
        os.makedirs(dest_dir, exist_ok=True)
        os.replace(path, f"{dest_dir}/{rel.replace('/', '_')}")
        log.error("recovery: %s is unreadable (%s); moved to .quarantine", rel, exc)
        return "quarantined"
    row = conn.execute("SELECT path FROM instance WHERE SOPInstanceUID = ?", (sop_uid,)).fetchone()
    if row is not None:
        # Left over by a "replace" that moved the instance to another study/series and died before
        # removing the old file: the index already names the newer copy.
        os.unlink(path)
        log.warning("recovery: %s is an older copy of %s, indexed at %s; removed", rel, sop_uid, row[0])
        return "duplicates_removed"
    st = os.stat(path)
    study_uid = keys.get("StudyInstanceUID", "")
    series_uid = keys.get("SeriesInstanceUID", "")
    calling = str(meta.get("SourceApplicationEntityTitle", "") or "").strip() or None
    patient, study, series, instance = schema.build_row(
        keys, sop_uid, sop_class, study_uid, series_uid, (tsyntax, st.st_size, rel, st.st_mtime, calling, None)
    )
    conn.execute(statements.patient, patient)
    conn.execute(statements.study, study)
    conn.execute(statements.series, series)
    conn.execute(statements.instance, instance)
    return "reindexed"
