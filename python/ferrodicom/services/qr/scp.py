"""Query/Retrieve SCP over the archive (PS3.4 Annex C): Patient Root and Study Root FIND, MOVE and GET at every
level, hierarchical, and relational when the requestor negotiates it (SOP Class Extended Negotiation, C.3.4).

C-FIND: the identifier becomes a matching tree (:mod:`ferrodicom.services.qr.identifier`), the index streams the
matches, each goes out as a pending response as it is produced (FF00; FF01 when a matching key was given that
the index does not hold, matched as universal), C-CANCEL stops it (FE00, from the platform). A result limit
ends a query with more matches than it with A700 after the first ``max_results`` matches, and a warning in the
log. Failures: A900 (the identifier does not fit the SOP class: no or wrong level), C000 (cannot process it),
A700 (out of resources).

C-MOVE: the destination comes from the AE's address book (A801 when unknown); the matched instances' files
stream from the archive through the Rust storage SCU on a new association that proposes each SOP class in its
stored transfer syntax and the uncompressed ones (a file is converted when the destination accepts only
another). C-GET sends them on the requestor's association, under SCP/SCU role selection (C.5.3); an instance
whose SOP class has no accepted context counts as failed. Pending responses, counts, cancel between
sub-operations and the final 0000/B000/A702/FE00 with the Failed SOP Instance UID List come from the platform.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pydicom.dataset import Dataset

from ferrodicom import evt
from ferrodicom.ae import ContextSpec
from ferrodicom.archive.matching import PN_POLICIES
from ferrodicom.services.qr.identifier import BadIdentifier, parse, response
from ferrodicom.services.qr.models import MODELS
from ferrodicom.services.storage.classes import STORAGE_TRANSFER_SYNTAXES, storage_sop_classes
from ferrodicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, UNCOMPRESSED

__all__ = ["QRSettings", "QueryRetrieveSCP"]

log = logging.getLogger("ferrodicom.qr")

#: At most this many presentation contexts on a C-MOVE sub-association (PS3.8 9.3.2.2 allows 128).
_MAX_CONTEXTS = 120


@dataclass
class QRSettings:
    """What ``serve`` (options, or the ``[qr]`` table of its configuration file) decides about Q/R."""

    #: Matches one C-FIND returns at most (0: no limit); past it the query ends with A700.
    max_results: int = 0
    #: PN matching: "insensitive" (case and accents ignored) or "exact" (see ferrodicom.archive.matching).
    pn_matching: str = "insensitive"
    #: Accept relational queries and retrieves when the requestor asks for them (extended negotiation).
    relational: bool = True
    #: Final status of a C-MOVE/C-GET that matches nothing: 0x0000 (PS3.4) or 0xA701 (eNTEGRA, seed 000 §2.7).
    no_match_status: int = 0x0000

    def __post_init__(self) -> None:
        if self.pn_matching not in PN_POLICIES:
            raise ValueError(f"pn_matching must be one of {', '.join(PN_POLICIES)}, not {self.pn_matching!r}")
        if self.max_results < 0:
            raise ValueError("max_results cannot be negative")


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]
    return ds


class QueryRetrieveSCP:
    """The Q/R service over an :class:`~ferrodicom.archive.Archive`: ``ae.add_service(QueryRetrieveSCP(archive,
    ae))``. ``ae`` gives the C-MOVE destinations (``ae.peer(aet)``) and the Retrieve AE Title."""

    def __init__(
        self,
        archive: Any,
        ae: Any = None,
        settings: Optional[QRSettings] = None,
        peer: Optional[Callable[[str], Any]] = None,
        transfer_syntaxes: Optional[list[str]] = None,
    ) -> None:
        self.archive = archive
        self.index = archive.index
        self.ae = ae
        self.settings = settings or QRSettings()
        self._peer = peer or (ae.peer if ae is not None else (lambda _aet: None))
        self.transfer_syntaxes = transfer_syntaxes or list(UNCOMPRESSED)

    # --- the service protocol of AE.add_service ------------------------------------------------------
    def contexts(self) -> list[ContextSpec]:
        specs = [ContextSpec(uid, list(self.transfer_syntaxes)) for uid in MODELS]
        # C-GET: we are the storage SCU on the requestor's association (its proposed role selection accepted).
        specs += [
            ContextSpec(uid, list(STORAGE_TRANSFER_SYNTAXES), scu_role=True, scp_role=True)
            for uid in storage_sop_classes()
        ]
        return specs

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        return [
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_MOVE, self.on_move),
            (evt.EVT_C_GET, self.on_get),
            (evt.EVT_SOP_EXTENDED, self.on_extended),
        ]

    @property
    def ae_title(self) -> str:
        return self.ae.ae_title if self.ae is not None else "FERRODICOM"

    # --- negotiation ---------------------------------------------------------------------------------
    def on_extended(self, event: Any) -> dict[str, bytes]:
        """SOP Class Extended Negotiation (PS3.4 C.3.4, C.3.5): relational queries/retrieval when enabled and
        asked for; combined date-time matching for C-FIND when asked for; nothing else."""
        replies: dict[str, bytes] = {}
        for uid, info in (event.app_info or {}).items():
            model = MODELS.get(str(uid))
            if model is None or not info:
                continue
            info = bytes(info)
            relational = 1 if (info[0] == 1 and self.settings.relational) else 0
            if model[1] == "find":
                date_time = 1 if len(info) > 1 and info[1] == 1 else 0
                replies[str(uid)] = bytes([relational, date_time, 0, 0])[: max(len(info), 1)]
            else:
                replies[str(uid)] = bytes([relational])
        return replies

    def _negotiated(self, event: Any, sop_class: str) -> tuple[bool, bool]:
        """(relational, combined date-time) as agreed on this association for ``sop_class``."""
        info = getattr(getattr(event.assoc, "info", None), "extended_negotiation", None) or []
        for uid, reply in info:
            if uid == sop_class and reply:
                reply = bytes(reply)
                return reply[0] == 1 and self.settings.relational, len(reply) > 1 and reply[1] == 1
        return False, False

    def _parse(self, event: Any, retrieve: bool) -> Any:
        sop_class = str(event.request.AffectedSOPClassUID)
        model = MODELS.get(sop_class)
        if model is None:
            raise BadIdentifier(0xA900, f"{sop_class} is not a Q/R SOP class")
        relational, date_time = self._negotiated(event, sop_class)
        try:
            identifier = event.identifier
        except Exception as exc:  # noqa: BLE001 - an undecodable identifier
            raise BadIdentifier(0xC000, f"cannot decode the identifier: {exc}") from None
        return parse(
            identifier,
            model[0],
            self.index.level_of,
            relational=relational,
            combined_datetime=date_time,
            pn_policy=self.settings.pn_matching,
            retrieve=retrieve,
        )

    # --- C-FIND ----------------------------------------------------------------------------------------
    def on_find(self, event: Any) -> Iterator[tuple[Any, Optional[Dataset]]]:
        started = time.perf_counter()
        calling = event.assoc.requestor.ae_title
        try:
            parsed = self._parse(event, retrieve=False)
        except BadIdentifier as exc:
            log.warning("C-FIND from %s refused (0x%04X): %s", calling, exc.status, exc)
            yield _status(exc.status, str(exc)), None
            return
        pending = 0xFF01 if parsed.unsupported else 0xFF00
        limit = self.settings.max_results
        query = parsed.query
        query.limit = limit + 1 if limit else None
        level_of = self.index.level_of
        aet = self.ae_title
        n = 0
        rows = self.index.query(query)
        outcome = "complete"
        try:
            for row in rows:
                n += 1
                if limit and n > limit:
                    n -= 1
                    outcome = "limit"
                    log.warning(
                        "C-FIND from %s: more than %d matches at %s level; ended with A700 after %d (result limit; "
                        "narrow the query or raise --max-results)",
                        calling,
                        limit,
                        query.level,
                        limit,
                    )
                    yield _status(0xA700, f"more than {limit} matches: narrow the query"), None
                    return
                yield pending, response(parsed, row, aet, level_of)
            outcome = "cancelled" if event.is_cancelled else "complete"
        except GeneratorExit:  # the platform stopped us: C-CANCEL (FE00) or the association ended
            outcome = "cancelled" if event.is_cancelled else "stopped"
            raise
        except MemoryError:
            outcome = "out of memory"
            yield _status(0xA700, "out of memory"), None
            return
        except Exception as exc:  # noqa: BLE001 - the index failed: C000 with its reason
            outcome = f"failed: {exc}"
            log.exception("C-FIND from %s failed", calling)
            yield _status(0xC000, f"index: {exc}"), None
            return
        finally:
            rows.close()
            log.info(
                "C-FIND from %s at %s level, keys %s: %d matches in %.1f ms (%s)%s",
                calling,
                query.level,
                ", ".join(sorted(query.conditions)) or "none",
                n,
                (time.perf_counter() - started) * 1e3,
                outcome,
                f"; not held, matched as universal: {', '.join(parsed.unsupported)}" if parsed.unsupported else "",
            )
        yield 0x0000, None

    # --- C-MOVE and C-GET ------------------------------------------------------------------------------
    def _instances(self, event: Any) -> tuple[Optional[Dataset], list[Any]]:
        """(failure status, []) or (None, the matched instances)."""
        try:
            parsed = self._parse(event, retrieve=True)
        except BadIdentifier as exc:
            return _status(exc.status, str(exc)), []
        parsed.query.relational = True  # a retrieve sends every instance under what the unique keys name
        try:
            refs = list(self.index.instances(parsed.query))
        except MemoryError:
            return _status(0xA701, "out of memory counting the matches"), []
        except Exception as exc:  # noqa: BLE001
            log.exception("C-MOVE/C-GET: index query failed")
            return _status(0xC000, f"index: {exc}"), []
        return None, refs

    def _no_match(self) -> Any:
        code = self.settings.no_match_status
        return 0 if code == 0 else _status(code, "cannot find the requested SOP instances")

    def on_move(self, event: Any) -> Iterator[Any]:
        calling = event.assoc.requestor.ae_title
        dest = event.move_destination or ""
        failure, refs = self._instances(event)
        if failure is not None:
            log.warning("C-MOVE from %s refused (0x%04X): %s", calling, failure.Status, failure.ErrorComment)
            yield failure
            return
        peer = self._peer(dest)
        if peer is None:
            log.warning("C-MOVE from %s: destination %r is not in the address book (A801)", calling, dest)
            yield None, None
            return
        contexts = _store_contexts(refs)
        yield peer.host, peer.port, {"contexts": contexts} if contexts else {}
        log.info("C-MOVE from %s: %d instances to %s at %s:%s", calling, len(refs), dest, peer.host, peer.port)
        yield from self._sub_operations(refs)

    def _sub_operations(self, refs: list[Any]) -> Iterator[Any]:
        """A retrieve's yields as pynetdicom's handlers give them: the number of sub-operations, then each
        instance's file (PS3.4 C.4.2.3, C.4.3.3); the configured no-match status when there is none."""
        if not refs:
            yield self._no_match()
            return
        yield len(refs)
        root = self.archive.root
        for ref in refs:
            yield 0xFF00, str(root / ref.path)

    def on_get(self, event: Any) -> Iterator[Any]:
        calling = event.assoc.requestor.ae_title
        failure, refs = self._instances(event)
        if failure is not None:
            log.warning("C-GET from %s refused (0x%04X): %s", calling, failure.Status, failure.ErrorComment)
            yield failure
            return
        log.info("C-GET from %s: %d instances", calling, len(refs))
        yield from self._sub_operations(refs)


def _store_contexts(refs: list[Any]) -> list[tuple[str, list[str]]]:
    """The contexts to propose to a C-MOVE destination: each SOP class in the matched files' transfer syntaxes
    first, then the uncompressed ones (the storage SCU converts an uncompressed file to what is accepted)."""
    by_class: dict[str, list[str]] = {}
    for ref in refs:
        syntaxes = by_class.setdefault(ref.sop_class_uid, [])
        if ref.transfer_syntax_uid not in syntaxes:
            syntaxes.append(ref.transfer_syntax_uid)
    contexts = []
    for uid, syntaxes in by_class.items():
        compressed = [ts for ts in syntaxes if ts not in UNCOMPRESSED]
        # one context per compressed syntax (sent as stored), one with the uncompressed ones
        for ts in compressed:
            contexts.append((uid, [ts]))
        stored = [ts for ts in syntaxes if ts in UNCOMPRESSED]
        contexts.append((uid, list(dict.fromkeys(stored + [EXPLICIT_VR_LE, IMPLICIT_VR_LE]))))
    return contexts[:_MAX_CONTEXTS]
