"""The SCU side of an association (PS3.8 §7), wrapping the Rust association.

An :class:`Association` is returned by :meth:`ferrodicom.AE.associate`. As in pynetdicom, a
rejected or failed request still returns an object: check ``assoc.is_established``.
"""

from __future__ import annotations

import logging
from typing import Optional

from ferrodicom import _core
from ferrodicom.events import AssociationInfo, PresentationContext
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


class Association:
    """A requested association. Use as a context manager to release it on exit."""

    def __init__(self, core: Optional[_core.Association], error: Optional[BaseException] = None) -> None:
        self._core = core
        self.error = error
        self._released = False
        self._aborted = False
        self.acceptor: Optional[AssociationInfo] = (
            AssociationInfo.from_negotiated(core.negotiated) if core is not None else None
        )

    # --- state -------------------------------------------------------------------------------
    @property
    def is_established(self) -> bool:
        return self._core is not None and self._core.is_established

    @property
    def is_rejected(self) -> bool:
        return self.error is not None and "association rejected" in str(self.error)

    @property
    def is_aborted(self) -> bool:
        return self._aborted or (self.error is not None and "aborted" in str(self.error))

    @property
    def is_released(self) -> bool:
        return self._released

    @property
    def rejection(self) -> Optional[tuple[int, int, int]]:
        """(result, source, reason) of an A-ASSOCIATE-RJ, if the request was rejected."""
        if not self.is_rejected:
            return None
        import re

        m = re.search(r"result (\d+) source (\d+) reason (\d+)", str(self.error))
        return (int(m[1]), int(m[2]), int(m[3])) if m else None

    @property
    def accepted_contexts(self) -> list[PresentationContext]:
        return [c for c in (self.acceptor.contexts if self.acceptor else []) if c.result == 0]

    @property
    def rejected_contexts(self) -> list[PresentationContext]:
        return [c for c in (self.acceptor.contexts if self.acceptor else []) if c.result != 0]

    @property
    def core(self) -> _core.Association:
        """The Rust association (for services built on ``send``/``receive``)."""
        if self._core is None:
            raise _core.AssociationError(f"association was not established: {self.error}")
        return self._core

    # --- DIMSE services ----------------------------------------------------------------------
    def send_c_echo(self, msg_id: Optional[int] = None) -> Status:
        """C-ECHO (PS3.7 §9.1.5): returns the peer's status."""
        return Status(self.core.send_c_echo(msg_id))

    def context_for(self, abstract_syntax: str, transfer_syntax: Optional[str] = None) -> PresentationContext:
        """The accepted context for an abstract syntax (preferring ``transfer_syntax``)."""
        matches = [c for c in self.accepted_contexts if c.abstract_syntax == abstract_syntax]
        for c in matches:
            if transfer_syntax is None or c.transfer_syntax == transfer_syntax:
                return c
        if matches:
            return matches[0]
        raise _core.AssociationError(f"no accepted presentation context for {abstract_syntax}")

    @property
    def supports_verification(self) -> bool:
        return any(c.abstract_syntax == VERIFICATION for c in self.accepted_contexts)

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

    def __enter__(self) -> Association:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.is_established:
            self.release()

    def __repr__(self) -> str:
        state = "established" if self.is_established else ("rejected" if self.is_rejected else "closed")
        return f"<Association {state}>"
