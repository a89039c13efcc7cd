"""The Query/Retrieve information models (PS3.4 C.6): their SOP classes, levels and unique keys."""

from __future__ import annotations

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"

#: SOP class -> (root, operation)
MODELS: dict[str, tuple[str, str]] = {
    PATIENT_ROOT_FIND: ("patient", "find"),
    PATIENT_ROOT_MOVE: ("patient", "move"),
    PATIENT_ROOT_GET: ("patient", "get"),
    STUDY_ROOT_FIND: ("study", "find"),
    STUDY_ROOT_MOVE: ("study", "move"),
    STUDY_ROOT_GET: ("study", "get"),
}
#: (root, operation) -> SOP class
BY_ROOT = {v: k for k, v in MODELS.items()}
#: The levels of each model, top down (PS3.4 C.6.1.1, C.6.2.1).
ROOT_LEVELS = {"patient": ("PATIENT", "STUDY", "SERIES", "IMAGE"), "study": ("STUDY", "SERIES", "IMAGE")}
#: The unique key of each level.
UNIQUE_KEY = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
