"""Events an AE's handlers can bind to, in the manner of pynetdicom's ``evt`` module.

Notification events (association established, released, aborted, rejected) are reported
after the fact; intervention events (one per DIMSE request, e.g. ``EVT_C_ECHO``) expect the
handler to return a status (an ``int``, or a pydicom ``Dataset`` with a ``Status`` element).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ferrodicom._core import Command


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    is_intervention: bool = False

    def __repr__(self) -> str:
        return self.name


EVT_ESTABLISHED = EventType("EVT_ESTABLISHED", "Association established")
EVT_REJECTED = EventType("EVT_REJECTED", "Association rejected")
EVT_RELEASED = EventType("EVT_RELEASED", "Association released")
EVT_ABORTED = EventType("EVT_ABORTED", "Association aborted")
EVT_C_ECHO = EventType("EVT_C_ECHO", "C-ECHO request received", True)
#: In-memory C-STORE handler (as pynetdicom's); an AE started with an archive streams to disk instead.
EVT_C_STORE = EventType("EVT_C_STORE", "C-STORE request received", True)

NOTIFICATIONS = {"established": EVT_ESTABLISHED, "rejected": EVT_REJECTED, "released": EVT_RELEASED,
                 "aborted": EVT_ABORTED}  # fmt: skip
#: Intervention events by DIMSE Command Field (PS3.7 E.1).
INTERVENTIONS: dict[int, EventType] = {0x0030: EVT_C_ECHO, 0x0001: EVT_C_STORE}

Handler = Callable[["Event"], Any]


@dataclass(frozen=True)
class PresentationContext:
    """A negotiated presentation context (PS3.8 §9.3.2.2)."""

    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    result: int = 0
    as_scu: bool = False
    as_scp: bool = False


@dataclass
class AssociationInfo:
    """What a server handler knows about the association a request came on."""

    calling_ae: str
    called_ae: str
    peer_address: Optional[tuple[str, int]]
    contexts: list[PresentationContext]
    peer_max_pdu: int
    peer_implementation_class_uid: str
    peer_implementation_version_name: Optional[str]
    user_identity: Optional[tuple[int, bytes, bytes]] = None
    reject: Optional[tuple[int, int, int]] = None

    @classmethod
    def from_negotiated(cls, d: dict) -> AssociationInfo:
        ctxs = [
            PresentationContext(c["id"], c["abstract_syntax"], c["transfer_syntax"], c["result"], c["scu"], c["scp"])
            for c in d.get("contexts", [])
        ]
        return cls(
            calling_ae=d.get("calling_ae", ""),
            called_ae=d.get("called_ae", ""),
            peer_address=d.get("peer_address"),
            contexts=ctxs,
            peer_max_pdu=d.get("peer_max_pdu", 0),
            peer_implementation_class_uid=d.get("peer_implementation_class_uid", ""),
            peer_implementation_version_name=d.get("peer_implementation_version_name"),
            user_identity=d.get("user_identity"),
            reject=d.get("reject"),
        )


@dataclass
class Event:
    """One event passed to a handler."""

    event: EventType
    assoc: AssociationInfo
    context: Optional[PresentationContext] = None
    request: Optional[Command] = None
    data: Optional[bytes] = None
    timestamp: float = field(default_factory=time.time)

    @property
    def message_id(self) -> Optional[int]:
        return None if self.request is None else self.request.message_id

    @property
    def dataset(self):
        """The request's data set decoded with pydicom (in the context's transfer syntax), or None."""
        if self.data is None or self.context is None:
            return None
        from io import BytesIO

        from pydicom.filereader import read_dataset
        from pydicom.uid import UID

        ts = UID(self.context.transfer_syntax)
        return read_dataset(BytesIO(self.data), ts.is_implicit_VR, ts.is_little_endian)
