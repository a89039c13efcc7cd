"""Storage SCU (PS3.4 Annex B): :func:`store` sends files, folders (recursively) and pydicom datasets.

Presentation contexts are built from what is sent (each SOP class offered once with all the transfer
syntaxes needed, plus the uncompressed ones the codec can convert to), at most 128 per association, opening
further associations when needed.

Files that cannot be sent are skipped, each reported once with the reason (:attr:`StoreReport.skipped`), and
the rest go: not DICOM, no SOP Class or Instance UID, a DICOMDIR, unreadable, or a data set that does not
parse to its end (truncated). The cheap checks (File Meta, UIDs) are made when the files are collected; the
data set is checked just before it is sent (:func:`check_item`), so a broken file never puts a command on
the wire without its data set. A data set with no File Meta (no preamble, no ``DICM``) is sent as DCMTK's
storescu sends it: the UIDs come from the data set, its encoding from its first element. Should sending
still fail in the middle of a data set (the file changed, a conversion failed), that association is aborted
(the peer discards the partial data set) and the remaining instances go on a new one.

Failure statuses follow ``on_failure``:

``"continue"`` (default, as DCMTK's ``storescu --no-halt``)
    every failure status, Refused (A7xx) included, is reported and the job goes on, on the same association.
``"halt"`` (``ferrodicom store --halt``)
    the job stops at the first instance that failed; the rest are reported as not sent.
``"entegra"``
    eNTEGRA's documented policy (seed 000 L420-430), for a device profile that asks for it: Refused (A7xx)
    terminates the association and the job; any other failure counts that instance as failed and the
    remaining ones go on a new association.

An association that cannot be established ends the job (the rest is reported not sent, with the reason).
"""

from __future__ import annotations

import logging
import os
import re
import struct
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from pydicom.dataset import Dataset

from ferrodicom import _core
from ferrodicom.ae import AE
from ferrodicom.services.storage.classes import NOT_NETWORK_STORAGE
from ferrodicom.status import Status
from ferrodicom.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE, UNCOMPRESSED

log = logging.getLogger("ferrodicom.store")

Source = Union[str, os.PathLike, Dataset, "Item"]

#: ``on_failure`` policies of :func:`store` (see the module documentation).
ON_FAILURE = ("continue", "halt", "entegra")

#: Files up to this size are checked by parsing the whole data set (Rust, one streaming pass, which also
#: leaves the file in the page cache for the send); larger ones by walking the element headers, seeking
#: over the values (a multi-gigabyte NM object is not read twice).
FULL_CHECK_BYTES = 8 << 20

_TAG_SOP_CLASS = 0x00080016
_TAG_SOP_INSTANCE = 0x00080018
_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass
class Item:
    """One instance to send: a Part 10 file, a data set without File Meta in a file, or a dataset encoded in
    memory."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    path: Optional[Path] = None
    data: Optional[bytes] = None
    size: int = 0
    #: A file without File Meta: the byte where its data set starts (0, or after a File Meta group that has
    #: no preamble). None for a Part 10 file.
    offset: Optional[int] = None
    #: The data set was already checked to parse to its end (in-memory data, files without File Meta).
    checked: bool = False

    @property
    def name(self) -> str:
        return str(self.path) if self.path else self.sop_instance_uid

    @property
    def is_part10(self) -> bool:
        return self.path is not None and self.offset is None


@dataclass
class StoreResult:
    """What happened to one instance. ``status`` is None when no C-STORE response came back: ``sent`` then
    says whether sending was tried (and failed, see ``error``) or never happened (the job stopped first)."""

    item: Item
    status: Optional[Status]
    error: Optional[str] = None
    sent_transfer_syntax: Optional[str] = None
    #: Error Comment (0000,0902) of the C-STORE response, when the peer gave one.
    comment: Optional[str] = None
    #: Data-set bytes sent.
    bytes_sent: int = 0
    sent: bool = True

    @property
    def outcome(self) -> str:
        """``stored`` (Success), ``warning`` (stored with a warning status), ``failed`` or ``not sent``."""
        if self.status is not None:
            category = self.status.category
            if category == "Success":
                return "stored"
            return "warning" if category == "Warning" else "failed"
        return "failed" if self.sent else "not sent"


@dataclass
class StoreReport:
    results: list[StoreResult] = field(default_factory=list)
    associations: int = 0  # associations established
    #: (file or UID, reason) of everything that could not be sent: reported once, never tried.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Why the job stopped before the end (association failed, ``halt``, eNTEGRA's refusal), else None.
    stopped: Optional[str] = None
    #: The error of the association request that failed (rejected, peer unreachable), which stopped the job.
    association_error: Optional[BaseException] = None
    #: Data-set bytes sent, and the seconds the sending took (associations included).
    bytes_sent: int = 0
    elapsed: float = 0.0

    @property
    def succeeded(self) -> list[StoreResult]:
        """Stored: Success or Warning status."""
        return [r for r in self.results if r.outcome in ("stored", "warning")]

    @property
    def warnings(self) -> list[StoreResult]:
        return [r for r in self.results if r.outcome == "warning"]

    @property
    def failed(self) -> list[StoreResult]:
        """Not stored: a failure status, or sending was tried and failed."""
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def not_sent(self) -> list[StoreResult]:
        """Never tried: the job stopped before them (see :attr:`stopped`)."""
        return [r for r in self.results if r.outcome == "not sent"]


# ---------------------------------------------------------------------------------------------------------------
# Collecting: what a file is, without reading its data set
# ---------------------------------------------------------------------------------------------------------------


def uid_problem(uid: str, what: str) -> Optional[str]:
    """Why ``uid`` cannot go into a C-STORE request (PS3.5 9.1: 1-64 characters, digits and single dots)."""
    if not uid:
        return f"no {what}"
    if len(uid) > 64 or _UID_RE.fullmatch(uid) is None:
        return f"{what} {uid!r} is not a valid UID (PS3.5 9.1)"
    return None


def _sendable(sop_class: str, sop_instance: str) -> Optional[str]:
    """Why an instance with these UIDs is not sent, or None."""
    problem = uid_problem(sop_class, "SOP Class UID") or uid_problem(sop_instance, "SOP Instance UID")
    if problem is not None:
        return problem + " (neither in the data set nor in the File Meta)" if problem.startswith("no ") else problem
    if sop_class in NOT_NETWORK_STORAGE:
        return "a DICOMDIR (Media Storage Directory) is not sent over the network; send the files it lists"
    return None


def _short(exc: BaseException, path: Path) -> str:
    """An exception's message without the file name the Rust errors put in front of it."""
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _read_meta(path: Path) -> Item:
    """SOP class/instance (from the data set, else the File Meta, as DCMTK's storescu) and transfer syntax,
    read in Rust from the File Meta and the first 64 KiB."""
    sop_class, sop_instance, ts = _core.peek_part10(path)
    return Item(sop_class, sop_instance, ts, path=path, size=path.stat().st_size)


def inspect_file(path: Path) -> tuple[Optional[Item], Optional[str]]:
    """``(item, None)`` for a file that can be sent, else ``(None, reason)``. Reads the File Meta and the
    start of the data set only; :func:`check_item` checks the whole data set."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if len(head) == 132 and head[128:] == b"DICM":
        try:
            item = _read_meta(path)
        except (_core.DicomError, OSError) as exc:
            return None, f"unreadable File Meta: {_short(exc, path)}"
    else:
        try:
            item = _no_meta_item(path, head)
        except OSError as exc:
            return None, f"unreadable: {exc.strerror or exc}"
        except ValueError as exc:
            return None, str(exc)
    why = _sendable(item.sop_class_uid, item.sop_instance_uid)
    return (None, why) if why else (item, None)


def _no_meta_item(path: Path, head: bytes) -> Item:
    """A data set without File Meta (or with a File Meta group but no preamble), as storescu reads one: the
    encoding from its first element, the UIDs from the data set. Raises ValueError when it is none."""
    if not head:
        raise ValueError("not a DICOM file: empty")
    offset = 0
    group_le = struct.unpack_from("<H", head)[0] if len(head) >= 2 else None
    group_be = struct.unpack_from(">H", head)[0] if len(head) >= 2 else None
    if len(head) >= 12 and group_le == 0x0002:
        ts, offset = _meta_without_preamble(path)
    elif len(head) >= 8 and group_le == 0x0008:
        explicit = head[4:6].isalpha() and head[4:6].isupper()
        ts = EXPLICIT_VR_LE if explicit else IMPLICIT_VR_LE
    elif len(head) >= 8 and group_be == 0x0008 and head[4:6].isalpha() and head[4:6].isupper():
        ts = EXPLICIT_VR_BE
    else:
        raise ValueError("not a DICOM file: no DICM prefix at byte 128, and no data set at byte 0")
    data = _read_from(path, offset)
    tags = _parse_problem_or_tags(data, ts)
    if isinstance(tags, str):
        raise ValueError(f"data set without File Meta that does not parse: {tags}")
    sop_class = _uid_value(tags.get(_TAG_SOP_CLASS))
    sop_instance = _uid_value(tags.get(_TAG_SOP_INSTANCE))
    problem = uid_problem(sop_class, "SOP Class UID") or uid_problem(sop_instance, "SOP Instance UID")
    if problem is not None:
        # without File Meta the data set is the only place for them
        raise ValueError(problem + " in the data set (and no File Meta)" if problem.startswith("no ") else problem)
    return Item(sop_class, sop_instance, ts, path=path, size=len(data), offset=offset, checked=True)


def _meta_without_preamble(path: Path) -> tuple[str, int]:
    """(transfer syntax, data-set offset) of a file that starts with its File Meta group (explicit VR LE)."""
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    pos, ts = 0, None
    while pos + 8 <= len(head):
        group, elem = struct.unpack_from("<HH", head, pos)
        if group != 0x0002:
            break
        vr = head[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"UT", b"SQ", b"UC", b"UR", b"OD", b"OF", b"OL", b"OV", b"SV", b"UV"):
            (length,) = struct.unpack_from("<I", head, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", head, pos + 6)
            start = pos + 8
        if elem == 0x0010:
            ts = head[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    if not ts:
        raise ValueError("File Meta without preamble has no Transfer Syntax UID")
    return ts, pos


def _read_from(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


def _uid_value(value: Optional[tuple[str, bytes]]) -> str:
    if value is None:
        return ""
    return value[1].decode("ascii", "replace").rstrip("\x00 ").lstrip(" ")


def _parse_problem_or_tags(data: bytes, ts: str) -> Union[str, dict]:
    """Parses a data set (bytes, no File Meta) to its end in Rust; its SOP UIDs, or why it does not parse."""
    meta = _core.file_meta("1.2.3", "1.2.3", ts, _core.IMPLEMENTATION_CLASS_UID)
    try:
        return _core.extract(meta + data, [_TAG_SOP_CLASS, _TAG_SOP_INSTANCE])
    except _core.DicomError as exc:
        return _parse_reason(str(exc))


def _parse_reason(message: str) -> str:
    return message if message.startswith("truncated") else f"does not parse: {message}"


def _dataset_item(ds: Dataset) -> Item:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import UID

    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or EXPLICIT_VR_LE)
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
    sop_class = str(ds.get("SOPClassUID", "") or "")
    sop_instance = str(ds.get("SOPInstanceUID", "") or "")
    why = _sendable(sop_class, sop_instance)
    if why:
        raise ValueError(why)
    return Item(sop_class, sop_instance, str(uid), data=data, size=len(data), checked=True)


def collect(
    sources: Iterable[Source],
    skipped: Optional[list[tuple[str, str]]] = None,
    on_skipped: Optional[Callable[[str, str], None]] = None,
) -> Iterator[Item]:
    """Expands files, folders (recursively), datasets and :class:`Item`\\ s into items; what cannot be sent is
    appended to ``skipped`` and given to ``on_skipped`` as ``(name, reason)``."""

    def skip(name: str, why: str) -> None:
        if skipped is not None:
            skipped.append((name, why))
        if on_skipped is not None:
            on_skipped(name, why)

    for src in sources:
        if isinstance(src, Item):
            yield src
            continue
        if isinstance(src, Dataset):
            try:
                yield _dataset_item(src)
            except (ValueError, TypeError, AttributeError) as exc:
                skip(str(src.get("SOPInstanceUID", "") or "dataset"), str(exc))
            continue
        p = Path(src)
        if p.is_dir():
            paths = sorted(q for q in p.rglob("*") if q.is_file())
        elif p.exists():
            paths = [p]
        else:
            skip(str(p), "no such file or folder")
            continue
        for q in paths:
            item, why = inspect_file(q)
            if item is None:
                skip(str(q), why or "cannot be sent")
            else:
                yield item


# ---------------------------------------------------------------------------------------------------------------
# Checking a data set to its end before it is sent
# ---------------------------------------------------------------------------------------------------------------


def check_item(item: Item) -> Optional[str]:
    """Why ``item``'s data set cannot be sent (it does not parse to its end: truncated, damaged), or None."""
    if item.checked or item.path is None:
        return None
    if not item.is_part10:
        try:
            data = _read_from(item.path, item.offset or 0)
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
        found = _parse_problem_or_tags(data, item.transfer_syntax)
        return found if isinstance(found, str) else None
    try:
        size = item.path.stat().st_size
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if size > FULL_CHECK_BYTES and item.transfer_syntax != DEFLATED_EXPLICIT_VR_LE:
        try:
            if _structure_problem(item.path, item.transfer_syntax) is None:
                return None
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
        # The header walk found a problem: the full parse has the last word (and the better message).
    try:
        _core.extract(item.path, [])
    except _core.DicomError as exc:
        return _parse_reason(_short(exc, item.path))
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None


_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"))
_UNDEFINED = 0xFFFFFFFF


def _structure_problem(path: Path, ts: str) -> Optional[str]:
    """Walks a Part 10 file's elements by their headers, seeking over defined-length values: None when the
    data set ends exactly at the end of the file, else what is wrong. Items of undefined length are walked
    into; values are not looked at."""
    with open(path, "rb", buffering=64 * 1024) as f:
        end = os.fstat(f.fileno()).st_size
        f.seek(132)
        first = f.read(12)
        if len(first) < 12 or first[:4] != b"\x02\x00\x00\x00" or first[4:6] != b"UL":
            return "File Meta has no group length"
        start = 144 + struct.unpack_from("<I", first, 8)[0]
        little = ts != EXPLICIT_VR_BE
        explicit = ts != IMPLICIT_VR_LE
        f.seek(start)
        try:
            pos = _walk(f, start, end, explicit, little, None)
        except _WalkError as exc:
            return str(exc)
        return None if pos == end else f"data set ends at byte {pos}, the file at byte {end}"


class _WalkError(Exception):
    pass


def _walk(f, pos: int, end: int, explicit: bool, little: bool, stop: Optional[int]) -> int:
    """Elements from ``pos`` until ``end`` or the delimitation tag ``stop`` (returns the position after it)."""
    order = "<" if little else ">"
    while pos < end:
        head = f.read(8)
        if len(head) < 8:
            raise _WalkError(f"truncated: the file ends inside an element header at byte {pos}")
        group, elem = struct.unpack_from(order + "HH", head)
        tag = (group << 16) | elem
        if group == 0xFFFE:
            (length,) = struct.unpack_from(order + "I", head, 4)
            pos += 8
            if tag == stop:
                return pos
            raise _WalkError(f"does not parse: unexpected ({group:04X},{elem:04X}) at byte {pos - 8}")
        vr = head[4:6]
        nested_explicit = explicit
        if explicit and vr in _LONG_VRS:
            more = f.read(4)
            if len(more) < 4:
                raise _WalkError(f"truncated: the file ends inside the header of ({group:04X},{elem:04X})")
            (length,) = struct.unpack_from(order + "I", more)
            pos += 12
            if vr == b"UN":
                nested_explicit = False  # CP-246: a UN sequence of undefined length is implicit VR
        elif explicit:
            (length,) = struct.unpack_from(order + "H", head, 6)
            pos += 8
        else:
            (length,) = struct.unpack_from(order + "I", head, 4)
            pos += 8
        if length == _UNDEFINED:
            pos = _walk_items(f, pos, end, nested_explicit, little, (group, elem))
            continue
        pos += length
        if pos > end:
            raise _WalkError(
                f"truncated: ({group:04X},{elem:04X}) has {length} bytes, the file ends {pos - end} bytes short"
            )
        f.seek(pos)
    if stop is not None:
        raise _WalkError("truncated: the file ends inside an item")
    return pos


def _walk_items(f, pos: int, end: int, explicit: bool, little: bool, owner: tuple[int, int]) -> int:
    """Items of an undefined-length sequence (or encapsulated Pixel Data) up to its delimitation item."""
    order = "<" if little else ">"
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise _WalkError(f"truncated: the file ends inside ({owner[0]:04X},{owner[1]:04X})")
        group, elem, length = struct.unpack_from(order + "HHI", head)
        pos += 8
        if (group, elem) == (0xFFFE, 0xE0DD):
            return pos
        if (group, elem) != (0xFFFE, 0xE000):
            raise _WalkError(f"does not parse: ({group:04X},{elem:04X}) inside ({owner[0]:04X},{owner[1]:04X})")
        if length == _UNDEFINED:
            pos = _walk(f, pos, end, explicit, little, 0xFFFEE00D)
            continue
        pos += length
        if pos > end:
            raise _WalkError(f"truncated: an item of ({owner[0]:04X},{owner[1]:04X}) runs past the end of the file")
        f.seek(pos)


def plan(sources: Iterable[Source]) -> tuple[list[Item], list[tuple[str, str]]]:
    """What :func:`store` would send, and what it would skip and why (every data set checked to its end);
    nothing goes over the network."""
    skipped: list[tuple[str, str]] = []
    items = []
    for item in collect(sources, skipped):
        why = check_item(item)
        if why is None:
            items.append(item)
        else:
            skipped.append((item.name, why))
    return items, skipped


def build_contexts(items: list[Item]) -> list[list[tuple[str, list[str]]]]:
    """Groups of at most 128 presentation contexts for the items (PS3.8 §9.3.2.2).

    Per SOP class: one context per uncompressed transfer syntax present, offering it first and then
    the other uncompressed ones the codec converts to (one abstract syntax with several transfer
    syntaxes, as eNTEGRA does, seed 000 L320-321); and one context per compressed syntax present,
    which is sent as is. A SOP class's contexts always stay in the same group. Items without a SOP
    Class UID propose nothing (:func:`collect` never yields them)."""
    by_class: dict[str, list[str]] = {}
    for it in items:
        if not it.sop_class_uid:
            continue
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


# ---------------------------------------------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------------------------------------------


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
    on_failure: str = "continue",
    on_skipped: Optional[Callable[[str, str], None]] = None,
    check: bool = True,
) -> StoreReport:
    """Sends every instance in ``sources``; returns a report with one result per instance that could be
    sent and the reason for each one that could not (:attr:`StoreReport.skipped`).

    ``progress(result)`` is called once per result, ``on_skipped(name, reason)`` once per skipped file.
    ``on_failure``: ``"continue"``, ``"halt"`` or ``"entegra"`` (module documentation). ``check=False``
    sends data sets without parsing them first (a broken one then fails while being sent: its association
    is aborted and the rest goes on a new one)."""
    if on_failure not in ON_FAILURE:
        raise ValueError(f"on_failure must be one of {', '.join(ON_FAILURE)}, not {on_failure!r}")
    report = StoreReport()
    sender = _Sender(report, host, port, calling_ae, called_ae, max_pdu, timeout, progress, on_failure, on_skipped)
    items = list(collect(sources, on_skipped=sender.skip))
    started = time.monotonic()
    groups = build_contexts(items)
    for k, group in enumerate(groups):
        stop = sender.send_group(group, _items_of(group, items), check)
        if stop is not None:
            for later in groups[k + 1 :]:
                sender.not_sent(_items_of(later, items), stop)
            break
    report.elapsed = time.monotonic() - started
    return report


def _items_of(group: list[tuple[str, list[str]]], items: list[Item]) -> list[Item]:
    """The items whose SOP class has its presentation contexts in ``group``."""
    classes = {sop for sop, _ in group}
    return [it for it in items if it.sop_class_uid in classes]


def _is_refused(status: int) -> bool:
    return 0xA700 <= status <= 0xA7FF


class _Sender:
    def __init__(self, report, host, port, calling_ae, called_ae, max_pdu, timeout, progress, on_failure, on_skipped):
        self.report: StoreReport = report
        self.host, self.port = host, port
        self.calling_ae, self.called_ae = calling_ae, called_ae
        self.max_pdu, self.timeout = max_pdu, timeout
        self.progress = progress
        self.on_failure = on_failure
        self.on_skipped = on_skipped

    def skip(self, name: str, why: str) -> None:
        self.report.skipped.append((name, why))
        if self.on_skipped is not None:
            self.on_skipped(name, why)

    def record(self, result: StoreResult) -> None:
        self.report.results.append(result)
        self.report.bytes_sent += result.bytes_sent
        if self.progress is not None:
            self.progress(result)

    def not_sent(self, items: Iterable[Item], why: str) -> None:
        for it in items:
            self.record(StoreResult(it, None, f"not sent: {why}", sent=False))

    def send_group(self, contexts, todo: list[Item], check: bool) -> Optional[str]:
        """Sends ``todo`` over associations offering ``contexts``; returns why the job stops, or None."""
        ae = AE(self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.connection_timeout = self.timeout
        for sop, tss in contexts:
            ae.add_requested_context(sop, tss)
        pending = deque(todo)
        while pending:
            assoc = ae.associate(self.host, self.port, ae_title=self.called_ae, max_pdu=self.max_pdu)
            if not assoc.is_established:
                why = f"association with {self.called_ae} at {self.host}:{self.port} failed: {assoc.error}"
                self.report.stopped = why
                self.report.association_error = assoc.error
                self.not_sent(pending, why)
                return why
            self.report.associations += 1
            stop: Optional[str] = None
            try:
                while pending:
                    it = pending.popleft()
                    if check:
                        broken = check_item(it)
                        if broken is not None:
                            self.skip(it.name, broken)
                            continue
                    action = self.send_one(assoc, it)
                    if action == "next":
                        continue
                    if action == "halt":
                        stop = f"--halt: stopped after {it.name} failed"
                    elif action == "refused":
                        stop = f"the peer refused {it.name} (out of resources): eNTEGRA's policy ends the job"
                    break  # "reassociate", or the job stops
            finally:
                _end(assoc)
            if stop is not None:
                self.report.stopped = stop
                self.not_sent(pending, stop)
                return stop
        return None

    def send_one(self, assoc, it: Item) -> str:
        """Sends one instance: ``next`` (go on), ``reassociate``, ``halt`` or ``refused`` (the job stops)."""
        try:
            if it.is_part10:
                status, rsp, n, ts = assoc.core.send_c_store_file(str(it.path))
            else:
                data = it.data if it.data is not None else _read_from(it.path, it.offset or 0)  # type: ignore[arg-type]
                status, rsp, n, ts = assoc.core.send_c_store_data(
                    it.sop_class_uid, it.sop_instance_uid, it.transfer_syntax, data
                )
        except _core.AssociationError as exc:
            if "no accepted presentation context" in str(exc):  # raised before anything is sent
                self.record(StoreResult(it, None, f"the peer accepted no presentation context for it ({exc})"))
                return "halt" if self.on_failure == "halt" else "next"
            return self.broken(assoc, it, exc)
        except (_core.DicomError, OSError) as exc:
            return self.broken(assoc, it, exc)
        st = Status(status)
        comment = rsp.get(0x0902) if rsp is not None else None
        failed = st.category == "Failure"
        self.record(StoreResult(it, st, st.meaning if failed else None, ts, comment or None, n))
        if not failed:
            return "next"
        if self.on_failure == "halt":
            return "halt"
        if self.on_failure == "entegra":
            return "refused" if _is_refused(status) else "reassociate"
        return "next"

    def broken(self, assoc, it: Item, exc: BaseException) -> str:
        """Sending failed part-way: the command may be out without (all of) its data set, so the association
        is aborted (the peer discards what it received) and the rest goes on a new one."""
        text = str(exc) if not it.path else _short(exc, it.path)
        if assoc.is_established:
            assoc.abort()
        if assoc.is_aborted:  # by us here, or already by the sender (a data set that could not go whole)
            text += "; association aborted"
        self.record(StoreResult(it, None, f"sending failed: {text}"))
        return "halt" if self.on_failure == "halt" else "reassociate"


def _end(assoc) -> None:
    """Releases an association still established; a failing release is logged, never raised."""
    failed = assoc.release_or_abort()
    if failed is not None:
        log.warning("A-RELEASE failed (%s); association aborted", failed)
