"""An association (PS3.8 §7) with pynetdicom's SCU calls (PS3.7 §9-10), on the Rust association.

:meth:`ferrodicom.AE.associate` returns an :class:`Association`; as in pynetdicom a rejected or failed
request still returns one: check ``assoc.is_established``, and ``assoc.error`` for the typed exception
(:class:`~ferrodicom.AssociationRejected` with ``result``/``source``/``reason``). A server's handlers get the
same class as ``event.assoc``, live: they may send requests on it.

Every ``send_*`` call encodes its data set in the negotiated transfer syntax (Deflated and Explicit VR Big
Endian through the Rust codec) and returns what pynetdicom returns: a status that is an ``int`` with the
response's other elements as attributes (``status.Status``, ``status.ErrorComment``), and decoded data sets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from pydicom.dataset import Dataset

from ferrodicom import _core, datasets
from ferrodicom.status import Status
from ferrodicom.uids import VERIFICATION

log = logging.getLogger("ferrodicom.association")

#: A-ASSOCIATE-RJ reasons by (source, reason) (PS3.8 Table 9-21).
REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}

#: DIMSE priorities (PS3.7 §9.1.1.1.4): pynetdicom's default is LOW.
PRIORITY_LOW = 2

#: Command Fields of the requests (PS3.7 E.1).
C_STORE, C_GET, C_FIND, C_MOVE, C_ECHO = 0x0001, 0x0010, 0x0020, 0x0021, 0x0030
N_EVENT_REPORT, N_GET, N_SET, N_ACTION, N_CREATE, N_DELETE = 0x0100, 0x0110, 0x0120, 0x0130, 0x0140, 0x0150

#: Group 0000 elements used here (PS3.7 E.1).
AFFECTED_SOP_CLASS_UID, REQUESTED_SOP_CLASS_UID = 0x0002, 0x0003
COMMAND_FIELD, MESSAGE_ID, MOVE_DESTINATION, PRIORITY = 0x0100, 0x0110, 0x0600, 0x0700
AFFECTED_SOP_INSTANCE_UID, REQUESTED_SOP_INSTANCE_UID = 0x1000, 0x1001
EVENT_TYPE_ID, ATTRIBUTE_IDENTIFIER_LIST, ACTION_TYPE_ID = 0x1002, 0x1005, 0x1008


@dataclass(frozen=True)
class ServiceUser:
    """One side of an association, as pynetdicom's ``assoc.requestor`` / ``assoc.acceptor``: the peer's side
    carries its address and what it announced (maximum PDU length, implementation)."""

    ae_title: str
    address: Optional[str] = None
    port: Optional[int] = None
    maximum_length: Optional[int] = None
    implementation_class_uid: Optional[str] = None
    implementation_version_name: Optional[str] = None


class Association:
    """An association; a context manager that releases it on exit."""

    def __init__(self, core: Optional[_core.Association], error: Optional[BaseException] = None) -> None:
        self._core = core
        self.error = error
        self._released = False
        self._aborted = False

    # --- state -------------------------------------------------------------------------------
    @property
    def is_established(self) -> bool:
        return self._core is not None and self._core.is_established

    @property
    def is_rejected(self) -> bool:
        return isinstance(self.error, _core.AssociationRejected)

    @property
    def is_aborted(self) -> bool:
        if self._aborted or isinstance(self.error, _core.AssociationAborted):
            return True
        return self._core is not None and self._core.outcome == "aborted" and not self._released

    @property
    def is_released(self) -> bool:
        return self._released or (self._core is not None and self._core.outcome == "released")

    @property
    def rejection(self) -> Optional[tuple[int, int, int]]:
        """(result, source, reason) of the A-ASSOCIATE-RJ, if the request was rejected (PS3.8 §9.3.4)."""
        e = self.error
        if isinstance(e, _core.AssociationRejected):
            return (e.result, e.source, e.reason)
        return None

    @property
    def info(self) -> Optional[_core.AssociationInfo]:
        """What was negotiated (None when no association was made)."""
        return None if self._core is None else self._core.info

    @property
    def user_identity(self) -> Optional[tuple[int, bytes, bytes]]:
        """The requestor's User Identity (type, primary field, secondary field), PS3.7 D.3.3.7."""
        return None if self.info is None else self.info.user_identity

    @property
    def requestor(self) -> ServiceUser:
        return self._side(requestor=True)

    @property
    def acceptor(self) -> ServiceUser:
        return self._side(requestor=False)

    def _side(self, requestor: bool) -> ServiceUser:
        info = self.info
        if info is None:
            return ServiceUser("")
        title = info.calling_ae if requestor else info.called_ae
        if requestor == info.is_requestor:  # our side
            return ServiceUser(title, maximum_length=info.local_max_pdu)
        addr = info.peer_address
        return ServiceUser(
            title,
            addr[0] if addr else None,
            addr[1] if addr else None,
            info.peer_max_pdu,
            info.peer_implementation_class_uid,
            info.peer_implementation_version_name,
        )

    @property
    def accepted_contexts(self) -> list[_core.PresentationContext]:
        return [c for c in (self.info.contexts if self.info else []) if c.result == 0]

    @property
    def rejected_contexts(self) -> list[_core.PresentationContext]:
        return [c for c in (self.info.contexts if self.info else []) if c.result != 0]

    @property
    def core(self) -> _core.Association:
        """The Rust association (for services built on ``send``/``next_response``)."""
        if self._core is None:
            raise _core.AssociationError(f"association was not established: {self.error}")
        return self._core

    @property
    def id(self) -> int:
        return self.core.id

    def context_for(
        self, abstract_syntax: str, transfer_syntax: Optional[str] = None, role: Optional[str] = "scu"
    ) -> _core.PresentationContext:
        """The accepted context for an abstract syntax on which we may act in ``role`` ("scu", "scp", or None
        for either), preferring ``transfer_syntax``."""
        matches = [
            c
            for c in self.accepted_contexts
            if c.abstract_syntax == abstract_syntax and (role is None or (c.as_scu if role == "scu" else c.as_scp))
        ]
        for c in matches:
            if transfer_syntax is None or c.transfer_syntax == transfer_syntax:
                return c
        if matches:
            return matches[0]
        as_role = f" (as {role.upper()})" if role else ""
        raise _core.AssociationError(f"no accepted presentation context for {abstract_syntax}{as_role}")

    @property
    def supports_verification(self) -> bool:
        return any(c.abstract_syntax == VERIFICATION for c in self.accepted_contexts)

    # --- sending requests ----------------------------------------------------------------------
    def _request(
        self, field: int, sop_class: str, fields: dict[int, Any], dataset: Optional[Dataset], msg_id: Optional[int]
    ) -> tuple[_core.PresentationContext, int]:
        """Sends one request on the context for ``sop_class``; returns (context, message ID)."""
        ctx = self.context_for(sop_class)
        class_element = (
            REQUESTED_SOP_CLASS_UID if field in (N_GET, N_SET, N_ACTION, N_DELETE) else AFFECTED_SOP_CLASS_UID
        )
        cmd = {COMMAND_FIELD: field, class_element: sop_class, **fields}
        if msg_id is not None:
            cmd[MESSAGE_ID] = msg_id
        data = None if dataset is None else datasets.encode(dataset, ctx.transfer_syntax)
        return ctx, self.core.send(ctx.context_id, cmd, data)

    def _response(self, ctx: _core.PresentationContext, msg_id: int) -> tuple[Status, Optional[Dataset]]:
        command, data = self.core.next_response(msg_id)
        status = Status(command.status if command.status is not None else 0xC000, command)
        return status, (None if data is None else datasets.decode(data, ctx.transfer_syntax))

    def send_c_echo(self, msg_id: Optional[int] = None) -> Status:
        """C-ECHO (PS3.7 §9.1.5): the peer's status."""
        if msg_id is None:
            return Status(self.core.send_c_echo())
        ctx, mid = self._request(C_ECHO, VERIFICATION, {}, None, msg_id)
        return self._response(ctx, mid)[0]

    def send_c_store(
        self,
        dataset: Union[Dataset, str, os.PathLike],
        msg_id: Optional[int] = None,
        priority: int = PRIORITY_LOW,
        originator_aet: Optional[str] = None,
        originator_id: Optional[int] = None,
    ) -> Status:
        """C-STORE (PS3.7 §9.1.1) of a Dataset or a Part 10 file (streamed from disk in Rust, converted to the
        accepted transfer syntax on the fly)."""
        originator = None if originator_aet is None else (originator_aet, int(originator_id or 0))
        if isinstance(dataset, (str, os.PathLike)):
            status, rsp, _n, _ts = self.core.send_c_store_file(
                Path(dataset), priority=priority, move_originator=originator
            )
        else:
            ts = _dataset_syntax(dataset)
            ctx = self.context_for(str(dataset.SOPClassUID), ts)
            data = datasets.encode(dataset, ctx.transfer_syntax)
            status, rsp, _n, _ts = self.core.send_c_store_data(
                str(dataset.SOPClassUID),
                str(dataset.SOPInstanceUID),
                ctx.transfer_syntax,
                data,
                priority=priority,
                move_originator=originator,
            )
        return Status(status, rsp)

    def _responses(self, ctx: _core.PresentationContext, msg_id: int) -> Iterator[tuple[Status, Optional[Dataset]]]:
        while True:
            status, identifier = self._response(ctx, msg_id)
            yield status, identifier
            if status not in (0xFF00, 0xFF01):
                return

    def send_c_find(
        self, dataset: Dataset, query_model: str, msg_id: Optional[int] = None, priority: int = PRIORITY_LOW
    ) -> Iterator[tuple[Status, Optional[Dataset]]]:
        """C-FIND (PS3.7 §9.1.2): yields (status, identifier) per response, pending matches then the final
        status. Send :meth:`send_c_cancel` with the request's message ID to stop it."""
        ctx, mid = self._request(C_FIND, query_model, {PRIORITY: priority}, dataset, msg_id)
        self.last_message_id = mid
        return self._responses(ctx, mid)

    def send_c_get(
        self, dataset: Dataset, query_model: str, msg_id: Optional[int] = None, priority: int = PRIORITY_LOW
    ) -> Iterator[tuple[Status, Optional[Dataset]]]:
        """C-GET (PS3.7 §9.1.3): yields (status, identifier) per response. The C-STORE sub-operations arrive on
        this association (their SOP classes need SCP/SCU role selection) and go to the handlers the
        association was requested with (``EVT_C_STORE``, or a storage service)."""
        ctx, mid = self._request(C_GET, query_model, {PRIORITY: priority}, dataset, msg_id)
        self.last_message_id = mid
        return self._responses(ctx, mid)

    def send_c_move(
        self,
        dataset: Dataset,
        move_aet: str,
        query_model: str,
        msg_id: Optional[int] = None,
        priority: int = PRIORITY_LOW,
    ) -> Iterator[tuple[Status, Optional[Dataset]]]:
        """C-MOVE (PS3.7 §9.1.4) to ``move_aet``: yields (status, identifier) per response."""
        fields = {PRIORITY: priority, MOVE_DESTINATION: move_aet}
        ctx, mid = self._request(C_MOVE, query_model, fields, dataset, msg_id)
        self.last_message_id = mid
        return self._responses(ctx, mid)

    def send_c_cancel(self, msg_id: int, context_id: Optional[int] = None, query_model: Optional[str] = None) -> None:
        """C-CANCEL-RQ (PS3.7 §9.3.2.3) for our request ``msg_id``; the request's final response says how
        it ended (FE00 once cancelled)."""
        if context_id is None:
            if query_model is None:
                raise ValueError("send_c_cancel needs the context_id or the query_model of the request")
            context_id = self.context_for(query_model).context_id
        self.core.send_cancel(context_id, msg_id)

    def send_n_action(
        self,
        dataset: Optional[Dataset],
        action_type: int,
        class_uid: str,
        instance_uid: str,
        msg_id: Optional[int] = None,
        meta_uid: Optional[str] = None,
    ) -> tuple[Status, Optional[Dataset]]:
        """N-ACTION (PS3.7 §10.1.4): (status, action reply)."""
        fields = {REQUESTED_SOP_INSTANCE_UID: instance_uid, ACTION_TYPE_ID: action_type}
        return self._n_request(N_ACTION, class_uid, fields, dataset, msg_id, meta_uid)

    def send_n_create(
        self,
        dataset: Optional[Dataset],
        class_uid: str,
        instance_uid: Optional[str] = None,
        msg_id: Optional[int] = None,
        meta_uid: Optional[str] = None,
    ) -> tuple[Status, Optional[Dataset]]:
        """N-CREATE (PS3.7 §10.1.5): (status, attribute list); the created instance's UID is
        ``status.AffectedSOPInstanceUID``."""
        fields = {} if instance_uid is None else {AFFECTED_SOP_INSTANCE_UID: instance_uid}
        return self._n_request(N_CREATE, class_uid, fields, dataset, msg_id, meta_uid)

    def send_n_delete(
        self, class_uid: str, instance_uid: str, msg_id: Optional[int] = None, meta_uid: Optional[str] = None
    ) -> Status:
        """N-DELETE (PS3.7 §10.1.6): the status."""
        fields = {REQUESTED_SOP_INSTANCE_UID: instance_uid}
        return self._n_request(N_DELETE, class_uid, fields, None, msg_id, meta_uid)[0]

    def send_n_event_report(
        self,
        dataset: Optional[Dataset],
        event_type: int,
        class_uid: str,
        instance_uid: str,
        msg_id: Optional[int] = None,
        meta_uid: Optional[str] = None,
    ) -> tuple[Status, Optional[Dataset]]:
        """N-EVENT-REPORT (PS3.7 §10.1.1): (status, event reply)."""
        fields = {AFFECTED_SOP_INSTANCE_UID: instance_uid, EVENT_TYPE_ID: event_type}
        return self._n_request(N_EVENT_REPORT, class_uid, fields, dataset, msg_id, meta_uid)

    def send_n_get(
        self,
        identifier_list: list[Any],
        class_uid: str,
        instance_uid: str,
        msg_id: Optional[int] = None,
        meta_uid: Optional[str] = None,
    ) -> tuple[Status, Optional[Dataset]]:
        """N-GET (PS3.7 §10.1.2) of these attributes (empty: all): (status, attribute list)."""
        fields: dict[int, Any] = {REQUESTED_SOP_INSTANCE_UID: instance_uid}
        if identifier_list:
            fields[ATTRIBUTE_IDENTIFIER_LIST] = [int(t) for t in identifier_list]
        return self._n_request(N_GET, class_uid, fields, None, msg_id, meta_uid)

    def send_n_set(
        self,
        dataset: Dataset,
        class_uid: str,
        instance_uid: str,
        msg_id: Optional[int] = None,
        meta_uid: Optional[str] = None,
    ) -> tuple[Status, Optional[Dataset]]:
        """N-SET (PS3.7 §10.1.3): (status, attribute list)."""
        fields = {REQUESTED_SOP_INSTANCE_UID: instance_uid}
        return self._n_request(N_SET, class_uid, fields, dataset, msg_id, meta_uid)

    def _n_request(
        self,
        field: int,
        class_uid: str,
        fields: dict[int, Any],
        dataset: Optional[Dataset],
        msg_id: Optional[int],
        meta_uid: Optional[str],
    ) -> tuple[Status, Optional[Dataset]]:
        """An N- request on the context of ``meta_uid`` (a Meta SOP Class, as print's) or of ``class_uid``. An
        N-EVENT-REPORT goes from the SOP class's performer to its user (PS3.7 §10.1.1): on a context where we
        are the SCP, or the SCU of a class whose SCP reports on the same association (storage commitment)."""
        ctx = self.context_for(meta_uid or class_uid, role=None if field == N_EVENT_REPORT else "scu")
        class_element = (
            REQUESTED_SOP_CLASS_UID if field in (N_GET, N_SET, N_ACTION, N_DELETE) else AFFECTED_SOP_CLASS_UID
        )
        cmd = {COMMAND_FIELD: field, class_element: class_uid, **fields}
        if msg_id is not None:
            cmd[MESSAGE_ID] = msg_id
        data = None if dataset is None else datasets.encode(dataset, ctx.transfer_syntax)
        command, reply = self.core.request(ctx.context_id, cmd, data)
        status = Status(command.status if command.status is not None else 0xC000, command)
        return status, (None if reply is None else datasets.decode(reply, ctx.transfer_syntax))

    # --- ending ------------------------------------------------------------------------------
    def release(self) -> None:
        """A-RELEASE (PS3.8 §7.2)."""
        if self._core is not None and self._core.is_established:
            late = self._core.release()
            self._released = True
            if late is not None:
                log.warning(
                    "peer sent %d data PDVs (%d bytes) after our A-RELEASE-RQ; released, that data was not used", *late
                )

    def abort(self) -> None:
        """A-ABORT (PS3.8 §7.3)."""
        if self._core is not None:
            self._core.abort()
            self._aborted = True

    def release_or_abort(self) -> Optional[Exception]:
        """Releases the association if it is established (PS3.8 §7.2); when the release fails, aborts it
        (§7.3) and returns the release's error for the caller to report. Never raises."""
        if not self.is_established:
            return None
        try:
            self.release()
            return None
        except (_core.DicomError, OSError) as exc:
            try:
                self.abort()
            except (_core.DicomError, OSError):
                pass
            return exc

    def __enter__(self) -> Association:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.is_established:
            self.release()

    def __repr__(self) -> str:
        state = "established" if self.is_established else ("rejected" if self.is_rejected else "closed")
        return f"<Association {state}>"


def _dataset_syntax(ds: Dataset) -> Optional[str]:
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    return None if ts is None else str(ts)
