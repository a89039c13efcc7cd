"""Storage service class (PS3.4 Annex B): C-STORE SCP into the archive, and C-STORE SCU.

SCP: the Rust data path streams each data set into ``<archive>/.incoming/*.part`` (converting the
transfer syntax if asked, extracting the index keys while streaming, fsyncing), then calls
:func:`StorageSCP.store` once; that call hands the file to the archive, which moves it into place,
commits the index row and returns the status sent in the C-STORE-RSP.

SCU: :func:`store` sends files, folders (recursively) and pydicom datasets; presentation contexts are
built from what is sent (each SOP class offered once with all the transfer syntaxes needed, plus
the uncompressed ones the codec can convert to), at most 128 per association, opening further
associations when needed. Failure statuses follow eNTEGRA's documented policy (seed 000 L420-430):
Refused (A7xx) terminates the association and the job; any other failure counts that instance as
failed and continues with the remaining ones on a new association.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from ferrodicom import _core
from ferrodicom.ae import AE
from ferrodicom.status import Status
from ferrodicom.uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    UNCOMPRESSED,
)

log = logging.getLogger("ferrodicom.storage")

#: Transfer syntaxes the storage SCP accepts: the uncompressed four, and the compressed ones the seeds
#: use (stored exactly as received; we do not transcode codecs): RLE, JPEG baseline/extended/lossless,
#: JPEG-LS, JPEG 2000 (PS3.5 §10, Annex A.4; seed 003's PACS-IW table).
STORAGE_TRANSFER_SYNTAXES = UNCOMPRESSED + [
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction (Process 14 SV1)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
]

#: The seeds' private storage SOP classes (see profiles/data/systems.json for the lines they come from).
PRIVATE_STORAGE_CLASSES = {
    "1.2.840.113619.4.27": "GE eNTEGRA/Xeleris Protocol Data Object Storage (seed 000 L272, 002 L483)",
    "1.2.840.113619.4.26": "GE Private 3D Model Storage (seed 003 L1403)",
    "1.2.840.113619.4.17": "GE Xeleris/DaTQUANT Series Data Object (seed 004 L727; named as an SDO class)",
}


def storage_sop_classes() -> list[str]:
    """Every storage SOP class pydicom knows (PS3.6 Annex A) plus the seeds' private ones."""
    from pydicom._uid_dict import UID_dictionary

    classes = [
        uid
        for uid, (name, kind, *_rest) in UID_dictionary.items()
        if kind == "SOP Class" and "Storage" in name and "Commitment" not in name and "Retrieve" not in name
    ]
    return sorted(set(classes)) + list(PRIVATE_STORAGE_CLASSES)


def index_tags() -> list[tuple[int, str]]:
    """(tag, keyword) of the top-level attributes the Rust data path extracts for the archive's index."""
    from ferrodicom.archive import INDEX_KEYWORDS

    return [(int(tag_for_keyword(k)), k) for k in INDEX_KEYWORDS]


# ---------------------------------------------------------------------------------------------------------------
# SCP
# ---------------------------------------------------------------------------------------------------------------


class StorageSCP:
    """Connects the Rust C-STORE data path to an :class:`ferrodicom.archive.Archive`."""

    def __init__(self, archive: Any, on_stored: Optional[Callable[[Any, int], None]] = None) -> None:
        self.archive = archive
        self.on_stored = on_stored

    def prepare(self, info: dict, ctx: tuple[int, str, str], command: _core.Command, keys: dict) -> Any:
        """Called mid-stream once the data set's index keys are known (the Pixel Data is usually still
        arriving): ``(final path | None to discard, early reply | None, state)``; the state comes back
        to :meth:`store` as ``received["prepared"]``. The early reply is sent as soon as the file is in
        place, before it is indexed: with durability none as DCMTK's storescp answers once its file is
        written; with full only if a journal record made the file durable (else :meth:`store` answers)."""
        from ferrodicom.archive import Plan

        plan = self.archive.prepare(command.affected_sop_class_uid or "", command.affected_sop_instance_uid or "", keys)
        if not isinstance(plan, Plan):
            return (None, None, plan)
        early = self.archive.early_status(plan)
        return (plan.final, None if early is None else _reply(*early), plan)

    def store(self, info: dict, ctx: tuple[int, str, str], command: _core.Command, received: dict) -> Any:
        """Called once per C-STORE, after the data set is on disk (or failed): returns the response
        (not sent if :meth:`prepare` gave an early reply)."""
        from ferrodicom.archive import Plan, StoredInstance

        plan = received.get("prepared")
        failure = received["failure"]
        if failure is not None:
            if isinstance(plan, Plan):
                self.archive.abandon(plan, failed=True)
            status, comment = failure
            log.warning("C-STORE %s from %s failed: %s", command.affected_sop_instance_uid, info["calling_ae"], comment)
            return _reply(status, comment)
        if received.get("discarded"):
            return _reply(*plan)  # prepare's decision: not kept (a refusal, or keep-first)
        placed = received.get("placed")
        inst = StoredInstance(
            part_path=placed or received["path"],
            size=received["size"],
            sop_class_uid=command.affected_sop_class_uid or "",
            sop_instance_uid=command.affected_sop_instance_uid or "",
            transfer_syntax_uid=received["transfer_syntax"],
            calling_ae=info["calling_ae"],
            called_ae=info["called_ae"],
            keys=received["keys"],
            journal_seq=received.get("journal_seq"),
        )
        if isinstance(plan, Plan):
            if placed:
                status, comment = self.archive.complete(plan, inst)
            else:  # the keys changed after prepare (elements out of order): start again
                self.archive.abandon(plan)
                status, comment = self.archive.ingest(inst)
        else:
            status, comment = self.archive.ingest(inst)
        if self.on_stored is not None:
            self.on_stored(inst, status)
        return _reply(status, comment)


def _reply(status: int, comment: Optional[str]) -> Any:
    """A handler reply: the status, with an Error Comment (0000,0902) when there is one."""
    return (status, None, {0x0902: comment[:64]}) if comment else status


def add_storage_contexts(ae: AE, transfer_syntaxes: Optional[list[str]] = None) -> None:
    """Makes ``ae`` accept every storage SOP class in the given (default: all the seeds') transfer syntaxes."""
    for uid in storage_sop_classes():
        ae.add_supported_context(uid, transfer_syntaxes or STORAGE_TRANSFER_SYNTAXES)


# ---------------------------------------------------------------------------------------------------------------
# SCU
# ---------------------------------------------------------------------------------------------------------------

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
