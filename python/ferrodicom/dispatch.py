"""How a pynetdicom-style handler's answer becomes DIMSE responses, per service (PS3.4 Annexes A, B, C, and
the N- services of PS3.7 §10), so that handlers written for pynetdicom run here unchanged.

Called from Rust once per request (``Dispatcher.__call__``, the link unlocked): builds the :class:`Event`, runs
the bound handler, and answers through the live :class:`ferrodicom._core.Request`: pending responses as the
handler produces them, C-CANCEL checked between them, C-STORE sub-operations on this association (C-GET) or on
a new one to the move destination (C-MOVE). Exceptions in handlers get pynetdicom's statuses (C-STORE 0xC211,
C-FIND 0xC311, C-GET 0xC411, C-MOVE 0xC511, N- services 0x0110).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Callable, NamedTuple, Optional

from pydicom.dataset import Dataset

from ferrodicom import _core, datasets
from ferrodicom.association import Association
from ferrodicom.events import (
    BY_COMMAND_FIELD,
    EVT_C_ECHO,
    EVT_C_FIND,
    EVT_C_GET,
    EVT_C_MOVE,
    EVT_C_STORE,
    EVT_N_ACTION,
    EVT_N_CREATE,
    EVT_N_DELETE,
    EVT_N_EVENT_REPORT,
    EVT_N_GET,
    EVT_N_SET,
    Event,
    EventType,
)
from ferrodicom.status import category

log = logging.getLogger("ferrodicom.dispatch")

#: Command elements a handler's status Dataset may carry into the response (PS3.7 C.4).
STATUS_ELEMENTS = {
    "ErrorComment": 0x0902,
    "ErrorID": 0x0903,
    "OffendingElement": 0x0901,
    "AttributeIdentifierList": 0x1005,
}
#: The sub-operation counts of C-GET/C-MOVE responses (PS3.7 §9.1.3.1, §9.1.4.1).
REMAINING, COMPLETED, FAILED, WARNING = 0x1020, 0x1021, 0x1022, 0x1023
AFFECTED_SOP_INSTANCE_UID = 0x1000
ERROR_COMMENT = 0x0902
#: The largest sub-operation count a response can carry (US).
MAX_SUBOPERATIONS = 65535


class Bound(NamedTuple):
    """A handler bound to an event: its extra arguments, and the abstract syntaxes it serves (None: any)."""

    fn: Callable[..., Any]
    args: list[Any]
    scope: Optional[frozenset[str]] = None


Handlers = dict[EventType, list[Bound]]


def choose(bound: list[Bound], abstract_syntax: str) -> Optional[Bound]:
    """The handler for a request on ``abstract_syntax``: the first whose scope names it (a service's handler,
    for its own SOP classes), else the first with no scope (bound with ``evt_handlers``)."""
    return next((b for b in bound if b.scope is not None and abstract_syntax in b.scope), None) or next(
        (b for b in bound if b.scope is None), None
    )


StoreContexts = Callable[[], list[tuple[str, list[str]]]]


class Associations:
    """The Python :class:`Association` of each link, so that every event of one association sees the same object
    (kept while the association lasts, then dropped)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, Association] = {}
        self._seen: weakref.WeakValueDictionary[int, Association] = weakref.WeakValueDictionary()

    def register(self, assoc: Association, keep: bool = True) -> None:
        with self._lock:
            (self._live if keep else self._seen)[assoc.id] = assoc

    def of(self, core: _core.Association) -> Association:
        with self._lock:
            found = self._live.get(core.id) or self._seen.get(core.id)
            if found is None:
                found = Association(core)
                if core.is_established:
                    self._live[core.id] = found
            return found

    def forget(self, core: _core.Association) -> Optional[Association]:
        with self._lock:
            return self._live.pop(core.id, None)


def _command_value(element: int, value: Any) -> Any:
    """A status Dataset's value as the command encoder takes it: Error Comment has VM 1 and at most 64
    characters (PS3.7 Annex C), so a list is joined; Offending Element and the like are lists of tags."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if element == ERROR_COMMENT:
            return "; ".join(str(v) for v in value)[:64]
        return list(value)
    if element == ERROR_COMMENT:
        return str(value)[:64]
    return value


def status_and_fields(result: Any) -> tuple[int, dict[int, Any]]:
    """A handler's status: an int, or a Dataset with Status and optionally ErrorComment and the like."""
    if isinstance(result, Dataset):
        if "Status" not in result:
            return 0xC001, {0x0902: "the handler's status Dataset has no Status"}
        fields = {el: _command_value(el, result[kw].value) for kw, el in STATUS_ELEMENTS.items() if kw in result}
        if 0x0901 in fields:
            fields[0x0901] = [
                int(t) for t in (fields[0x0901] if isinstance(fields[0x0901], list) else [fields[0x0901]])
            ]
        return int(result.Status), fields
    try:
        return int(result), {}
    except (TypeError, ValueError):
        return 0xC002, {0x0902: "the handler returned an invalid status"}


class Dispatcher:
    """Runs the handlers bound to each intervention event (see the module documentation).

    ``handlers`` is read at each request, so binding a handler for an event already routed takes effect at once.
    ``store_contexts`` gives the presentation contexts proposed to a C-MOVE destination.
    """

    def __init__(
        self,
        handlers: Handlers,
        associations: Associations,
        calling_ae: Callable[[], str],
        store_contexts: StoreContexts,
        open_association: Callable[..., Association],
    ) -> None:
        self.handlers = handlers
        self.associations = associations
        self.calling_ae = calling_ae
        self.store_contexts = store_contexts
        self.open_association = open_association

    def __call__(self, request: _core.Request) -> None:
        evt = BY_COMMAND_FIELD.get(request.command.command_field or -1)
        chosen = choose(self.handlers.get(evt, []), request.context.abstract_syntax) if evt is not None else None
        if evt is None or chosen is None:
            request.respond(0x0211, {0x0902: "no handler for this operation"})
            return
        fn, args = chosen.fn, chosen.args
        event = Event(self.associations.of(request.association), evt, request)
        RUNNERS[evt](self, event, request, lambda: fn(event, *args))

    # --- one response ----------------------------------------------------------------------------------
    def single(self, event: Event, request: _core.Request, call: Callable[[], Any], error_status: int) -> None:
        """C-ECHO, C-STORE, N-DELETE: the handler returns a status."""
        try:
            result = call()
        except Exception:
            log.exception("handler for %s raised", event.event)
            request.respond(error_status, {0x0902: "the handler raised an exception"})
            return
        status, fields = status_and_fields(result)
        request.respond(status, fields)

    def with_dataset(self, event: Event, request: _core.Request, call: Callable[[], Any]) -> None:
        """N-GET, N-SET, N-ACTION, N-CREATE, N-EVENT-REPORT: the handler returns (status, dataset)."""
        try:
            result, ds = call()
        except Exception:
            log.exception("handler for %s raised", event.event)
            request.respond(0x0110, {0x0902: "the handler raised an exception"})
            return
        status, fields = status_and_fields(result)
        if (
            event.event is EVT_N_CREATE
            and category(status) in ("Success", "Warning")
            and request.command.AffectedSOPInstanceUID is None
        ):
            # PS3.7 §10.1.5.1.4: the created instance's UID is required when the request had none.
            if isinstance(ds, Dataset) and "AffectedSOPInstanceUID" in ds:
                fields[AFFECTED_SOP_INSTANCE_UID] = str(ds.AffectedSOPInstanceUID)
                del ds.AffectedSOPInstanceUID
            else:
                request.respond(0x0110, {0x0902: "N-CREATE handler gave no Affected SOP Instance UID"})
                return
        data = None
        if ds is not None and category(status) in ("Success", "Warning"):
            data = datasets.encode(ds, request.context.transfer_syntax)
        request.respond(status, fields, data)

    # --- C-FIND ------------------------------------------------------------------------------------------
    def find(self, event: Event, request: _core.Request, call: Callable[[], Any]) -> None:
        """Pending (FF00/FF01) with an identifier per match, as produced; a final status ends it. A C-CANCEL-RQ
        stops the handler (FE00) if it has not answered the cancel itself (PS3.4 C.4.1.3)."""
        try:
            results = call()
        except Exception:
            log.exception("handler for EVT_C_FIND raised")
            request.respond(0xC311, {0x0902: "the handler raised an exception"})
            return
        if results is None:
            results = iter([(0x0000, None)])
        ts = request.context.transfer_syntax
        iterator = iter(results)
        try:
            while True:
                try:
                    result, identifier = next(iterator)
                except StopIteration:
                    break
                except Exception:
                    log.exception("handler for EVT_C_FIND raised")
                    request.respond(0xC311, {0x0902: "the handler raised an exception"})
                    return
                status, fields = status_and_fields(result)
                if status in (0xFF00, 0xFF01):
                    if identifier is None:
                        request.respond(0xC312, {0x0902: "a pending C-FIND response without an identifier"})
                        return
                    if request.respond(status, fields, datasets.encode(identifier, ts)):  # cancelled meanwhile
                        request.respond(0xFE00)
                        return
                    continue
                if category(status) == "Warning":
                    request.respond(status, fields)
                    continue
                request.respond(status, fields)
                return
        finally:
            _close(iterator)
        request.respond(0x0000)

    # --- C-GET and C-MOVE ----------------------------------------------------------------------------------
    def get(self, event: Event, request: _core.Request, call: Callable[[], Any]) -> None:
        """C-STORE sub-operations on this association (PS3.4 C.4.3.3)."""
        iterator = self._start(request, call, 0xC411)
        if iterator is None:
            return
        count = self._count(request, iterator, 0xC413)
        if count is None:
            return
        assoc = self.associations.of(request.association)
        self._suboperations(request, iterator, count, assoc.send_c_store, 0xC411)

    def move(self, event: Event, request: _core.Request, call: Callable[[], Any]) -> None:
        """C-STORE sub-operations on a new association to the move destination (PS3.4 C.4.2.3)."""
        iterator = self._start(request, call, 0xC511)
        if iterator is None:
            return
        try:
            destination = next(iterator)
        except Exception:
            log.exception("handler for EVT_C_MOVE raised before naming the destination")
            request.respond(0xC514, {0x0902: "the handler did not yield the move destination"})
            _close(iterator)
            return
        if isinstance(destination, Dataset):  # a final status instead of a destination (e.g. A900)
            request.respond(*status_and_fields(destination))
            _close(iterator)
            return
        if destination is None or None in tuple(destination)[:2]:
            request.respond(0xA801, {0x0902: f"move destination {event.move_destination!r} unknown"})
            _close(iterator)
            return
        count = self._count(request, iterator, 0xC513)
        if count is None:
            return
        addr, port = destination[0], int(destination[1])
        kwargs = dict(destination[2]) if len(destination) > 2 and destination[2] else {}
        kwargs.setdefault("ae_title", event.move_destination)
        # A handler that knows what it will send may say which contexts to propose: [(abstract, [ts...])].
        contexts = kwargs.pop("contexts", None) or self.store_contexts()
        store = self.open_association(addr, port, contexts, **kwargs)
        if not store.is_established:
            log.warning("C-MOVE: no association with %s at %s:%s: %s", kwargs["ae_title"], addr, port, store.error)
            request.respond(0xA801, {0x0902: f"cannot associate with {kwargs['ae_title']}"})
            _close(iterator)
            return
        originator = (request.association.info.calling_ae, request.message_id)

        def send(ds: Any) -> Any:
            return store.send_c_store(ds, originator_aet=originator[0], originator_id=originator[1])

        try:
            self._suboperations(request, iterator, count, send, 0xC511)
        finally:
            if store.is_established:
                store.release()

    def _start(self, request: _core.Request, call: Callable[[], Any], error_status: int) -> Optional[Iterator[Any]]:
        try:
            return iter(call())
        except Exception:
            log.exception("C-GET/C-MOVE handler raised")
            request.respond(error_status, {0x0902: "the handler raised an exception"})
            return None

    def _count(self, request: _core.Request, iterator: Iterator[Any], error_status: int) -> Optional[int]:
        """The handler's number of sub-operations (PS3.4 C.4.2.1.3); 0 answers Success at once; a status Dataset
        instead of the number is the final response."""
        try:
            first = next(iterator)
            if isinstance(first, Dataset):  # a final status instead of a number (e.g. A900, A701)
                request.respond(*status_and_fields(first))
                _close(iterator)
                return None
            count = int(first)
        except Exception:
            log.exception("the handler did not yield a number of sub-operations")
            request.respond(error_status, {0x0902: "the handler did not yield a number of sub-operations"})
            _close(iterator)
            return None
        if count < 1:
            request.respond(0x0000, {REMAINING: 0, COMPLETED: 0, FAILED: 0, WARNING: 0})
            _close(iterator)
            return None
        if count > MAX_SUBOPERATIONS:
            # pynetdicom's codes: C-GET 0xC416, C-MOVE 0xC516 (the handler's error status + 5).
            request.respond(error_status + 5, {0x0902: f"{count} sub-operations: at most {MAX_SUBOPERATIONS}"})
            _close(iterator)
            return None
        return count

    def _suboperations(
        self,
        request: _core.Request,
        iterator: Iterator[Any],
        count: int,
        send: Callable[[Any], Any],
        error_status: int,
    ) -> None:
        """Sends each yielded data set as a C-STORE sub-operation, a pending response after each with the counts
        (PS3.4 C.4.2.2, C.4.3.2), and the final response: 0000 all completed, B000 some failed or warned, A702
        all failed, FE00 cancelled; with a Failed SOP Instance UID List when any failed."""
        ts = request.context.transfer_syntax
        remaining, completed, failed, warned = count, 0, 0, 0
        failed_uids: list[str] = []

        def counts(with_remaining: bool = True) -> dict[int, int]:
            c = {COMPLETED: completed, FAILED: failed, WARNING: warned}
            if with_remaining:
                c[REMAINING] = remaining
            return c

        def failed_list() -> bytes:
            ds = Dataset()
            ds.FailedSOPInstanceUIDList = failed_uids
            return datasets.encode(ds, ts)

        try:
            while remaining > 0:
                if request.is_cancelled:
                    request.respond(0xFE00, counts(), failed_list())
                    return
                try:
                    result, ds = next(iterator)
                except StopIteration:
                    break
                except Exception:
                    log.exception("C-GET/C-MOVE handler raised")
                    request.respond(error_status, {0x0902: "the handler raised an exception", **counts(False)})
                    return
                status, fields = status_and_fields(result)
                kind = category(status)
                if kind == "Cancel":
                    request.respond(0xFE00, counts(), failed_list())
                    return
                if kind in ("Failure", "Warning"):
                    failed += remaining
                    request.respond(status, {**fields, **counts(False), FAILED: failed}, failed_list())
                    return
                if kind == "Success":
                    break
                try:
                    store_status = int(send(ds))
                except Exception as exc:
                    log.warning("C-STORE sub-operation for %s failed: %s", _instance_uid(ds) or ds, exc)
                    store_status = 0xC000
                remaining -= 1
                store_kind = category(store_status)
                if store_kind == "Success":
                    completed += 1
                elif store_kind == "Warning":
                    warned += 1
                else:
                    failed += 1
                    failed_uids.append(_instance_uid(ds))  # read from the file only when it failed
                if remaining > 0:
                    request.respond(0xFF00, counts())
        finally:
            _close(iterator)
        if failed == 0 and warned == 0:
            request.respond(0x0000, counts(False))
        elif failed == count:
            request.respond(0xA702, counts(False), failed_list())
        else:
            request.respond(0xB000, counts(False), failed_list())


def _instance_uid(ds: Any) -> str:
    if isinstance(ds, Dataset):
        return str(getattr(ds, "SOPInstanceUID", ""))
    if isinstance(ds, (str, os.PathLike)):
        try:
            return _core.peek_part10(ds)[1]
        except Exception:
            return ""
    return ""


def _close(iterator: Any) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


#: The runner of each intervention event.
RUNNERS: dict[EventType, Callable[[Dispatcher, Event, _core.Request, Callable[[], Any]], None]] = {
    EVT_C_ECHO: lambda d, e, r, c: d.single(e, r, c, 0x0000),
    EVT_C_STORE: lambda d, e, r, c: d.single(e, r, c, 0xC211),
    EVT_N_DELETE: lambda d, e, r, c: d.single(e, r, c, 0x0110),
    EVT_C_FIND: Dispatcher.find,
    EVT_C_GET: Dispatcher.get,
    EVT_C_MOVE: Dispatcher.move,
    EVT_N_GET: Dispatcher.with_dataset,
    EVT_N_SET: Dispatcher.with_dataset,
    EVT_N_ACTION: Dispatcher.with_dataset,
    EVT_N_CREATE: Dispatcher.with_dataset,
    EVT_N_EVENT_REPORT: Dispatcher.with_dataset,
}
