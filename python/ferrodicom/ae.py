"""The Application Entity, as pynetdicom's ``AE``: presentation contexts, services, handlers, peers.

``ae.associate(host, port, ae_title=...)`` returns an :class:`~ferrodicom.association.Association`;
``ae.start_server((host, port), evt_handlers=...)`` runs an SCP whose associations are negotiated and served in
Rust, calling Python once per DIMSE request at most (PS3.7 §9) and never per PDU.

Handlers are pynetdicom's (``evt.EVT_C_FIND`` yields ``(status, identifier)``...: see :mod:`ferrodicom.events`).
Services are objects added with :meth:`AE.add_service` (for example
``StorageSCP(archive)``): each contributes its presentation contexts, its handlers and its Rust side (the
storage data path). Negotiation hooks: ``ae.access_control`` (accept or reject each request), ``EVT_USER_ID``
(user identity), ``EVT_SOP_EXTENDED`` (SOP Class Extended Negotiation answers).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Protocol, Sequence, Union

from ferrodicom import _core
from ferrodicom.association import Association
from ferrodicom.config import ae_title_problem
from ferrodicom.dispatch import Associations, Bound, Dispatcher, Handlers
from ferrodicom.events import (
    BY_COMMAND_FIELD,
    EVT_ABORTED,
    EVT_ESTABLISHED,
    EVT_REJECTED,
    EVT_RELEASED,
    EVT_SOP_EXTENDED,
    EVT_USER_ID,
    Event,
    EventType,
    Handler,
)
from ferrodicom.uids import DEFAULT_TRANSFER_SYNTAXES, default_storage_classes

log = logging.getLogger("ferrodicom")

EventHandlers = Iterable[Union[tuple[EventType, Handler], tuple[EventType, Handler, list]]]

#: Rejection for a failed user identity or an access-control refusal without a reason of its own:
#: rejected-permanent, service user, no reason given (PS3.8 Table 9-21).
REJECT_NO_REASON = (1, 1, 1)


def validate_ae_title(title: str) -> str:
    """An AE title with its padding removed; ValueError unless 1-16 characters of the AE repertoire."""
    problem = ae_title_problem(title)
    if problem is not None:
        raise ValueError(f"invalid AE title: {problem}")
    return title.strip(" ")


@dataclass
class ContextSpec:
    """A presentation context this AE requests or supports."""

    abstract_syntax: str
    transfer_syntaxes: list[str] = field(default_factory=lambda: list(DEFAULT_TRANSFER_SYNTAXES))
    #: Supported: whether we accept a requestor that proposes the SCU role / the SCP role (None: the
    #: default roles, requestor SCU and us SCP), as pynetdicom's ``add_supported_context``.
    scu_role: Optional[bool] = None
    scp_role: Optional[bool] = None
    #: Requested: SCP/SCU Role Selection to propose, (as SCU, as SCP), or None.
    roles: Optional[tuple[bool, bool]] = None


@dataclass(frozen=True)
class Peer:
    """An entry of the address book: another AE and where it listens."""

    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class RoleSelection:
    """SCP/SCU Role Selection to propose for one SOP class (PS3.7 D.3.3.4), as pynetdicom's ``build_role``."""

    sop_class_uid: str
    scu_role: bool = False
    scp_role: bool = False


def build_role(uid: str, scu_role: bool = False, scp_role: bool = False) -> RoleSelection:
    """An SCP/SCU Role Selection item for ``ext_neg`` (pynetdicom's ``build_role``)."""
    return RoleSelection(str(uid), scu_role, scp_role)


class Service(Protocol):
    """What :meth:`AE.add_service` takes (every method optional except ``contexts``)."""

    def contexts(self) -> list[ContextSpec]: ...


class AE:
    """A DICOM Application Entity."""

    def __init__(self, ae_title: str = "FERRODICOM") -> None:
        self._ae_title = validate_ae_title(ae_title)
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
        #: ``access_control(request: _core.AssociationRequest)`` -> None to accept, or (result, source, reason)
        #: to reject; called once per association request, before the services see it.
        self.access_control: Optional[Callable[[_core.AssociationRequest], Optional[tuple[int, int, int]]]] = None
        #: SOP Class Extended Negotiation replies by SOP class UID (PS3.7 D.3.3.5), sent to every requestor
        #: that asks; an ``EVT_SOP_EXTENDED`` handler decides per association instead.
        self.extended_negotiation: dict[str, bytes] = {}
        self.implementation_class_uid: str = _core.IMPLEMENTATION_CLASS_UID
        self.implementation_version_name: Optional[str] = _core.IMPLEMENTATION_VERSION_NAME
        #: The address book: C-MOVE destinations, peers to send reports to.
        self.peers: dict[str, Peer] = {}
        self._services: list[Any] = []
        self._servers: list[Server] = []

    @property
    def ae_title(self) -> str:
        return self._ae_title

    @ae_title.setter
    def ae_title(self, value: str) -> None:
        self._ae_title = validate_ae_title(value)

    # --- contexts ----------------------------------------------------------------------------
    def add_requested_context(
        self,
        abstract_syntax: str,
        transfer_syntax: Union[str, Sequence[str]] = DEFAULT_TRANSFER_SYNTAXES,
        roles: Optional[tuple[bool, bool]] = None,
    ) -> None:
        """Proposes ``abstract_syntax`` with these transfer syntaxes (PS3.8 §9.3.2.2); ``roles``
        = (as SCU, as SCP) sends SCP/SCU Role Selection (PS3.7 D.3.3.4)."""
        ts = [transfer_syntax] if isinstance(transfer_syntax, str) else [str(t) for t in transfer_syntax]
        if len(self.requested_contexts) >= 128:
            raise ValueError("at most 128 presentation contexts can be requested (PS3.8 §9.3.2.2)")
        self.requested_contexts.append(ContextSpec(str(abstract_syntax), ts, roles=roles))

    def add_supported_context(
        self,
        abstract_syntax: str,
        transfer_syntax: Union[str, Sequence[str]] = DEFAULT_TRANSFER_SYNTAXES,
        scu_role: Optional[bool] = None,
        scp_role: Optional[bool] = None,
    ) -> None:
        """Accepts ``abstract_syntax`` in these transfer syntaxes. ``scu_role``/``scp_role`` (as pynetdicom):
        whether to accept a requestor that proposes to be SCU / SCP for it through role selection; None for
        both keeps the default roles (requestor SCU, us SCP). C-GET needs ``scp_role=True`` on the storage
        classes it returns."""
        ts = [transfer_syntax] if isinstance(transfer_syntax, str) else [str(t) for t in transfer_syntax]
        for c in self.supported_contexts:
            if c.abstract_syntax == abstract_syntax:
                c.transfer_syntaxes = list(dict.fromkeys(c.transfer_syntaxes + ts))
                if scu_role is not None:
                    c.scu_role = scu_role
                if scp_role is not None:
                    c.scp_role = scp_role
                return
        self.supported_contexts.append(ContextSpec(str(abstract_syntax), ts, scu_role=scu_role, scp_role=scp_role))

    # --- services and peers --------------------------------------------------------------------
    def add_service(self, service: Any) -> None:
        """Adds a service object: its ``contexts()`` are supported, its ``handlers()`` bound, and its
        ``install(services)`` gives its Rust side when a server or an association starts."""
        for c in service.contexts():
            self.add_supported_context(c.abstract_syntax, c.transfer_syntaxes, c.scu_role, c.scp_role)
        self._services.append(service)

    @property
    def services(self) -> list[Any]:
        return list(self._services)

    def add_peer(self, ae_title: str, host: str, port: int) -> Peer:
        """Adds (or replaces) an entry of the address book."""
        peer = Peer(validate_ae_title(ae_title), host, int(port))
        self.peers[peer.ae_title] = peer
        return peer

    def peer(self, ae_title: str) -> Optional[Peer]:
        """The address book's entry for ``ae_title``, if any."""
        return self.peers.get(ae_title.strip())

    def _handlers(self, evt_handlers: Optional[EventHandlers]) -> Handlers:
        handlers: Handlers = {}
        for service in self._services:
            # A service's handlers serve its own SOP classes: several services may handle one event type.
            scope = frozenset(c.abstract_syntax for c in service.contexts())
            for evt, fn in getattr(service, "handlers", lambda: [])():
                handlers.setdefault(evt, []).append(Bound(fn, [], scope))
        for h in evt_handlers or []:
            evt, fn, *args = h
            handlers.setdefault(evt, []).insert(0, Bound(fn, list(args[0]) if args else []))
        return handlers

    def _core_services(
        self, handlers: Handlers, dispatcher: Dispatcher, notices: Callable[..., None]
    ) -> _core.Services:
        """The Rust services: the services' own (storage), then the handlers of the intervention events bound."""
        services = _core.Services()
        for service in self._services:
            install = getattr(service, "install", None)
            if install is not None:
                install(services)
        routed = sorted(f for f, evt in BY_COMMAND_FIELD.items() if evt in handlers)
        if routed:
            services.add_handler(routed, dispatcher)
        services.set_notices(notices)
        return services

    def _dispatcher(self, handlers: Handlers, associations: Associations) -> Dispatcher:
        def store_contexts() -> list[tuple[str, list[str]]]:
            if self.requested_contexts:
                return [(c.abstract_syntax, c.transfer_syntaxes) for c in self.requested_contexts]
            return [(uid, list(DEFAULT_TRANSFER_SYNTAXES)) for uid in default_storage_classes()]

        def open_association(host: str, port: int, contexts: list[tuple[str, list[str]]], **kw: Any) -> Association:
            specs = [ContextSpec(a, ts) for a, ts in contexts]
            return self.associate(host, port, contexts=specs, **kw)

        return Dispatcher(handlers, associations, lambda: self._ae_title, store_contexts, open_association)

    # --- SCU ---------------------------------------------------------------------------------
    def associate(
        self,
        addr: str,
        port: int,
        contexts: Optional[list[ContextSpec]] = None,
        ae_title: str = "ANY-SCP",
        max_pdu: Optional[int] = None,
        ext_neg: Optional[list[Any]] = None,
        evt_handlers: Optional[EventHandlers] = None,
        user_identity: Optional[tuple[int, bool, bytes, bytes]] = None,
    ) -> Association:
        """Requests an association (PS3.8 §7.1). Returns an Association whether or not it was established:
        on rejection ``assoc.rejection`` holds (result, source, reason) and ``assoc.error`` the
        :class:`~ferrodicom.AssociationRejected`. ``ext_neg`` takes pynetdicom's negotiation items (role
        selection, user identity, SOP class extended and common extended negotiation). The peer's requests on
        this association (C-STOREs of a C-GET, an N-EVENT-REPORT) go to ``evt_handlers`` and the AE's
        services, served on a background thread."""
        ctxs = contexts if contexts is not None else self.requested_contexts
        if not ctxs:
            raise ValueError("no requested presentation contexts: call add_requested_context() first")
        roles: dict[str, tuple[bool, bool]] = {}
        extended: list[tuple[str, bytes]] = []
        common: list[tuple[str, str, list[str]]] = []
        for item in ext_neg or []:
            if hasattr(item, "scu_role") and hasattr(item, "scp_role"):
                roles[str(item.sop_class_uid)] = (bool(item.scu_role), bool(item.scp_role))
            elif hasattr(item, "user_identity_type"):
                user_identity = (
                    int(item.user_identity_type),
                    bool(item.positive_response_requested),
                    bytes(item.primary_field or b""),
                    bytes(item.secondary_field or b""),
                )
            elif hasattr(item, "service_class_application_information"):
                extended.append((str(item.sop_class_uid), bytes(item.service_class_application_information)))
            elif hasattr(item, "related_general_sop_class_identification"):
                related = [str(u) for u in item.related_general_sop_class_identification or []]
                common.append((str(item.sop_class_uid), str(item.service_class_uid), related))
        handlers = self._handlers(evt_handlers)
        associations = Associations()
        services = None
        if handlers or any(hasattr(s, "install") for s in self._services):
            dispatcher = self._dispatcher(handlers, associations)
            services = self._core_services(handlers, dispatcher, _log_notice)
        try:
            core = _core.associate(
                addr,
                int(port),
                self._ae_title,
                validate_ae_title(ae_title),
                [(c.abstract_syntax, c.transfer_syntaxes, roles.get(c.abstract_syntax, c.roles)) for c in ctxs],
                services=services,
                max_pdu=self.maximum_pdu_size if max_pdu is None else max_pdu,
                implementation_class_uid=self.implementation_class_uid,
                implementation_version_name=self.implementation_version_name or "",
                user_identity=user_identity,
                extended_negotiation=extended or None,
                common_extended=common or None,
                acse_timeout=self.acse_timeout,
                dimse_timeout=self.dimse_timeout,
                connect_timeout=self.connection_timeout,
            )
        except (_core.DicomError, OSError) as exc:
            log.info("association with %s:%s (%s) failed: %s", addr, port, ae_title, exc)
            return Association(None, exc)
        assoc = Association(core)
        associations.register(assoc, keep=False)
        return assoc

    # --- SCP ---------------------------------------------------------------------------------
    def start_server(
        self,
        address: tuple[str, int],
        block: bool = True,
        evt_handlers: Optional[EventHandlers] = None,
        ae_title: Optional[str] = None,
        contexts: Optional[list[ContextSpec]] = None,
    ) -> Optional[Server]:
        """Starts an SCP on ``address`` (port 0 picks a free port, see ``server.port``). With
        ``block=True`` serves until interrupted; otherwise returns the running :class:`Server`."""
        if contexts is not None:
            self.supported_contexts = list(contexts)
        if not self.supported_contexts:
            raise ValueError("no supported presentation contexts: call add_supported_context() first")
        server = Server(self, address, evt_handlers, ae_title or self._ae_title)
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


def _log_notice(assoc: _core.Association, level: str, message: str) -> None:
    """A refused or ignored message, logged with the association's calling AE and address."""
    info = assoc.info
    log.log(
        logging.WARNING if level == "warning" else logging.INFO,
        "%s from %s at %s: %s",
        "association",
        info.calling_ae,
        _address(info.peer_address),
        message,
    )


def _address(addr: Optional[tuple[str, int]]) -> str:
    return f"{addr[0]}:{addr[1]}" if addr else "an unknown address"


def _rust_roles(c: ContextSpec) -> tuple[bool, bool]:
    """(we may be SCP, we may be SCU) of the Rust acceptor from pynetdicom's (accept requestor as SCU, as SCP)."""
    if c.scu_role is None and c.scp_role is None:
        return True, False
    return bool(c.scu_role), bool(c.scp_role)


class Server:
    """A running SCP (see :meth:`AE.start_server`)."""

    def __init__(self, ae: AE, address: tuple[str, int], evt_handlers: Optional[EventHandlers], ae_title: str) -> None:
        self.ae = ae
        self._handlers = ae._handlers(evt_handlers)
        self._associations = Associations()
        self._closed = False
        self._lock = threading.Lock()
        dispatcher = ae._dispatcher(self._handlers, self._associations)
        services = ae._core_services(self._handlers, dispatcher, _log_notice)
        config = _core.ServerConfig(
            address[0],
            int(address[1]),
            ae_title,
            [(c.abstract_syntax, c.transfer_syntaxes, *_rust_roles(c)) for c in ae.supported_contexts],
            max_pdu=ae.maximum_pdu_size,
            require_called_aet=ae.require_called_aet,
            allowed_calling_aets=list(ae.require_calling_aet) or None,
            max_associations=ae.maximum_associations,
            implementation_class_uid=ae.implementation_class_uid,
            implementation_version_name=ae.implementation_version_name or "",
            extended_negotiation=dict(ae.extended_negotiation) or None,
            artim_timeout=ae.artim_timeout,
            acse_timeout=ae.acse_timeout,
            network_timeout=ae.network_timeout,
            dimse_timeout=ae.dimse_timeout,
        )
        self._core = _core.Server(config, services, _Hooks(self))

    @property
    def address(self) -> tuple[str, int]:
        return self._core.address

    @property
    def port(self) -> int:
        return self._core.address[1]

    @property
    def active_associations(self) -> int:
        return self._core.active_associations

    def metrics(self) -> dict[str, Any]:
        """The server's counters (see :mod:`ferrodicom.metrics`)."""
        return self._core.metrics()

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
        for service in self.ae.services:
            close = getattr(service, "close", None)
            if close is not None:
                close()

    def bind(self, event: EventType, handler: Handler, args: Optional[list] = None) -> None:
        """Binds a handler. Notification handlers take effect at once; an intervention event is served only
        if the server was started with a handler for it."""
        self._handlers.setdefault(event, []).insert(0, Bound(handler, list(args or [])))

    def unbind(self, event: EventType, handler: Handler) -> None:
        self._handlers[event] = [b for b in self._handlers.get(event, []) if b.fn is not handler]

    def notify(self, evt: EventType, assoc: Any, **attrs: Any) -> None:
        event = Event(assoc, evt, **attrs)
        for fn, args, _scope in self._handlers.get(evt, []):
            try:
                fn(event, *args)
            except Exception:  # a user handler must not break the association thread
                log.exception("handler for %s raised", evt)

    def wants(self, *events: EventType) -> bool:
        return any(self._handlers.get(e) for e in events)


class _Hooks:
    """What the Rust server asks of Python once per association (see ``_core.Server``)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        ae = server.ae
        if ae.access_control is None and not server.wants(EVT_USER_ID, EVT_SOP_EXTENDED):
            self.negotiate = None  # type: ignore[assignment]  # nothing to ask: no Python call per association
        if not server.wants(EVT_ESTABLISHED, EVT_RELEASED, EVT_ABORTED):
            self.established = None  # type: ignore[assignment]
            self.closed = None  # type: ignore[assignment]

    def negotiate(self, request: _core.AssociationRequest) -> Any:
        """Access control, then user identity (PS3.7 D.3.3.7), then extended negotiation (D.3.3.5)."""
        ae = self._server.ae
        if ae.access_control is not None:
            refusal = ae.access_control(request)
            if refusal is not None:
                return (tuple(refusal), None, None)
        identity_response = None
        identity = request.user_identity
        user_id = self._server._handlers.get(EVT_USER_ID)
        if identity is not None and user_id:
            kind, positive, primary, secondary = identity
            fn, args, _scope = user_id[0]
            event = Event(None, EVT_USER_ID, user_id_type=kind, primary_field=primary, secondary_field=secondary,
                          association_request=request)  # fmt: skip
            verified, response = fn(event, *args)
            if not verified:
                return (REJECT_NO_REASON, None, None)
            identity_response = response if positive else None
        extended = None
        sop_extended = self._server._handlers.get(EVT_SOP_EXTENDED)
        if sop_extended and request.extended_negotiation:
            extended = self._sop_extended(sop_extended, request)
        return (None, identity_response, extended)

    @staticmethod
    def _sop_extended(bound: list[Bound], request: _core.AssociationRequest) -> dict[str, bytes]:
        """The SOP Class Extended Negotiation answers (PS3.7 D.3.3.5): a service's handler answers for its own
        SOP classes; a handler bound with ``evt_handlers`` (pynetdicom's one handler) for the others."""
        proposed = {str(k): bytes(v) for k, v in request.extended_negotiation}
        answers: dict[str, bytes] = {}
        for fn, args, scope in sorted(bound, key=lambda b: b.scope is None):
            app_info = {k: v for k, v in proposed.items() if k not in answers and (scope is None or k in scope)}
            if not app_info:
                continue
            event = Event(None, EVT_SOP_EXTENDED, app_info=app_info, association_request=request)
            for k, v in (fn(event, *args) or {}).items():
                if v is not None and str(k) in app_info:
                    answers[str(k)] = bytes(v)
        return answers

    def established(self, core: _core.Association) -> None:
        assoc = Association(core)
        self._server._associations.register(assoc)
        self._server.notify(EVT_ESTABLISHED, assoc)

    def closed(self, core: _core.Association, outcome: str) -> None:
        assoc = self._server._associations.forget(core) or Association(core)
        self._server.notify(EVT_RELEASED if outcome == "released" else EVT_ABORTED, assoc)

    def rejected(self, request: _core.AssociationRequest, result: int, source: int, reason: int, why: str) -> None:
        log.warning(
            "association request from %s at %s to %s rejected (%d/%d/%d): %s",
            request.calling_ae,
            _address(request.peer_address),
            request.called_ae,
            result,
            source,
            reason,
            why,
        )
        self._server.notify(EVT_REJECTED, None, association_request=request, rejection=(result, source, reason),
                            reason=why)  # fmt: skip

    def refused(self, peer: Optional[tuple[str, int]], kind: str, message: str) -> None:
        """A connection that never became an association: ``kind`` is "closed" (nothing sent, e.g. a port
        check), "timeout" (ARTIM), "malformed" (not a valid A-ASSOCIATE-RQ) or "other"."""
        level = logging.INFO if kind == "closed" else logging.WARNING
        log.log(level, "connection from %s ended before an association (%s): %s", _address(peer), kind, message)
