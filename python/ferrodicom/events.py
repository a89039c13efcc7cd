"""Events an AE's handlers bind to, as pynetdicom's ``evt`` module (its documentation is the contract).

Notification events (association established, released, aborted, rejected) are reported after the fact and
their handlers' return values are ignored. Intervention events (one per DIMSE request, plus user identity and
extended negotiation) expect the handler to answer, in pynetdicom's conventions:

- ``EVT_C_ECHO``, ``EVT_C_STORE``: return a status (an ``int``, or a Dataset with a ``Status`` element);
- ``EVT_C_FIND``: yield ``(status, identifier)`` pairs; check ``event.is_cancelled`` between them;
- ``EVT_C_GET``: yield the number of sub-operations, then ``(status, dataset)`` pairs (a dataset or a path);
- ``EVT_C_MOVE``: yield ``(addr, port)`` of the destination (or ``(addr, port, {"contexts": [(abstract syntax,
  [transfer syntaxes]), ...], ...})`` to choose the contexts proposed and other ``AE.associate`` arguments), then
  the number, then ``(status, dataset)`` pairs; a dataset may be a Part 10 file's path (streamed from disk in Rust);
  for C-GET and C-MOVE a status Dataset yielded instead of the destination or the number is the final response
  (e.g. A900 for an identifier that does not fit the SOP class), sent without any sub-operation;
- ``EVT_N_GET``, ``EVT_N_SET``, ``EVT_N_CREATE``, ``EVT_N_ACTION``, ``EVT_N_EVENT_REPORT``: return
  ``(status, dataset)``; ``EVT_N_DELETE``: return a status;
- ``EVT_USER_ID``: return ``(is_verified, server_response)``; ``EVT_SOP_EXTENDED``: return ``{uid: reply}``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import UID

from ferrodicom import datasets

if TYPE_CHECKING:
    from ferrodicom import _core


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
EVT_C_STORE = EventType("EVT_C_STORE", "C-STORE request received", True)
EVT_C_FIND = EventType("EVT_C_FIND", "C-FIND request received", True)
EVT_C_GET = EventType("EVT_C_GET", "C-GET request received", True)
EVT_C_MOVE = EventType("EVT_C_MOVE", "C-MOVE request received", True)
EVT_N_ACTION = EventType("EVT_N_ACTION", "N-ACTION request received", True)
EVT_N_CREATE = EventType("EVT_N_CREATE", "N-CREATE request received", True)
EVT_N_DELETE = EventType("EVT_N_DELETE", "N-DELETE request received", True)
EVT_N_EVENT_REPORT = EventType("EVT_N_EVENT_REPORT", "N-EVENT-REPORT request received", True)
EVT_N_GET = EventType("EVT_N_GET", "N-GET request received", True)
EVT_N_SET = EventType("EVT_N_SET", "N-SET request received", True)
EVT_USER_ID = EventType("EVT_USER_ID", "User identity negotiation received", True)
EVT_SOP_EXTENDED = EventType("EVT_SOP_EXTENDED", "SOP class extended negotiation received", True)

#: Notification events by how an association ended (or was refused).
NOTIFICATIONS = {"established": EVT_ESTABLISHED, "rejected": EVT_REJECTED, "released": EVT_RELEASED,
                 "aborted": EVT_ABORTED}  # fmt: skip
#: Intervention events by the Command Field of their request (PS3.7 E.1).
BY_COMMAND_FIELD: dict[int, EventType] = {
    0x0030: EVT_C_ECHO,
    0x0001: EVT_C_STORE,
    0x0020: EVT_C_FIND,
    0x0010: EVT_C_GET,
    0x0021: EVT_C_MOVE,
    0x0100: EVT_N_EVENT_REPORT,
    0x0110: EVT_N_GET,
    0x0120: EVT_N_SET,
    0x0130: EVT_N_ACTION,
    0x0140: EVT_N_CREATE,
    0x0150: EVT_N_DELETE,
}
#: Kept for code written against ferrodicom 0.1.
INTERVENTIONS = BY_COMMAND_FIELD

Handler = Callable[..., Any]


class Event:
    """One event passed to a handler (pynetdicom's ``Event``): ``event.assoc`` is the live
    :class:`~ferrodicom.association.Association` (a handler may send on it), ``event.request`` the request's
    command set (``event.request.MessageID``, ``.AffectedSOPClassUID``...), ``event.context`` its presentation
    context; the data-set properties decode the request's data set on first use."""

    def __init__(
        self,
        assoc: Any,
        event: EventType,
        request: Optional[_core.Request] = None,
        **attrs: Any,
    ) -> None:
        self.assoc = assoc
        self._event = event
        self.timestamp = datetime.datetime.now()
        self._request = request
        self._decoded: Optional[Dataset] = None
        for k, v in attrs.items():
            setattr(self, k, v)

    @property
    def event(self) -> EventType:
        return self._event

    @property
    def request(self) -> Any:
        """The request's command set (keyword attributes, as pynetdicom's DIMSE primitives)."""
        return None if self._request is None else self._request.command

    @property
    def context(self) -> Any:
        """The presentation context of the request: ``context_id``, ``abstract_syntax``, ``transfer_syntax``."""
        if self._request is None:
            raise AttributeError(f"{self._event.name} has no presentation context")
        return self._request.context

    @property
    def message_id(self) -> int:
        if self._request is None:
            raise AttributeError(f"{self._event.name} is not a DIMSE request and has no Message ID")
        return self._request.message_id

    # --- the request's data set, under the names pynetdicom gives it per service ---------------------------
    def _dataset(self, *events: EventType) -> Dataset:
        if self._event not in events or self._request is None:
            names = ", ".join(e.name for e in events)
            raise AttributeError(f"the data set of {self._event.name} is not available here (only {names})")
        if self._decoded is None:
            self._decoded = datasets.decode(self._request.data, self._request.context.transfer_syntax)
        return self._decoded

    @property
    def dataset(self) -> Dataset:
        """A C-STORE request's Data Set."""
        return self._dataset(EVT_C_STORE)

    @property
    def identifier(self) -> Dataset:
        """A C-FIND, C-GET or C-MOVE request's Identifier."""
        return self._dataset(EVT_C_FIND, EVT_C_GET, EVT_C_MOVE)

    @property
    def action_information(self) -> Dataset:
        return self._dataset(EVT_N_ACTION)

    @property
    def event_information(self) -> Dataset:
        return self._dataset(EVT_N_EVENT_REPORT)

    @property
    def attribute_list(self) -> Dataset:
        """An N-CREATE request's Attribute List."""
        return self._dataset(EVT_N_CREATE)

    @property
    def modification_list(self) -> Dataset:
        """An N-SET request's Modification List."""
        return self._dataset(EVT_N_SET)

    def encoded_dataset(self, include_meta: bool = True) -> bytes:
        """A C-STORE request's data set as sent; with ``include_meta``, as a Part 10 file (PS3.10 §7.1)."""
        if self._event is not EVT_C_STORE or self._request is None:
            raise AttributeError("only a C-STORE request has an encoded data set")
        data = self._request.data or b""
        if not include_meta:
            return data
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info

        buf = DicomBytesIO()
        buf.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(buf, self.file_meta, enforce_standard=True)
        return buf.getvalue() + data

    @property
    def file_meta(self) -> FileMetaDataset:
        """File Meta Information for a C-STORE request's data set (PS3.10 §7.1)."""
        if self._event is not EVT_C_STORE or self._request is None:
            raise AttributeError("only a C-STORE request has File Meta Information")
        from ferrodicom import _core

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = self.request.AffectedSOPClassUID
        meta.MediaStorageSOPInstanceUID = self.request.AffectedSOPInstanceUID
        meta.TransferSyntaxUID = UID(self._request.context.transfer_syntax)
        meta.ImplementationClassUID = UID(_core.IMPLEMENTATION_CLASS_UID)
        meta.ImplementationVersionName = _core.IMPLEMENTATION_VERSION_NAME
        return meta

    # --- command parameters ------------------------------------------------------------------------------
    @property
    def action_type(self) -> Optional[int]:
        return self._command_value(EVT_N_ACTION, "ActionTypeID")

    @property
    def event_type(self) -> Optional[int]:
        return self._command_value(EVT_N_EVENT_REPORT, "EventTypeID")

    @property
    def move_destination(self) -> Optional[str]:
        value = self._command_value(EVT_C_MOVE, "MoveDestination")
        return None if value is None else value.rstrip()

    @property
    def attribute_identifiers(self) -> list[Any]:
        """An N-GET request's Attribute Identifier List, as pydicom tags."""
        tags = self._command_value(EVT_N_GET, "AttributeIdentifierList") or []
        return [Tag(t) for t in tags]

    def _command_value(self, event: EventType, keyword: str) -> Any:
        if self._event is not event or self._request is None:
            raise AttributeError(f"{self._event.name} has no {keyword}")
        return getattr(self._request.command, keyword)

    @property
    def is_cancelled(self) -> bool:
        """True once the peer sent a C-CANCEL-RQ for this request (C-FIND, C-GET, C-MOVE; PS3.7 §9.3.2.3)."""
        if self._request is None or self._event not in (EVT_C_FIND, EVT_C_GET, EVT_C_MOVE):
            return False
        return self._request.is_cancelled

    def __repr__(self) -> str:
        return f"<Event {self._event.name} at {self.timestamp:%H:%M:%S.%f}>"
