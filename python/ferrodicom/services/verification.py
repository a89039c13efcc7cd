"""Verification service class (PS3.4 Annex A): C-ECHO as SCU."""

from __future__ import annotations

from typing import Optional

from ferrodicom.ae import AE
from ferrodicom.association import Association
from ferrodicom.status import Status
from ferrodicom.uids import IMPLICIT_VR_LE, VERIFICATION


def echo(
    host: str,
    port: int,
    *,
    calling_ae: str = "FERRODICOM",
    called_ae: str = "ANY-SCP",
    repeat: int = 1,
    max_pdu: Optional[int] = None,
    timeout: Optional[float] = 30.0,
) -> tuple[Association, list[Status]]:
    """Opens an association, sends ``repeat`` C-ECHO requests and releases it.

    Verification is proposed in Implicit VR Little Endian only, the one transfer syntax every
    peer must accept (PS3.5 §10.1; eNTEGRA accepts nothing else for Verification)."""
    ae = AE(calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.connection_timeout = timeout
    ae.add_requested_context(VERIFICATION, IMPLICIT_VR_LE)
    assoc = ae.associate(host, port, ae_title=called_ae, max_pdu=max_pdu)
    statuses: list[Status] = []
    if assoc.is_established:
        try:
            for _ in range(repeat):
                statuses.append(assoc.send_c_echo())
        finally:
            if assoc.is_established:
                assoc.release()
    return assoc, statuses
