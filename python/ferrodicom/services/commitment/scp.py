"""Storage Commitment Push Model SCP (PS3.4 Annex J): ``ae.add_service(CommitmentSCP(archive, ae))``.

An N-ACTION (Storage Commitment Request) is checked, recorded durably (:mod:`.transactions`) and answered
Success; a worker thread then checks each referenced instance against the archive (:mod:`.checks`), waits up
to ``wait`` seconds for those not yet received, and sends the result (N-EVENT-REPORT, event type 1 when every
instance is committed, 2 with a Failed SOP Sequence otherwise).

Where the report goes (``delivery``, and per peer ``delivery_by_peer``, by the requestor's AE title), as the
seeds allow:

``"same"`` (default)
    on the requesting association if it is still open when the result is ready (PACS-IW's "default behavior",
    003 L3491-3493; PS3.4 J.3.3.1.2 note 1), after its N-ACTION response; else, or if sending there fails or
    the peer answers anything but Success there (Xeleris takes no report on its own association, 002 L1025;
    pynetdicom answers 0110 without a handler there), on a new association;
``"new"``
    always on a new association (PACS-IW's other description, 003 L3276-3284; what Xeleris needs, 002 L1025).

A new association goes to the requestor's AE title looked up in the AE's address book (``ae.peers``), proposing
the SCP role for the SOP class through SCP/SCU Role Selection, in Implicit VR Little Endian (003 L3344-3358,
L3372-3376; PS3.4 J.3.3.1.3 note). A peer that does not accept the role gets no report there (003 L3374-3376:
the report would come from the SOP class's user, PS3.7 D.3.3.4): that counts as a failed attempt. The reports of
several requests for one peer go on one association (003 L3333-3334). Answers (003 Table 2.3.3-6):
0000 delivered, 0107 delivered with a warning logged, any other status a permanent failure logged and not sent
again (L3445-3456). A connection that cannot be made (refused, rejected, aborted, peer not in the address book)
is tried again every ``retry_interval`` seconds, ``retries`` times (003 L3237-3239, L3456-3457), then given up
and logged (L565-568 loses it at once: ``retries=0``).

Waiting (003 L561-565, L3600-3606, chosen over L570-572): instances not in the archive yet are looked for
again whenever the storage service reports a new instance (:meth:`CommitmentSCP.instance_stored`) and every
``recheck`` seconds, until ``wait`` has passed since the request; those still missing then fail with 0112 (no
such object instance). ``wait=0`` reports at once.

A node killed at any point loses nothing it answered: at start the open transactions are read back, the
waiting ones wait on until their deadline, and the ready ones are reported on a new association.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Optional

from pydicom.dataset import Dataset

from ferrodicom import _core
from ferrodicom.ae import AE, ContextSpec, build_role
from ferrodicom.archive import check_uid
from ferrodicom.association import (
    AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID,
    COMMAND_FIELD,
    EVENT_TYPE_ID,
    N_EVENT_REPORT,
    Association,
)
from ferrodicom.events import EVT_N_ACTION, Event
from ferrodicom.services.commitment import checks, messages
from ferrodicom.services.commitment import statuses as st
from ferrodicom.services.commitment.transactions import FILE_NAME, Transaction, TransactionStore
from ferrodicom.status import meaning
from ferrodicom.uids import (
    DEFAULT_TRANSFER_SYNTAXES,
    IMPLICIT_VR_LE,
    STORAGE_COMMITMENT_PUSH_MODEL,
    STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
)

log = logging.getLogger("ferrodicom.commitment")

DELIVERIES = ("same", "new")
#: Defaults of ``ferrodicom serve`` (see the module documentation and README).
DEFAULT_WAIT = 60.0
DEFAULT_RETRIES = 10
DEFAULT_RETRY_INTERVAL = 60.0
#: Finished transactions are kept this long (a Transaction UID seen in that time is a duplicate, 0131).
KEEP_SECONDS = 7 * 24 * 3600.0
#: How long a report on the requesting association waits for the N-ACTION response to have gone out.
RESPONSE_WAIT = 30.0
#: How long past the wait an instance being stored when it ended is waited for.
IN_FLIGHT_GRACE = 30.0


class Closing(Exception):
    pass


class CommitmentSCP:
    """The Storage Commitment Push Model SCP over an :class:`~ferrodicom.archive.Archive` (see the module
    documentation). ``ae`` is the AE it serves in: its title calls the peers, its address book finds them."""

    def __init__(
        self,
        archive: Any,
        ae: AE,
        *,
        delivery: str = "same",
        delivery_by_peer: Optional[dict[str, str]] = None,
        wait: float = DEFAULT_WAIT,
        retries: int = DEFAULT_RETRIES,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        recheck: float = 2.0,
        keep: float = KEEP_SECONDS,
    ) -> None:
        by_peer = dict(delivery_by_peer or {})
        for value in [delivery, *by_peer.values()]:
            if value not in DELIVERIES:
                raise ValueError(f"delivery must be one of {', '.join(DELIVERIES)}, not {value!r}")
        if wait < 0 or retries < 0 or retry_interval < 0:
            raise ValueError("wait, retries and retry_interval cannot be negative")
        self.archive = archive
        self.ae = ae
        self.delivery = delivery
        self.delivery_by_peer = by_peer
        self.wait = float(wait)
        self.retries = int(retries)
        self.retry_interval = float(retry_interval)
        self.recheck = float(recheck)
        self.keep = float(keep)
        self.store = TransactionStore(Path(archive.root) / FILE_NAME)
        self._cv = threading.Condition()
        self._open: dict[int, Transaction] = {}
        #: SOP Instance UIDs some waiting transaction still looks for, and those reported stored meanwhile.
        self._wanted: set[str] = set()
        self._arrived: set[str] = set()
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        for txn in self.store.open_transactions():
            self._open[txn.id] = txn
        if self._open:
            log.warning("commitment: %d transaction(s) from before the restart still to report on", len(self._open))

    # --- the service protocol of AE.add_service ------------------------------------------------------
    def contexts(self) -> list[ContextSpec]:
        return [ContextSpec(STORAGE_COMMITMENT_PUSH_MODEL, list(DEFAULT_TRANSFER_SYNTAXES))]

    def handlers(self) -> list[tuple[Any, Any]]:
        return [(EVT_N_ACTION, self.on_n_action)]

    def install(self, services: Any) -> None:
        """Starts the worker when a server starts (no Rust side of its own)."""
        self.start()

    def start(self) -> None:
        with self._cv:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="ferrodicom-commitment", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stops the worker (open transactions stay recorded, and are taken up at the next start)."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        self.store.close()

    # --- news from the storage service ---------------------------------------------------------------
    def instance_stored(self, sop_instance_uid: str) -> None:
        """An instance was stored: a request waiting for it is looked at again at once."""
        if sop_instance_uid in self._wanted:
            with self._cv:
                self._arrived.add(sop_instance_uid)
                self._cv.notify_all()

    def on_stored(self, instance: Any, status: int) -> None:
        """For :class:`~ferrodicom.services.storage.StorageSCP`'s ``on_stored``."""
        self.instance_stored(instance.sop_instance_uid)

    def transactions(self) -> list[dict[str, Any]]:
        """Every recorded transaction (open and finished), as rows."""
        return self.store.rows()

    # --- N-ACTION -------------------------------------------------------------------------------------
    def on_n_action(self, event: Event) -> tuple[Any, None]:
        """Checks the request (003 Table 2.3.3-10), records it durably and answers; the report follows."""
        request = event.request
        if event.action_type != st.ACTION_REQUEST_COMMITMENT:
            return _status(st.ACTION_NO_SUCH_ACTION_TYPE, f"Action Type ID {event.action_type}: only 1 is defined")
        requested = (request.RequestedSOPInstanceUID or "").strip()
        if requested != STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE:
            return _status(st.ACTION_NO_SUCH_SOP_INSTANCE, f"not the well-known instance: {requested[:30]}")
        try:
            info = messages.action_info(_request_data(event), event.context.transfer_syntax)
        except messages.Unreadable as exc:
            return _status(st.ACTION_PROCESSING_FAILURE, f"cannot read the action information: {exc}")
        problem = _problem(info)
        if problem is not None:
            return _status(*problem)
        assert info.transaction_uid is not None and info.items is not None
        assoc = event.assoc
        requestor = assoc.requestor
        now = time.time()
        txn = Transaction(
            info.transaction_uid,
            requestor.ae_title,
            assoc.acceptor.ae_title,
            info.items,
            now,
            now + self.wait,
            f"{requestor.address}:{requestor.port}" if requestor.address else None,
        )
        txn.assoc, txn.request = assoc, getattr(event, "_request", None)
        try:
            self._accept(txn)
        except Closing:
            return _status(st.ACTION_RESOURCE_LIMITATION, "the node is shutting down")
        except sqlite3.Error as exc:
            log.error("commitment: cannot record %s: %s", txn.describe(), exc)
            return _status(st.ACTION_PROCESSING_FAILURE, f"cannot record the request: {exc}")
        return st.ACTION_SUCCESS, None

    def _accept(self, txn: Transaction) -> None:
        with self._cv:
            if self._closed:
                raise Closing()
            for other in self._open.values():
                if other.transaction_uid == txn.transaction_uid:
                    if other.calling_ae == txn.calling_ae and other.items == txn.items:
                        # The same request again (its response lost?): one transaction, reported on the newest
                        # association.
                        other.assoc, other.request = txn.assoc, txn.request
                        log.info("commitment: %s requested again; reported once", other.describe())
                        return
                    txn.duplicate = True
        if txn.duplicate or self.store.known(txn.transaction_uid):
            txn.duplicate = True
            txn.deadline = txn.received_at
            log.warning("commitment: Transaction UID %s of %s is already in use: every instance fails with 0131",
                        txn.transaction_uid, txn.calling_ae)  # fmt: skip
        self.store.add(txn)
        log.info("commitment: %s received", txn.describe())
        with self._cv:
            if self._closed:
                return  # recorded: taken up at the next start
            self._open[txn.id] = txn
            self._cv.notify_all()

    # --- the worker -----------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            purged = self.store.purge(time.time() - self.keep)
            if purged:
                log.info("commitment: forgot %d transaction(s) finished more than %.0f days ago", purged,
                         self.keep / 86400)  # fmt: skip
        except sqlite3.Error as exc:
            log.warning("commitment: cannot purge old transactions: %s", exc)
        while True:
            with self._cv:
                while not self._closed:
                    timeout = self._next_wake(time.time())
                    if timeout <= 0 or self._arrived:
                        break
                    self._cv.wait(timeout)
                if self._closed:
                    return
                arrived, self._arrived = self._arrived, set()
                now = time.time()
                to_check = [t for t in self._open.values() if t.state == "waiting" and _due(t, now, arrived)]
            for txn in to_check:
                self._check(txn)
            now = time.time()
            with self._cv:
                ready = [t for t in self._open.values() if t.state == "ready" and t.next_attempt <= now]
            if ready:
                self._deliver(ready)

    def _next_wake(self, now: float) -> float:
        times = [60.0]
        for t in self._open.values():
            if t.state == "waiting":
                times.append(min(t.next_check, t.deadline) - now)
            elif t.state == "ready":
                times.append(t.next_attempt - now)
        return min(times)

    def _check(self, txn: Transaction) -> None:
        """Looks for the instances not yet resolved; once every outcome is known, the report is ready."""
        now = time.time()
        todo = txn.unresolved()
        if txn.duplicate:
            for k in range(len(txn.items)):
                txn.outcomes[k] = st.REASON_DUPLICATE_TRANSACTION_UID
        elif todo:
            try:
                found = checks.check_instances(self.archive, [txn.items[k] for k in todo])
            except Exception as exc:  # noqa: BLE001 - the archive's errors (closed, index unreadable)
                log.warning("commitment: cannot look up %s in the archive: %s", txn.describe(), exc)
                found = [checks.MISSING if now < txn.deadline else st.REASON_PROCESSING_FAILURE] * len(todo)
            for k, outcome in zip(todo, found):
                if outcome not in (checks.MISSING, checks.IN_FLIGHT):
                    txn.outcomes[k] = outcome
            flying = [k for k, outcome in zip(todo, found) if outcome == checks.IN_FLIGHT]
        else:
            flying = []
        missing = txn.unresolved()
        if missing and (now < txn.deadline or (flying and now < txn.deadline + IN_FLIGHT_GRACE)):
            txn.next_check = now + (min(self.recheck, 0.05) if flying else self.recheck)
            with self._cv:
                self._wanted.update(txn.items[k][1] for k in missing)
            return
        for k in missing:
            txn.outcomes[k] = st.REASON_NO_SUCH_OBJECT_INSTANCE
        if self.archive.durability != "full" and any(o == 0 for o in txn.outcomes):
            checks.sync_filesystem(str(self.archive.root))
        txn.state, txn.next_attempt = "ready", now
        try:
            self.store.resolve(txn)
        except sqlite3.Error as exc:  # reported anyway; after a restart it would be checked again
            log.error("commitment: cannot record the result of %s: %s", txn.describe(), exc)
        failed = txn.failed()
        first = f" (first: {failed[0][1]}, {st.failure_reason_meaning(failed[0][2])})" if failed else ""
        log.info("commitment: %s: %d committed, %d failed%s", txn.describe(), len(txn.items) - len(failed),
                 len(failed), first)  # fmt: skip
        with self._cv:
            self._wanted = {u for t in self._open.values() if t.state == "waiting" for u in _missing_uids(t)}

    # --- delivery -------------------------------------------------------------------------------------
    def _deliver(self, txns: list[Transaction]) -> None:
        by_peer: dict[str, list[Transaction]] = {}
        for txn in txns:
            if self._closed:
                return
            policy = self.delivery_by_peer.get(txn.calling_ae, self.delivery)
            if policy == "same" and txn.assoc is not None and self._on_same(txn):
                continue
            txn.assoc = txn.request = None
            by_peer.setdefault(txn.calling_ae, []).append(txn)
        for title, group in by_peer.items():
            if self._closed:
                return
            self._on_new(title, group)

    def _on_same(self, txn: Transaction) -> bool:
        """Sends the report on the requesting association; False when it must go on a new one."""
        assoc: Association = txn.assoc
        request = txn.request
        until = time.monotonic() + RESPONSE_WAIT
        while request is not None and not request.answered and assoc.is_established and time.monotonic() < until:
            time.sleep(0.001)  # the report follows the N-ACTION response (PS3.4 J.3.3)
        if not assoc.is_established:
            return False
        try:
            status = self._send(assoc, txn)
        except (_core.DicomError, OSError) as exc:
            log.info("commitment: report of %s on the requesting association failed (%s); trying a new one",
                     txn.describe(), exc)  # fmt: skip
            return False
        if status not in st.DELIVERED_STATUSES:
            log.info("commitment: %s answered 0x%04X to the report of %s on its own association; trying a new one",
                     txn.calling_ae, status, txn.describe())  # fmt: skip
            return False
        self._finish(txn, status, "same")
        return True

    def _on_new(self, title: str, txns: list[Transaction]) -> None:
        """Sends the reports for one peer on one new association, proposing the SCP role."""
        peer = self.ae.peer(title)
        if peer is None:
            for txn in txns:
                self._retry(txn, f"{title} is not in the address book (add it: serve --peer {title}=HOST:PORT, or "
                                 "[[peers]] in the configuration)")  # fmt: skip
            return
        ae = AE(self.ae.ae_title)
        ae.acse_timeout, ae.dimse_timeout, ae.connection_timeout = (
            self.ae.acse_timeout, self.ae.dimse_timeout, self.ae.connection_timeout)  # fmt: skip
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL, IMPLICIT_VR_LE)
        role = build_role(STORAGE_COMMITMENT_PUSH_MODEL, scu_role=False, scp_role=True)
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, ext_neg=[role])
        if not assoc.is_established:
            for txn in txns:
                self._retry(txn, f"association with {title} at {peer.host}:{peer.port} failed: {assoc.error}")
            return
        try:
            if not any(c.as_scp for c in assoc.accepted_contexts):
                for txn in txns:
                    self._retry(txn, f"{title} did not accept the SCP role for Storage Commitment (SCP/SCU Role "
                                     "Selection), so it cannot take the report on a new association")  # fmt: skip
                return
            for txn in txns:
                if self._closed or not assoc.is_established:
                    self._retry(txn, "the association ended before the report was sent")
                    continue
                try:
                    status = self._send(assoc, txn)
                except (_core.DicomError, OSError) as exc:
                    self._retry(txn, f"sending to {title} failed: {exc}")
                    continue
                self._finish(txn, status, "new")
        finally:
            if assoc.is_established:
                try:
                    assoc.release()
                except (_core.DicomError, OSError) as exc:
                    log.info("commitment: release of the association with %s failed: %s", title, exc)

    def _send(self, assoc: Association, txn: Transaction) -> int:
        """One N-EVENT-REPORT with the result; the peer's status."""
        ctx = assoc.context_for(STORAGE_COMMITMENT_PUSH_MODEL, role=None)
        data = messages.encode_result(txn.transaction_uid, txn.committed(), txn.failed(), ctx.transfer_syntax)
        command = {
            COMMAND_FIELD: N_EVENT_REPORT,
            AFFECTED_SOP_CLASS_UID: STORAGE_COMMITMENT_PUSH_MODEL,
            AFFECTED_SOP_INSTANCE_UID: STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
            EVENT_TYPE_ID: txn.event_type,
        }
        # The AE's DIMSE timeout, also on the requesting association (whose links wait --network-timeout, or
        # forever with 0): a peer that never answers the report must not hold the worker.
        response, _ = assoc.core.request(ctx.context_id, command, data, timeout=self.ae.dimse_timeout or 60.0)
        return 0xC000 if response.status is None else int(response.status)

    def _finish(self, txn: Transaction, status: int, via: str) -> None:
        if status in st.DELIVERED_STATUSES:
            txn.state, txn.error = "delivered", None
            level = logging.WARNING if status else logging.INFO
            log.log(level, "commitment: %s reported (event type %d) on %s association%s", txn.describe(),
                    txn.event_type, "the requesting" if via == "same" else "a new",
                    f"; the peer answered 0x{status:04X} ({meaning(status)})" if status else "")  # fmt: skip
        else:
            txn.state, txn.error = "failed", f"the peer answered 0x{status:04X} ({meaning(status)})"
            log.error("commitment: report of %s refused: %s; not sent again", txn.describe(), txn.error)
        self._close(txn, via, status)

    def _retry(self, txn: Transaction, error: str) -> None:
        txn.attempts += 1
        txn.error = error
        if txn.attempts > self.retries:
            txn.state = "failed"
            log.error("commitment: report of %s not delivered after %d attempt(s): %s", txn.describe(),
                      txn.attempts, error)  # fmt: skip
            self._close(txn, None, None)
            return
        txn.next_attempt = time.time() + self.retry_interval
        log.warning("commitment: report of %s not delivered (%s); trying again in %.0f s (%d of %d)",
                    txn.describe(), error, self.retry_interval, txn.attempts, self.retries)  # fmt: skip
        try:
            self.store.attempt_failed(txn)
        except sqlite3.Error as exc:
            log.error("commitment: cannot record the attempt for %s: %s", txn.describe(), exc)

    def _close(self, txn: Transaction, via: Optional[str], status: Optional[int]) -> None:
        try:
            self.store.finish(txn, via, status)
        except sqlite3.Error as exc:
            log.error("commitment: cannot record the end of %s: %s", txn.describe(), exc)
        with self._cv:
            self._open.pop(txn.id, None)
        txn.assoc = txn.request = None


def _due(txn: Transaction, now: float, arrived: set[str]) -> bool:
    """Whether a waiting transaction is to be looked at again now."""
    if now >= txn.next_check or now >= txn.deadline:
        return True
    return bool(arrived) and any(txn.items[k][1] in arrived for k in txn.unresolved())


def _missing_uids(txn: Transaction) -> list[str]:
    return [txn.items[k][1] for k in txn.unresolved()]


def _request_data(event: Event) -> Optional[bytes]:
    """The N-ACTION's data set as received. ``Event`` decodes it with pydicom only (``action_information``);
    its raw bytes are on the platform's request object, read here to walk a 10,000-item sequence in
    milliseconds (see :mod:`.messages`)."""
    request = getattr(event, "_request", None)
    if request is not None:
        return request.data
    ds = event.action_information
    from ferrodicom import datasets

    return datasets.encode(ds, event.context.transfer_syntax)


def _problem(info: messages.ActionInfo) -> Optional[tuple[int, str]]:
    """Why the request cannot be taken (003 Table 2.3.3-10), or None."""
    if info.transaction_uid is None:
        return st.ACTION_MISSING_ATTRIBUTE, "no Transaction UID (0008,1195)"
    if info.items is None:
        return st.ACTION_MISSING_ATTRIBUTE, "no Referenced SOP Sequence (0008,1199)"
    if not info.transaction_uid:
        return st.ACTION_MISSING_ATTRIBUTE_VALUE, "Transaction UID (0008,1195) is empty"
    if not info.items:
        return st.ACTION_MISSING_ATTRIBUTE_VALUE, "Referenced SOP Sequence (0008,1199) has no item"
    for k, (cls, inst) in enumerate(info.items, start=1):
        if not cls or not inst:
            what = "Referenced SOP Class UID (0008,1150)" if not cls else "Referenced SOP Instance UID (0008,1155)"
            return st.ACTION_MISSING_ATTRIBUTE_VALUE, f"item {k}: no {what}"
    ok, why = check_uid(info.transaction_uid)
    if not ok:
        return st.ACTION_INVALID_ARGUMENT_VALUE, f"Transaction UID: {why}"
    for k, (cls, inst) in enumerate(info.items, start=1):
        for what, uid in (("SOP Class", cls), ("SOP Instance", inst)):
            ok, why = check_uid(uid)
            if not ok:
                return st.ACTION_INVALID_ARGUMENT_VALUE, f"item {k}: Referenced {what} UID: {why}"
    return None


def _status(status: int, comment: str) -> tuple[Dataset, None]:
    """A status with its Error Comment (0000,0902, at most 64 characters)."""
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment if len(comment) <= 64 else comment[:61] + "..."
    return ds, None
