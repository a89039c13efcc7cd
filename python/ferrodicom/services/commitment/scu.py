"""Storage Commitment Push Model SCU (PS3.4 Annex J): ask a peer to commit to keeping instances, and take its
answer on the requesting association or on a new one it opens.

:func:`commit` is the whole job (``ferrodicom commit``, ``store --commit``): it opens an association, sends
one N-ACTION naming every instance under a new Transaction UID, and waits for the N-EVENT-REPORT:

- on the requesting association, kept open ``hold`` seconds after the N-ACTION (GEMINI closes it 60 s after
  its last N-ACTION, 001 L684), or for the whole ``wait`` when nothing listens for a new association;
- on a new association the peer opens to us, when ``listen_port`` is given (Xeleris takes reports only there,
  002 L1025; PACS-IW always opens one, 003 L3276-3284): we accept the SCP role it proposes for the SOP class
  through SCP/SCU Role Selection (PS3.4 J.3.3.1.3), or no role selection at all.

An N-ACTION answered with anything but Success ends the job at once and aborts the association (001 T19 L694;
002 L765, L789). No report within ``wait`` seconds (Xeleris: 24 h, 002 L773) is a failure; a report arriving
later is answered 0213 (expired, 001 T21 L707) as long as we listen.

:class:`CommitmentSCU` is the part a long-running AE keeps: the outstanding requests by Transaction UID, and
the N-EVENT-REPORT handler that answers each report (001 T21 L702-710, 002 L1049-1055): 0000 taken; 0119 not
Storage Commitment; 0113 an event type other than 1 or 2; 0110 a data set that cannot be read; 0211 an unknown
Transaction UID; 0213 an expired one; 0115 an instance that was not in the request. Given a ``state`` file
(:mod:`.outstanding`) it records every request before sending it and every result, so that a restarted process
still recognises the reports of the requests it had outstanding (:func:`resume` waits for them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ferrodicom import _core
from ferrodicom.ae import AE, ContextSpec
from ferrodicom.association import (
    ACTION_TYPE_ID,
    COMMAND_FIELD,
    N_ACTION,
    REQUESTED_SOP_CLASS_UID,
    REQUESTED_SOP_INSTANCE_UID,
    Association,
)
from ferrodicom.events import EVT_N_EVENT_REPORT, Event
from ferrodicom.services.commitment import messages
from ferrodicom.services.commitment import statuses as st
from ferrodicom.services.commitment.outstanding import Outstanding, RequestLog
from ferrodicom.status import Status
from ferrodicom.uids import (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    STORAGE_COMMITMENT_PUSH_MODEL,
    STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
    VERIFICATION,
)

log = logging.getLogger("ferrodicom.commitment")

#: Defaults of :func:`commit` (and ``ferrodicom commit``).
DEFAULT_WAIT = 600.0
DEFAULT_HOLD = 60.0
#: The transfer syntaxes proposed and accepted for the SOP class: those of every seed (001 L672-678, 002 L757,
#: 003 L3344-3358).
TRANSFER_SYNTAXES = [EXPLICIT_VR_LE, IMPLICIT_VR_LE]
#: How long a finished or expired request is remembered (a late or repeated report is recognised).
REMEMBER = 24 * 3600.0


@dataclass
class CommitResult:
    """What became of one Storage Commitment Request."""

    transaction_uid: str
    #: (SOP Class UID, SOP Instance UID) of every instance asked for.
    requested: list[tuple[str, str]]
    #: The N-ACTION response (None when it was never answered).
    action_status: Optional[Status] = None
    #: The report's Event Type ID: 1 all committed, 2 failures exist (None: no report).
    event_type: Optional[int] = None
    committed: list[tuple[str, str]] = field(default_factory=list)
    #: (SOP Class UID, SOP Instance UID, Failure Reason) from the report's Failed SOP Sequence.
    failed: list[tuple[str, str, Optional[int]]] = field(default_factory=list)
    #: Where the report came: "same" (the requesting association) or "new" (one the peer opened).
    via: Optional[str] = None
    #: Seconds from sending the N-ACTION to receiving the report.
    seconds: Optional[float] = None
    #: Why there is no report (association refused, N-ACTION failed, no report in time), else None.
    error: Optional[str] = None
    #: The error of the association request that failed, if that is what ended the job.
    association_error: Optional[BaseException] = None
    #: Read back from a state file (sent by an earlier process: its N-ACTION response is not known here).
    resumed: bool = False

    @property
    def unreported(self) -> list[tuple[str, str]]:
        """Asked for, and in neither sequence of the report (PS3.4 J.3.3.1.2 wants every one in it)."""
        if self.event_type is None:
            return []
        seen = {i for _, i in self.committed} | {i for _, i, _ in self.failed}
        return [r for r in self.requested if r[1] not in seen]

    @property
    def state(self) -> str:
        """``committed`` (every instance), ``failures`` (a report with failures), ``failed`` (no request
        accepted: the association or the N-ACTION failed) or ``timeout`` (accepted, no report in time) -
        Xeleris' SUCCESS / FAILURE / WAITING FOR COMMITMENT (002 L750), the last one given up."""
        if self.event_type is not None:
            complete = not self.failed and not self.unreported
            return "committed" if complete and len(self.committed) >= len(self.requested) else "failures"
        if self.resumed or (self.action_status is not None and int(self.action_status) == 0):
            return "timeout"
        return "failed"

    @property
    def ok(self) -> bool:
        return self.state == "committed"


class Pending:
    """A request sent and not yet reported on."""

    def __init__(self, result: CommitResult, assoc: Optional[Association], deadline: Optional[float] = None) -> None:
        self.result = result
        self.assoc = assoc
        #: Until when (``time.time()``) a report is awaited; None: as long as the caller waits.
        self.deadline = deadline
        self.wanted = {inst for _, inst in result.requested}
        self.done = threading.Event()
        self.sent_at = time.monotonic()
        #: The platform request of the report, to know when our answer to it went out.
        self.report_request: Any = None

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Whether the request ended within ``timeout`` seconds; once a report came, also that our answer to it
        went out (so that the caller may close the association or the listener at once)."""
        if not self.done.wait(timeout):
            return False
        request = self.report_request
        until = time.monotonic() + 10.0
        while request is not None and not getattr(request, "answered", True) and time.monotonic() < until:
            time.sleep(0.002)
        return True


class CommitmentSCU:
    """The requests this AE has outstanding, and the handler of their reports (see the module documentation).
    ``ae.add_service(scu)`` makes an AE accept the SOP class with the SCP role proposed by a peer reporting on a
    new association; :meth:`request` sends a request on an association."""

    def __init__(self, state: Optional[Any] = None) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}
        #: Transaction UID -> (monotonic time it ended, "done" or "expired").
        self._ended: dict[str, tuple[float, str]] = {}
        self.on_result: Optional[Callable[[CommitResult], None]] = None
        self.log = None if state is None else RequestLog(state)
        if self.log is not None:
            now = time.time()
            for req in self.log.requests():
                result = CommitResult(req.transaction_uid, req.refs, resumed=True)
                pending = Pending(result, None, req.deadline)
                if req.deadline <= now:
                    self.log.finish(req.transaction_uid, "expired", error="the wait ended before a report came")
                    self._ended[req.transaction_uid] = (time.monotonic(), "expired")
                else:
                    self._pending[req.transaction_uid] = pending

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    def outstanding(self) -> list[Pending]:
        """The requests still awaiting their report (those read back from the state file included)."""
        with self._lock:
            return list(self._pending.values())

    # --- the service protocol of AE.add_service ------------------------------------------------------
    def contexts(self) -> list[ContextSpec]:
        return [ContextSpec(STORAGE_COMMITMENT_PUSH_MODEL, list(TRANSFER_SYNTAXES), scu_role=True, scp_role=True)]

    def handlers(self) -> list[tuple[Any, Any]]:
        return [(EVT_N_EVENT_REPORT, self.on_report)]

    # --- requests ----------------------------------------------------------------------------------------
    def request(
        self,
        assoc: Association,
        instances: list[tuple[str, str]],
        transaction_uid: Optional[str] = None,
        wait: float = DEFAULT_WAIT,
    ) -> Pending:
        """Sends the N-ACTION for ``instances`` (SOP Class UID, SOP Instance UID) on ``assoc``; the request is
        outstanding (its report awaited, ``wait`` seconds as recorded in the state file) only when the peer
        answered Success."""
        uid = transaction_uid or generate_uid()
        pending = Pending(CommitResult(uid, list(instances)), assoc, time.time() + wait)
        with self._lock:
            if uid in self._pending or uid in self._ended:
                raise ValueError(f"Transaction UID {uid} is already in use")
            self._pending[uid] = pending  # before sending: the report may come before the response
        if self.log is not None:
            peer = assoc.acceptor
            try:
                self.log.add(Outstanding(uid, peer.ae_title, peer.address or "", peer.port or 0, time.time() + wait,
                                         pending.result.requested))  # fmt: skip
            except Exception:
                with self._lock:
                    self._pending.pop(uid, None)
                raise
        try:
            ctx = assoc.context_for(STORAGE_COMMITMENT_PUSH_MODEL)
            data = messages.encode_action(uid, pending.result.requested, ctx.transfer_syntax)
            command = {
                COMMAND_FIELD: N_ACTION,
                REQUESTED_SOP_CLASS_UID: STORAGE_COMMITMENT_PUSH_MODEL,
                REQUESTED_SOP_INSTANCE_UID: STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
                ACTION_TYPE_ID: st.ACTION_REQUEST_COMMITMENT,
            }
            pending.sent_at = time.monotonic()
            response, _ = assoc.core.request(ctx.context_id, command, data)
        except (_core.DicomError, OSError) as exc:
            self._end(pending, "done", f"the N-ACTION failed: {exc}")
            return pending
        status = Status(0xC000 if response.status is None else response.status, response)
        pending.result.action_status = status
        if int(status) != 0:
            # The Transaction UID is no longer active (PS3.4 J.3.2.1.2).
            comment = f" ({status.ErrorComment})" if status.ErrorComment else ""
            self._end(pending, "done", f"the peer answered the N-ACTION 0x{int(status):04X}: {status.meaning}{comment}")
        return pending

    def expire(self, pending: Pending, error: str) -> None:
        """No report is awaited any more: a late one is answered 0213."""
        self._end(pending, "expired", error)

    def _end(self, pending: Pending, how: str, error: Optional[str] = None) -> None:
        uid = pending.result.transaction_uid
        with self._lock:
            if self._pending.pop(uid, None) is None:
                return
            now = time.monotonic()
            self._ended[uid] = (now, how)
            if len(self._ended) > 1000:
                self._ended = {k: v for k, v in self._ended.items() if now - v[0] < REMEMBER}
        result = pending.result
        if error is not None and result.event_type is None:
            result.error = error
        if self.log is not None:
            state = "expired" if how == "expired" else (result.state if result.event_type is not None else "failed")
            outcomes = {i: 0 for _, i in result.committed}
            outcomes.update({i: (r if r is not None else 0x0110) for _, i, r in result.failed})
            try:
                self.log.finish(uid, state, outcomes, result.event_type, result.via, result.error)
            except Exception as exc:  # noqa: BLE001 - the result stands; the state file is a record
                log.error("commitment: cannot record the result of %s in %s: %s", uid, self.log.path, exc)
        pending.done.set()
        if self.on_result is not None:
            self.on_result(pending.result)

    # --- reports -----------------------------------------------------------------------------------------
    def on_report(self, event: Event) -> tuple[Any, None]:
        """EVT_N_EVENT_REPORT: takes a Storage Commitment Result (the module documentation lists the answers)."""
        sop_class = (event.request.AffectedSOPClassUID or "").strip()
        if sop_class != STORAGE_COMMITMENT_PUSH_MODEL:
            return _status(st.REPORT_CLASS_INSTANCE_CONFLICT, f"not Storage Commitment: {sop_class[:40]}")
        event_type = event.event_type
        if event_type not in st.EVENT_TYPES:
            return _status(st.REPORT_NO_SUCH_EVENT_TYPE, f"Event Type ID {event_type}: only 1 and 2 are defined")
        try:
            info = messages.event_info(_request_data(event), event.context.transfer_syntax)
        except messages.Unreadable as exc:
            return _status(st.REPORT_PROCESSING_FAILURE, f"cannot read the event information: {exc}")
        uid = info.transaction_uid or ""
        with self._lock:
            pending = self._pending.get(uid)
            ended = self._ended.get(uid)
        if pending is None and ended is None and self.log is not None:
            recorded = self.log.state_of(uid)  # ended in an earlier process
            if recorded is not None:
                ended = (0.0, "expired" if recorded == "expired" else "done")
        if pending is None:
            if ended is not None and ended[1] == "expired":
                log.warning("commitment: report for %s after its wait ended", uid)
                return _status(st.REPORT_EXPIRED, "the Transaction UID has expired")
            if ended is not None:
                log.info("commitment: report for %s again; the first one stands", uid)
                return st.REPORT_SUCCESS, None
            log.warning("commitment: report for unknown Transaction UID %s", uid)
            return _status(st.REPORT_UNRECOGNIZED, "Transaction UID not recognized")
        strays = [inst for _, inst in info.committed if inst not in pending.wanted]
        strays += [inst for _, inst, _ in info.failed if inst not in pending.wanted]
        if strays:
            log.warning("commitment: report for %s names %d instance(s) not in the request, e.g. %s", uid,
                        len(strays), strays[0])  # fmt: skip
            return _status(st.REPORT_INVALID_ARGUMENT, f"{len(strays)} SOP Instance(s) not in the request")
        result = pending.result
        result.event_type = event_type
        result.committed, result.failed = info.committed, info.failed
        result.seconds = time.monotonic() - pending.sent_at
        result.via = "same" if event.assoc is pending.assoc else "new"
        pending.report_request = getattr(event, "_request", None)  # answered once the handler returns
        for _cls, inst, reason in info.failed:
            log.info("commitment: %s not committed: %s", inst,
                     st.failure_reason_meaning(reason) if reason is not None else "no Failure Reason")  # fmt: skip
        self._end(pending, "done")
        return st.REPORT_SUCCESS, None


def _request_data(event: Event) -> Optional[bytes]:
    """The report's data set as received (see :func:`ferrodicom.services.commitment.scp._request_data`)."""
    request = getattr(event, "_request", None)
    if request is not None:
        return request.data
    from ferrodicom import datasets

    return datasets.encode(event.event_information, event.context.transfer_syntax)


def _status(status: int, comment: str) -> tuple[Dataset, None]:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return ds, None


def commit(
    host: str,
    port: int,
    instances: Iterable[tuple[str, str]],
    *,
    calling_ae: str = "FERRODICOM",
    called_ae: str = "ANY-SCP",
    listen_port: Optional[int] = None,
    bind: str = "0.0.0.0",
    wait: float = DEFAULT_WAIT,
    hold: float = DEFAULT_HOLD,
    timeout: Optional[float] = 60.0,
    max_pdu: Optional[int] = None,
    transaction_uid: Optional[str] = None,
    state: Optional[Any] = None,
) -> CommitResult:
    """Asks the peer at ``host:port`` to commit ``instances`` (SOP Class UID, SOP Instance UID) and waits for
    its report (see the module documentation). ``listen_port`` (0: any free port) listens as ``calling_ae``
    for a report on a new association; the peer must know that address. ``state``: a state file recording the
    request and its result (from which a restarted process resumes, :func:`resume`). Raises OSError when the port
    cannot be listened on; everything else ends up in the result."""
    refs = list(dict.fromkeys((str(c), str(i)) for c, i in instances))
    if not refs:
        raise ValueError("no instance to commit")
    scu = CommitmentSCU(state)
    server = None
    assoc = None
    try:
        if listen_port is not None:
            server = _listen(scu, calling_ae, bind, listen_port, timeout)
        ae = AE(calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.connection_timeout = timeout
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL, TRANSFER_SYNTAXES)
        assoc = ae.associate(host, port, ae_title=called_ae, max_pdu=max_pdu,
                             evt_handlers=[(EVT_N_EVENT_REPORT, scu.on_report)])  # fmt: skip
        if not assoc.is_established:
            result = CommitResult(transaction_uid or "", refs)
            result.error = f"association with {called_ae} at {host}:{port} failed: {assoc.error}"
            result.association_error = assoc.error
            return result
        pending = scu.request(assoc, refs, transaction_uid, wait)
        result = pending.result
        log.info("commitment: asked %s to commit %d instance(s), transaction %s", called_ae, len(refs),
                 result.transaction_uid)  # fmt: skip
        if pending.done.is_set() and result.event_type is None:  # the N-ACTION failed (001 T19 L694)
            if assoc.is_established:
                assoc.abort()
            return result
        _await(scu, pending, assoc, server is not None, wait, hold)
        if server is not None and pending.report_request is not None:
            _answered(pending.report_request, server)
        return result
    finally:
        if assoc is not None and assoc.is_established:
            _release(assoc)
        if server is not None:
            server.shutdown()
        scu.close()


def resume(
    state: Any,
    *,
    calling_ae: str = "FERRODICOM",
    listen_port: int,
    bind: str = "0.0.0.0",
    timeout: Optional[float] = 60.0,
) -> list[CommitResult]:
    """After a restart: listens on ``listen_port`` for the reports of the requests ``state`` still has
    outstanding, each until the end of the wait it was sent with; their results, oldest first (those whose
    wait had already ended are recorded as expired, and not returned)."""
    scu = CommitmentSCU(state)
    pendings = scu.outstanding()
    server = None
    try:
        if pendings:
            server = _listen(scu, calling_ae, bind, listen_port, timeout)
        for pending in pendings:
            left = (pending.deadline or 0.0) - time.time()
            if not pending.wait(max(left, 0.0)):
                scu.expire(pending, "no report before the wait ended")
            elif server is not None and pending.report_request is not None:
                _answered(pending.report_request, server)
        return [p.result for p in pendings]
    finally:
        if server is not None:
            server.shutdown()
        scu.close()


def _listen(scu: CommitmentSCU, calling_ae: str, bind: str, port: int, timeout: Optional[float]) -> Any:
    """An acceptor for reports on new associations (and C-ECHO, for the peer's checks)."""
    listener = AE(calling_ae)
    listener.add_service(scu)
    listener.add_supported_context(VERIFICATION)
    listener.network_timeout = timeout
    return listener.start_server((bind, int(port)), block=False)


def _await(scu: CommitmentSCU, pending: Pending, assoc: Association, listening: bool, wait: float, hold: float) -> None:
    """Waits for the report: on ``assoc`` while it is open and ``hold`` lasts (the whole ``wait`` when nobody
    listens for a new association), then on the listener."""
    start = time.monotonic()
    deadline = start + wait
    hold_until = start + (hold if listening else wait)
    while not pending.done.is_set():
        now = time.monotonic()
        if now >= deadline:
            scu.expire(pending, f"no report within {wait:g} s")
            return
        if assoc.is_established:
            if now >= hold_until:
                _release(assoc)
                continue
            pending.wait(min(0.2, hold_until - now, deadline - now))
        elif not listening:
            scu.expire(pending, "the association ended before the report came, and nothing listens for a report "
                                "on a new association")  # fmt: skip
            return
        else:
            pending.wait(deadline - now)


def _answered(request: Any, server: Any, limit: float = 10.0) -> None:
    """Before the listener stops: our answer to the report went out, and the peer had a moment to release."""
    until = time.monotonic() + limit
    while not getattr(request, "answered", True) and time.monotonic() < until:
        time.sleep(0.005)
    while server.active_associations and time.monotonic() < until:
        time.sleep(0.01)


def _release(assoc: Association) -> None:
    failed = assoc.release_or_abort()
    if failed is not None:
        log.info("commitment: release failed (%s); association aborted", failed)
