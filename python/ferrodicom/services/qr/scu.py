"""Query/Retrieve SCU helpers (what ``ferrodicom find``, ``move`` and ``get`` use): identifiers from
``KEY=VALUE`` strings as DCMTK's ``-k`` takes them, and the associations each operation needs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from ferrodicom import evt
from ferrodicom.ae import AE, build_role
from ferrodicom.services.qr.models import BY_ROOT
from ferrodicom.services.storage.classes import STORAGE_TRANSFER_SYNTAXES, storage_sop_classes
from ferrodicom.uids import DEFAULT_TRANSFER_SYNTAXES

__all__ = ["identifier", "parse_key", "relational_item", "sop_class", "Retriever"]

_TAG = re.compile(r"\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")


def parse_key(text: str) -> tuple[int, str, Optional[str]]:
    """``KEY=VALUE`` or ``KEY`` (a return key): KEY a keyword or a tag (``0010,0010``). Returns (tag, keyword,
    value or None). ValueError naming the problem."""
    key, sep, value = text.partition("=")
    key = key.strip()
    m = _TAG.match(key)
    if m:
        tag = int(Tag(int(m[1], 16), int(m[2], 16)))
        kw = keyword_for_tag(tag) or key
    else:
        found = tag_for_keyword(key)
        if found is None:
            raise ValueError(f"{key!r} is neither a DICOM keyword nor a tag like 0010,0010")
        tag, kw = int(found), key
    try:
        dictionary_VR(tag)
    except KeyError:
        raise ValueError(f"{key!r} is not in the DICOM dictionary") from None
    return tag, kw, (value if sep else None)


def identifier(keys: Iterable[str], level: str) -> Dataset:
    """The identifier of a query or retrieve at ``level`` with the ``-k`` keys (a key without ``=`` is a return
    key, sent empty). A non-ASCII value makes it UTF-8 (Specific Character Set ISO_IR 192)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level.upper()
    non_ascii = False
    for text in keys:
        tag, kw, value = parse_key(text)
        vr = dictionary_VR(tag)
        if kw == "QueryRetrieveLevel":
            if value:
                ds.QueryRetrieveLevel = value.upper()
            continue
        if vr == "SQ":
            ds.add_new(tag, vr, [])
            continue
        if value and not value.isascii():
            non_ascii = True
        v: Any = value or None
        if v is not None and vr in ("US", "UL", "SS", "SL"):
            v = int(v)
        elif v is not None and "\\" in v:
            v = v.split("\\")
        ds.add_new(tag, vr, v)
    if non_ascii and "SpecificCharacterSet" not in ds:
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def sop_class(root: str, operation: str) -> str:
    """The SOP class of ``root`` ("patient"/"study") and ``operation`` ("find"/"move"/"get")."""
    return BY_ROOT[(root, operation)]


@dataclass(frozen=True)
class ExtendedNegotiation:
    """A SOP Class Extended Negotiation item for ``AE.associate(ext_neg=...)`` (PS3.7 D.3.3.5)."""

    sop_class_uid: str
    service_class_application_information: bytes


def relational_item(uid: str, find: bool) -> ExtendedNegotiation:
    """Asks for relational queries and combined date-time matching (C-FIND, PS3.4 C.3.4) or relational
    retrieval (C-MOVE/C-GET, C.4.2.2.1)."""
    return ExtendedNegotiation(uid, b"\x01\x01" if find else b"\x01")


class Retriever:
    """A C-GET requestor that writes each received instance to ``folder`` as ``<SOP Instance UID>.dcm``
    (Part 10, as received), counting them; ``on_stored(path)`` hears of each."""

    def __init__(self, folder: Path, on_stored: Optional[Callable[[Path], None]] = None) -> None:
        self.folder = folder
        self.on_stored = on_stored
        self.received: list[Path] = []

    def handle_store(self, event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        path = self.folder / f"{uid}.dcm"
        try:
            path.write_bytes(event.encoded_dataset(include_meta=True))
        except OSError:
            return 0xA700
        self.received.append(path)
        if self.on_stored is not None:
            self.on_stored(path)
        return 0x0000

    def ae(self, calling: str, get_class: str, ext_neg: list[Any]) -> AE:
        """An AE that requests ``get_class`` and every storage class with the SCP role (C.5.3); the role
        selection items are appended to ``ext_neg``."""
        ae = AE(calling)
        ae.add_requested_context(get_class)
        # 127 contexts at most besides the C-GET one: the most used storage classes first.
        classes = _common_first(storage_sop_classes())[:127]
        for uid in classes:
            ae.add_requested_context(uid, STORAGE_TRANSFER_SYNTAXES[:3] if uid else DEFAULT_TRANSFER_SYNTAXES)
            ext_neg.append(build_role(uid, scp_role=True))
        return ae

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        return [(evt.EVT_C_STORE, self.handle_store)]


def _common_first(classes: list[str]) -> list[str]:
    first = [
        "1.2.840.10008.5.1.4.1.1.2",  # CT
        "1.2.840.10008.5.1.4.1.1.20",  # NM
        "1.2.840.10008.5.1.4.1.1.128",  # PET
        "1.2.840.10008.5.1.4.1.1.4",  # MR
        "1.2.840.10008.5.1.4.1.1.7",  # SC
        "1.2.840.10008.5.1.4.1.1.1",  # CR
        "1.2.840.10008.5.1.4.1.1.12.1",  # XA
        "1.2.840.10008.5.1.4.1.1.6.1",  # US
        "1.2.840.10008.5.1.4.1.1.1.1",  # DX
        "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    ]
    return first + [c for c in classes if c not in first]


def responses(results: Iterable[tuple[Any, Optional[Dataset]]]) -> Iterator[tuple[int, Any, Optional[Dataset]]]:
    """(status code, status, identifier) of each response."""
    for status, ds in results:
        yield int(getattr(status, "Status", status)), status, ds
