"""Checks an archive against its index (``ferrodicom verify``), and repairs what it finds.

Every indexed file must exist and parse to its end (the Rust codec, one streaming pass) with the SOP Instance
and Class UIDs of its index row; every ``<study>/<series>/<sop>.dcm`` file must be indexed. Checking opens
the index read-only and changes nothing, so it can run while ``serve`` does (a file being stored at that
moment may then show up as not indexed).

Repairing needs the archive to itself (it takes the archive's lock): files that do not parse, or hold
another instance than their row says, are moved to ``.quarantine`` (never deleted) and their rows removed;
rows whose file is missing are removed; files missing from the index are indexed from their content (those
that do not parse are quarantined), as the recovery after a crash does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from ferrodicom import _core
from ferrodicom.archive.core import INCOMING_DIR, QUARANTINE_DIR, Archive
from ferrodicom.archive.inspect import IndexReader, in_use
from ferrodicom.archive.recovery import _walk

__all__ = ["KINDS", "Problem", "VerifyReport", "in_use", "verify"]

#: Problem kinds: ``missing`` (indexed, no file), ``damaged`` (does not parse), ``mismatch`` (the file holds
#: another instance than its row says), ``not indexed`` (a file without a row), ``leftover`` (a temporary file
#: of an interrupted transfer in ``.incoming``).
KINDS = ("missing", "damaged", "mismatch", "not indexed", "leftover")

_SOP_CLASS, _SOP_INSTANCE = 0x00080016, 0x00080018


@dataclass
class Problem:
    kind: str
    #: Archive-relative path.
    path: str
    detail: str
    sop_instance_uid: Optional[str] = None
    #: What ``repair`` did about it ("quarantined", "row removed", "indexed"), else None.
    action: Optional[str] = None


@dataclass
class VerifyReport:
    root: str
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    #: Another process (a running serve) holds the archive: rows and files may be in flux.
    in_use: bool = False
    repaired: bool = False
    #: With ``repair``: what the recovery run by opening the archive did first (Archive.last_recovery).
    recovered_at_open: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(p.kind == kind for p in self.problems)


def _uid(found: dict, tag: int) -> Optional[str]:
    value = found.get(tag)
    if value is None:
        return None
    return value[1].decode("ascii", "replace").rstrip("\x00 ").strip() or None


def check_file(path: Path, sop_instance_uid: Optional[str], sop_class_uid: Optional[str]) -> Optional[Problem]:
    """The problem with one indexed file, or None."""
    rel = str(path)
    try:
        found = _core.extract(path, [_SOP_CLASS, _SOP_INSTANCE])
    except FileNotFoundError:
        return Problem("missing", rel, "indexed, but the file is missing", sop_instance_uid)
    except OSError as exc:
        return Problem("damaged", rel, f"unreadable: {exc.strerror or exc}", sop_instance_uid)
    except _core.DicomError as exc:
        return Problem("damaged", rel, str(exc), sop_instance_uid)
    got_uid, got_class = _uid(found, _SOP_INSTANCE), _uid(found, _SOP_CLASS)
    if sop_instance_uid and got_uid and got_uid != sop_instance_uid:
        return Problem("mismatch", rel, f"the file holds SOP Instance {got_uid}", sop_instance_uid)
    if sop_class_uid and got_class and got_class != sop_class_uid:
        return Problem("mismatch", rel, f"the file's SOP Class is {got_class}, its row says {sop_class_uid}")
    return None


def verify(
    root: Union[str, Path], repair: bool = False, progress: Optional[Callable[[int, int], None]] = None
) -> VerifyReport:
    """Checks every indexed file and looks for files the index lacks; with ``repair`` fixes what it found
    (module documentation). ``progress(done, total)`` is called as files are checked. Raises ArchiveError
    when ``root`` is no archive, or (``repair``) when another process holds it."""
    root = Path(root)
    report = VerifyReport(str(root))
    archive: Optional[Archive] = None
    IndexReader(root).close()  # no archive there: ArchiveError, before anything is opened for writing
    if repair:
        # First take the archive (its lock, and the recovery its opening runs), then check what is left. No
        # journal is made for the repair (journal=0); one left by a crash is replayed at open.
        archive = Archive(root, durability="full", journal=0)
        report.recovered_at_open = {k: v for k, v in archive.last_recovery.items() if v and k != "full_scan"}
    try:
        report.in_use = archive is None and in_use(root)
        with IndexReader(root) as reader:
            rows = reader.conn.execute("SELECT SOPInstanceUID, SOPClassUID, path FROM instance").fetchall()
        report.checked = len(rows)
        for k, (uid, sop_class, rel) in enumerate(rows):
            problem = check_file(root / rel, uid, sop_class)
            if problem is not None:
                problem.path = rel
                report.problems.append(problem)
            if progress is not None:
                progress(k + 1, len(rows))
        indexed = {rel for _, _, rel in rows}
        for rel in sorted(_walk(str(root)) - indexed):
            detail = "a file of the archive that the index does not list"
            problem = check_file(root / rel, None, None)
            if problem is not None:
                detail += f"; it does not parse: {problem.detail}"
            report.problems.append(Problem("not indexed", rel, detail))
        incoming = root / INCOMING_DIR
        if incoming.is_dir() and not report.in_use and archive is None:
            for entry in sorted(incoming.iterdir()):
                report.problems.append(
                    Problem("leftover", f"{INCOMING_DIR}/{entry.name}", "temporary file of an interrupted transfer")
                )
        if archive is not None:
            _repair(archive, report)
    finally:
        if archive is not None:
            archive.close()
    return report


def _repair(archive: Archive, report: VerifyReport) -> None:
    root = archive.root
    quarantine = root / QUARANTINE_DIR
    for p in report.problems:
        if p.kind in ("damaged", "mismatch") or (p.kind == "not indexed" and "does not parse" in p.detail):
            quarantine.mkdir(exist_ok=True)
            dest = quarantine / p.path.replace("/", "_")
            os.replace(root / p.path, dest)
            p.action = f"moved to {QUARANTINE_DIR}/{dest.name}"
    # The recovery scan removes the rows whose file is missing (now including the quarantined ones) and indexes
    # the files the index lacks.
    counts = archive.recover(full_scan=True)
    for p in report.problems:
        if p.kind in ("damaged", "mismatch", "missing"):
            p.action = (p.action + ", row removed") if p.action else "row removed"
        elif p.kind == "not indexed" and p.action is None:
            p.action = "indexed"
    report.repaired = True
    if counts.get("quarantined"):
        # a file the recovery found unreadable on its own (pydicom could not read it)
        for p in report.problems:
            if p.kind == "not indexed" and p.action == "indexed" and not (root / p.path).exists():
                p.action = f"moved to {QUARANTINE_DIR} (unreadable)"
