"""The Application Entity: requested and supported presentation contexts, SCU and SCP roles.

Close to pynetdicom's ``AE``: ``ae.associate(host, port, ae_title=...)`` returns an
:class:`~ferrodicom.association.Association`; ``ae.start_server((host, port), evt_handlers=...)``
runs an SCP whose associations are negotiated and driven in Rust, calling Python once per DIMSE
request (PS3.7 §9) and never per PDU.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence, Union

from ferrodicom import _core
from ferrodicom.association import Association
from ferrodicom.events import (
    INTERVENTIONS,
    NOTIFICATIONS,
    AssociationInfo,
    Event,
    EventType,
    Handler,
    PresentationContext,
)
from ferrodicom.uids import DEFAULT_TRANSFER_SYNTAXES, UNCOMPRESSED, VERIFICATION

log = logging.getLogger("ferrodicom")

EventHandlers = Iterable[Union[tuple[EventType, Handler], tuple[EventType, Handler, list]]]


def _validate_ae_title(title: str) -> str:
    t = title.strip(" ")
    if not t or len(title) > 16 or any(ord(c) < 0x20 or ord(c) > 0x7E or c == "\\" for c in title):
        raise ValueError(f"invalid AE title {title!r}: 1-16 printable ASCII characters, no backslash (PS3.5 6.2)")
    return t


@dataclass
class ContextSpec:
    """A presentation context this AE requests or supports."""

    abstract_syntax: str
    transfer_syntaxes: list[str] = field(default_factory=lambda: list(DEFAULT_TRANSFER_SYNTAXES))
    #: Supported: may the peer act as SCU (we as SCP)? Requested: propose role selection (scu, scp).
    scp_role: bool = True
    scu_role: bool = False
    roles: Optional[tuple[bool, bool]] = None


class AE:
    """A DICOM Application Entity."""

    def __init__(self, ae_title: str = "FERRODICOM") -> None:
        self._ae_title = _validate_ae_title(ae_title)
        self.requested_contexts: list[ContextSpec] = []
        self.supported_contexts: list[ContextSpec] = []
        #: Largest PDU we receive (0 = unlimited); advertised in A-ASSOCIATE (PS3.8 D.1).
        self.maximum_pdu_size = 262_144
        #: Concurrent associations the server accepts; beyond it, A-ASSOCIATE-RJ 2/3/2.
        self.maximum_associations = 64
        self.acse_timeout: Optional[float] = 30.0
        self.dimse_timeout: Optional[float] = 60.0
        self.connection_timeout: Optional[float] = 30.0
        #: Server side: how long an association may wait for the next PDU, between messages or inside a data
        #: set, before it is aborted (as pynetdicom's default; None: forever, as DCMTK's storescp).
        self.network_timeout: Optional[float] = 60.0
        #: ARTIM (PS3.8 §9.1.5): wait for A-ASSOCIATE-RQ, and for the peer to close.
        self.artim_timeout: float = 30.0
        #: Reject (1/1/7) requests whose called AE title is not ours.
        self.require_called_aet = False
        #: When non-empty, only these calling AE titles are accepted (else 1/1/3).
        self.require_calling_aet: list[str] = []
        self.implementation_class_uid: str = _core.IMPLEMENTATION_CLASS_UID
        self.implementation_version_name: Optional[str] = _core.IMPLEMENTATION_VERSION_NAME
        self._servers: list[Server] = []

    @property
    def ae_title(self) -> str:
        return self._ae_title

    @ae_title.setter
    def ae_title(self, value: str) -> None:
        self._ae_title = _validate_ae_title(value)

    # --- contexts ----------------------------------------------------------------------------
    def add_requested_context(
        self,
        abstract_syntax: str,
        transfer_syntax: Union[str, Sequence[str]] = DEFAULT_TRANSFER_SYNTAXES,
        roles: Optional[tuple[bool, bool]] = None,
    ) -> None:
        """Proposes ``abstract_syntax`` with these transfer syntaxes (PS3.8 §9.3.2.2); ``roles``
        = (as SCU, as SCP) sends SCP/SCU Role Selection (PS3.7 D.3.3.4)."""
        ts = [transfer_syntax] if isinstance(transfer_syntax, str) else list(transfer_syntax)
        if len(self.requested_contexts) >= 128:
            raise ValueError("at most 128 presentation contexts can be requested (PS3.8 §9.3.2.2)")
        self.requested_contexts.append(ContextSpec(abstract_syntax, ts, roles=roles))

    def add_supported_context(
        self,
        abstract_syntax: str,
        transfer_syntax: Union[str, Sequence[str]] = DEFAULT_TRANSFER_SYNTAXES,
        scu_role: Optional[bool] = None,
        scp_role: Optional[bool] = None,
    ) -> None:
        """Accepts ``abstract_syntax`` in these transfer syntaxes. ``scp_role`` (default True):
        we act as SCP; ``scu_role`` (default False): we may act as SCU when the requestor asks
        to be SCP through role selection."""
        ts = [transfer_syntax] if isinstance(transfer_syntax, str) else list(transfer_syntax)
        for c in self.supported_contexts:
            if c.abstract_syntax == abstract_syntax:
                c.transfer_syntaxes = list(dict.fromkeys(c.transfer_syntaxes + ts))
                return
        self.supported_contexts.append(
            ContextSpec(abstract_syntax, ts, scp_role=True if scp_role is None else scp_role, scu_role=bool(scu_role))
        )

    # --- SCU ---------------------------------------------------------------------------------
    def associate(
        self,
        addr: str,
        port: int,
        ae_title: str = "ANY-SCP",
        max_pdu: Optional[int] = None,
        contexts: Optional[list[ContextSpec]] = None,
        user_identity: Optional[tuple[int, bool, bytes, bytes]] = None,
        ext_neg: Optional[list[tuple[str, bytes]]] = None,
    ) -> Association:
        """Requests an association (PS3.8 §7.1). Returns an Association whether or not it was
        established; on rejection, ``assoc.rejection`` holds (result, source, reason)."""
        ctxs = contexts if contexts is not None else self.requested_contexts
        if not ctxs:
            raise ValueError("no requested presentation contexts: call add_requested_context() first")
        try:
            core = _core.associate(
                addr,
                int(port),
                self._ae_title,
                _validate_ae_title(ae_title),
                [(c.abstract_syntax, c.transfer_syntaxes, c.roles) for c in ctxs],
                max_pdu=self.maximum_pdu_size if max_pdu is None else max_pdu,
                implementation_class_uid=self.implementation_class_uid,
                implementation_version_name=self.implementation_version_name or "",
                user_identity=user_identity,
                extended_negotiation=ext_neg,
                acse_timeout=self.acse_timeout,
                dimse_timeout=self.dimse_timeout,
                connect_timeout=self.connection_timeout,
            )
        except (_core.DicomError, OSError) as exc:
            log.info("association with %s:%s (%s) failed: %s", addr, port, ae_title, exc)
            return Association(None, exc)
        return Association(core)

    # --- SCP ---------------------------------------------------------------------------------
    def start_server(
        self,
        address: tuple[str, int],
        block: bool = True,
        evt_handlers: Optional[EventHandlers] = None,
        ae_title: Optional[str] = None,
        storage: Optional[Any] = None,
        store_transfer_syntax: Optional[str] = None,
    ) -> Optional[Server]:
        """Starts an SCP on ``address`` (port 0 picks a free port, see ``server.port``). With
        ``block=True`` serves until interrupted; otherwise returns the running :class:`Server`.

        ``storage`` (a :class:`ferrodicom.services.storage.StorageSCP`) makes C-STORE data sets stream
        to its archive, converted to ``store_transfer_syntax`` if given (uncompressed data only)."""
        if not self.supported_contexts:
            raise ValueError("no supported presentation contexts: call add_supported_context() first")
        server = Server(
            self, address, list(evt_handlers or []), ae_title or self._ae_title, storage, store_transfer_syntax
        )
        self._servers.append(server)
        if block:
            try:
                server.serve_forever()
            finally:
                server.shutdown()
            return None
        server.start()
        return server

    def shutdown(self) -> None:
        """Stops every server this AE started."""
        for s in self._servers:
            s.shutdown()
        self._servers.clear()


class Server:
    """A running SCP (see :meth:`AE.start_server`)."""

    def __init__(
        self,
        ae: AE,
        address: tuple[str, int],
        handlers: list,
        ae_title: str,
        storage: Optional[Any] = None,
        store_transfer_syntax: Optional[str] = None,
    ) -> None:
        self._handlers: dict[EventType, list[tuple[Handler, list]]] = {}
        for h in handlers:
            evt, fn, *args = h
            self._handlers.setdefault(evt, []).append((fn, args[0] if args else []))
        routed = sorted(field for field, evt in INTERVENTIONS.items() if evt in self._handlers)
        notify = any(evt in self._handlers for evt in NOTIFICATIONS.values())
        self._closed = False
        self._lock = threading.Lock()
        store_kw: dict[str, Any] = {}
        if store_transfer_syntax is not None and store_transfer_syntax not in UNCOMPRESSED:
            raise ValueError(
                f"store_transfer_syntax {store_transfer_syntax!r} is not an uncompressed transfer syntax "
                f"({', '.join(UNCOMPRESSED)}); compressed data sets are always stored as received"
            )
        if storage is not None:
            from ferrodicom.services.storage import index_tags

            store_kw = dict(
                store_handler=storage.store,
                store_prepare=getattr(storage, "prepare", None),
                storage_dir=str(storage.archive.incoming_dir),
                store_transfer_syntax=store_transfer_syntax,
                fsync=storage.archive.durability == "full",
                writeback=storage.archive.durability == "full",
                journal=getattr(storage.archive, "journal", None),
                extract=index_tags(),
            )
        self._core = _core.Server(
            address[0],
            int(address[1]),
            ae_title,
            [(c.abstract_syntax, c.transfer_syntaxes, c.scp_role, c.scu_role) for c in ae.supported_contexts],
            handler=self._dispatch if routed else None,
            events=self._notify if notify else None,
            routed=routed,
            max_pdu=ae.maximum_pdu_size,
            require_called_aet=ae.require_called_aet,
            allowed_calling_aets=list(ae.require_calling_aet) or None,
            max_associations=ae.maximum_associations,
            implementation_class_uid=ae.implementation_class_uid,
            implementation_version_name=ae.implementation_version_name or "",
            artim_timeout=ae.artim_timeout,
            acse_timeout=ae.acse_timeout,
            dimse_timeout=ae.network_timeout,
            **store_kw,
        )

    @property
    def address(self) -> tuple[str, int]:
        return self._core.address

    @property
    def port(self) -> int:
        return self._core.address[1]

    @property
    def active_associations(self) -> int:
        return self._core.active_associations

    def start(self) -> None:
        self._core.start()

    def serve_forever(self) -> None:
        self._core.serve_forever()

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._core.shutdown()

    def bind(self, event: EventType, handler: Handler, args: Optional[list] = None) -> None:
        """Adds a notification handler (intervention handlers must be given at start)."""
        self._handlers.setdefault(event, []).append((handler, args or []))

    # Called from Rust association threads (with the GIL) -------------------------------------
    def _notify(self, kind: str, info: dict) -> None:
        evt = NOTIFICATIONS.get(kind)
        if evt is None:
            return
        event = Event(evt, AssociationInfo.from_negotiated(info))
        for fn, args in self._handlers.get(evt, []):
            try:
                fn(event, *args)
            except Exception:  # a user handler must not break the association thread
                log.exception("handler for %s raised", evt)

    def _dispatch(self, info: dict, ctx: tuple[int, str, str], command: _core.Command, data: Optional[bytes]) -> Any:
        evt = INTERVENTIONS.get(command.command_field or -1)
        handlers = self._handlers.get(evt) if evt else None
        if not handlers:
            return 0x0211  # unrecognized operation (PS3.7 C.4.1.1.3)
        context = PresentationContext(ctx[0], ctx[1], ctx[2])
        event = Event(evt, AssociationInfo.from_negotiated(info), context, command, data)
        fn, args = handlers[0]
        result = fn(event, *args)
        return _status_of(result)


def _status_of(result: Any) -> int:
    """A handler's return value as a status: an int, or a Dataset with a Status element."""
    if isinstance(result, int):
        return result
    status = getattr(result, "Status", None)
    if status is None:
        raise TypeError(f"handler returned {result!r}; expected a status int or a Dataset with Status")
    return int(status)


def verification_ae(ae_title: str = "FERRODICOM") -> AE:
    """An AE that requests and supports Verification (PS3.4 Annex A) in all uncompressed syntaxes."""
    ae = AE(ae_title)
    ae.add_requested_context(VERIFICATION)
    ae.add_supported_context(VERIFICATION)
    return ae
