"""Query/Retrieve (PS3.4 Annex C): the C-FIND, C-MOVE and C-GET SCP over the archive
(:class:`QueryRetrieveSCP`) and the SCU helpers of ``ferrodicom find``, ``move`` and ``get``."""

from ferrodicom.services.qr.models import (
    MODELS,
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
)
from ferrodicom.services.qr.scp import QRSettings, QueryRetrieveSCP

__all__ = [
    "MODELS",
    "PATIENT_ROOT_FIND",
    "PATIENT_ROOT_GET",
    "PATIENT_ROOT_MOVE",
    "QRSettings",
    "QueryRetrieveSCP",
    "STUDY_ROOT_FIND",
    "STUDY_ROOT_GET",
    "STUDY_ROOT_MOVE",
]
