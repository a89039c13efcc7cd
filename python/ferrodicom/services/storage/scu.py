"""Storage SCU (PS3.4 Annex B): :func:`store` sends files, folders (recursively) and pydicom datasets.

Presentation contexts are built from what is sent (each SOP class offered once with all the transfer
syntaxes needed, plus the uncompressed ones the codec can convert to), at most 128 per association, opening
further associations when needed. Failure statuses follow eNTEGRA's documented policy (seed 000 L420-430):
Refused (A7xx) terminates the association and the job; any other failure counts that instance as failed and
continues with the remaining ones on a new association.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from pydicom.dataset import Dataset

from ferrodicom import _core
from ferrodicom.ae import AE
from ferrodicom.status import Status
from ferrodicom.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_LE, IMPLICIT_VR_LE, UNCOMPRESSED

Source = Union[str, os.PathLike, Dataset]


@dataclass
class Item:
    """One instance to send: a file, or a dataset encoded in memory."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    path: Optional[Path] = None
    data: Optional[bytes] = None
    size: int = 0

    @property
    def name(self) -> str:
        return str(self.path) if self.path else self.sop_instance_uid


@dataclass
class StoreResult:
    item: Item
    status: Optional[Status]
    error: Optional[str] = None
    sent_transfer_syntax: Optional[str] = None


@dataclass
class StoreReport:
    results: list[StoreResult] = field(default_factory=list)
    associations: int = 0  # associations established
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def succeeded(self) -> list[StoreResult]:
        return [r for r in self.results if r.status is not None and r.status.category in ("Success", "Warning")]

    @property
    def failed(self) -> list[StoreResult]:
        return [r for r in self.results if r not in self.succeeded]


def _is_part10(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _read_meta(path: Path) -> Item:
    """SOP class/instance (from the data set, as DCMTK's storescu) and transfer syntax, read in Rust."""
    sop_class, sop_instance, ts = _core.peek_part10(path)
    return Item(sop_class, sop_instance, ts, path=path, size=path.stat().st_size)


def _dataset_item(ds: Dataset) -> Item:
    from pydicom.filewriter import write_dataset

    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or EXPLICIT_VR_LE)
    from pydicom.filebase import DicomBytesIO
    from pydicom.uid import UID

    uid = UID(ts)
    if uid.is_compressed:
        raise ValueError("datasets with compressed pixel data must be sent from files")
    buf = DicomBytesIO()
    buf.is_implicit_VR = uid.is_implicit_VR
    buf.is_little_endian = uid.is_little_endian
    write_dataset(buf, ds)
    data = buf.getvalue()
    if uid == DEFLATED_EXPLICIT_VR_LE:
        import zlib

        c = zlib.compressobj(wbits=-15)
        data = c.compress(data) + c.flush()
    return Item(str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(uid), data=data, size=len(data))


def collect(sources: Iterable[Source], skipped: Optional[list[tuple[str, str]]] = None) -> Iterator[Item]:
    """Expands files, folders (recursively, Part 10 files only) and datasets into items."""
    for src in sources:
        if isinstance(src, Dataset):
            yield _dataset_item(src)
            continue
        p = Path(src)
        paths = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in paths:
            if not _is_part10(q):
                if skipped is not None:
                    skipped.append((str(q), "not a DICOM Part 10 file"))
                continue
            try:
                yield _read_meta(q)
            except Exception as exc:  # unreadable File Meta: report, do not stop the job
                if skipped is not None:
                    skipped.append((str(q), f"unreadable File Meta: {exc}"))


def build_contexts(items: list[Item]) -> list[list[tuple[str, list[str]]]]:
    """Groups of at most 128 presentation contexts for the items (PS3.8 §9.3.2.2).

    Per SOP class: one context per uncompressed transfer syntax present, offering it first and then
    the other uncompressed ones the codec converts to (one abstract syntax with several transfer
    syntaxes, as eNTEGRA does, seed 000 L320-321); and one context per compressed syntax present,
    which is sent as is. A SOP class's contexts always stay in the same group."""
    by_class: dict[str, list[str]] = {}
    for it in items:
        ts = by_class.setdefault(it.sop_class_uid, [])
        if it.transfer_syntax not in ts:
            ts.append(it.transfer_syntax)
    groups: list[list[tuple[str, list[str]]]] = [[]]
    for sop, tss in by_class.items():
        ctxs = []
        for t in tss:
            if t in UNCOMPRESSED:
                ctxs.append((sop, [t] + [x for x in (EXPLICIT_VR_LE, IMPLICIT_VR_LE) if x != t]))
            else:
                ctxs.append((sop, [t]))
        if len(groups[-1]) + len(ctxs) > 128:
            groups.append([])
        groups[-1].extend(ctxs[:128])
    return [g for g in groups if g]


def store(
    host: str,
    port: int,
    sources: Iterable[Source],
    *,
    calling_ae: str = "FERRODICOM",
    called_ae: str = "ANY-SCP",
    max_pdu: Optional[int] = None,
    timeout: Optional[float] = 60.0,
    progress: Optional[Callable[[StoreResult], None]] = None,
) -> StoreReport:
    """Sends every instance in ``sources``; returns a report with one result per instance."""
    report = StoreReport()
    items = list(collect(sources, report.skipped))
    groups = build_contexts(items)
    for k, group in enumerate(groups):
        todo = _items_of(group, items)
        if _send_group(host, port, group, todo, report, calling_ae, called_ae, max_pdu, timeout, progress):
            # Refused: the job ends (seed 000 L425-426); the other groups' instances are reported unsent.
            for later in groups[k + 1 :]:
                _not_sent(report, _items_of(later, items), progress)
            break
    return report


def _items_of(group: list[tuple[str, list[str]]], items: list[Item]) -> list[Item]:
    """The items whose SOP class has its presentation contexts in ``group``."""
    classes = {sop for sop, _ in group}
    return [it for it in items if it.sop_class_uid in classes]


def _not_sent(report: StoreReport, items: list[Item], progress: Optional[Callable[[StoreResult], None]]) -> None:
    for it in items:
        _record(report, StoreResult(it, None, "not sent: the peer refused (out of resources)"), progress)


def _send_group(host, port, contexts, todo, report, calling_ae, called_ae, max_pdu, timeout, progress) -> bool:
    """Sends ``todo`` over associations offering ``contexts``; True when the peer refused (A7xx)."""
    ae = AE(calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.connection_timeout = timeout
    for sop, tss in contexts:
        ae.add_requested_context(sop, tss)
    pending = list(todo)
    while pending:
        assoc = ae.associate(host, port, ae_title=called_ae, max_pdu=max_pdu)
        if not assoc.is_established:
            for it in pending:
                _record(report, StoreResult(it, None, f"association failed: {assoc.error}"), progress)
            return False
        report.associations += 1
        reopen = False
        try:
            while pending and not reopen:
                it = pending.pop(0)
                try:
                    if it.path is not None:
                        status, _rsp, _n, ts = assoc.core.send_c_store_file(str(it.path))
                    else:
                        status, _rsp, _n, ts = assoc.core.send_c_store_data(
                            it.sop_class_uid, it.sop_instance_uid, it.transfer_syntax, it.data or b""
                        )
                except _core.AssociationError as exc:
                    if "no accepted presentation context" in str(exc):
                        _record(report, StoreResult(it, None, str(exc)), progress)
                        continue
                    _record(report, StoreResult(it, None, str(exc)), progress)
                    reopen = True
                    break
                except (_core.DicomError, OSError) as exc:
                    _record(report, StoreResult(it, None, str(exc)), progress)
                    if not assoc.is_established:
                        reopen = True
                    continue
                st = Status(status)
                _record(report, StoreResult(it, st, None if st.category != "Failure" else st.meaning, ts), progress)
                if 0xA700 <= status <= 0xA7FF:
                    # Refused: terminate the association; the remaining instances are not sent.
                    _not_sent(report, pending, progress)
                    return True
                if st.category == "Failure":
                    reopen = True  # continue with the remaining instances on a new association
        finally:
            if assoc.is_established:
                assoc.release()
    return False


def _record(report: StoreReport, result: StoreResult, progress: Optional[Callable[[StoreResult], None]] = None):
    report.results.append(result)
    if progress is not None:
        progress(result)
