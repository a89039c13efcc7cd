"""What the index holds, whatever the backend: the attributes of each Q/R level (PS3.4 C.6.1.1, C.6.2.1),
how one received instance becomes a row per level, and the attributes computed at query time.

Four levels: patient, study, series, instance. Patients are keyed by (PatientID, IssuerOfPatientID,
PatientName), missing values stored as "" in the key columns; a study, series or instance by its UID.
``PatientNameNorm`` holds the Patient's Name as PN matching compares it
(:func:`ferrodicom.archive.matching.normalise_pn`), so that a backend can seek case- and accent-insensitive
names in an index. Extra keys (``Schema(extra={"series": ("PerformedProcedureStepDescription",)})``) become
columns of their level's table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ferrodicom.archive.matching import normalise_pn

__all__ = [
    "COMPUTED",
    "INDEX_KEYWORDS",
    "INSTANCE_KEYS",
    "INSTANCE_META",
    "LEVEL_OF",
    "PATIENT_KEYS",
    "SERIES_KEYS",
    "STUDY_KEYS",
    "Schema",
    "TABLES",
]

PATIENT_KEYS: tuple[str, ...] = ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex")
STUDY_KEYS: tuple[str, ...] = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
)
SERIES_KEYS: tuple[str, ...] = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "ProtocolName",
    "Manufacturer",
    "ManufacturerModelName",
    "StationName",
    "InstitutionName",
)
INSTANCE_KEYS: tuple[str, ...] = (
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
    "NumberOfFrames",
    "ContentDate",
    "ContentTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "ImageType",
    "ImageID",
    "Rows",
    "Columns",
    "SpecificCharacterSet",
)
#: Every data-set keyword the archive indexes by default (what the data path extracts, top level only).
INDEX_KEYWORDS: tuple[str, ...] = PATIENT_KEYS + STUDY_KEYS + SERIES_KEYS + INSTANCE_KEYS
#: Instance columns that do not come from the data set.
INSTANCE_META: tuple[str, ...] = ("TransferSyntaxUID", "size", "path", "received_at", "calling_ae", "called_ae")
#: Table of each level.
TABLES = {"PATIENT": "patient", "STUDY": "study", "SERIES": "series", "IMAGE": "instance"}
#: The level whose table holds each default key.
LEVEL_OF: dict[str, str] = {
    **{k: "PATIENT" for k in PATIENT_KEYS},
    **{k: "STUDY" for k in STUDY_KEYS},
    **{k: "SERIES" for k in SERIES_KEYS},
    **{k: "IMAGE" for k in INSTANCE_KEYS},
}
#: Attributes computed from the index at query time, and the level that returns them (PS3.4 C.3.2-C.3.4).
COMPUTED: dict[str, str] = {
    "NumberOfPatientRelatedStudies": "PATIENT",
    "NumberOfPatientRelatedSeries": "PATIENT",
    "NumberOfPatientRelatedInstances": "PATIENT",
    "NumberOfStudyRelatedSeries": "STUDY",
    "NumberOfStudyRelatedInstances": "STUDY",
    "ModalitiesInStudy": "STUDY",
    "SOPClassesInStudy": "STUDY",
    "NumberOfSeriesRelatedInstances": "SERIES",
}
_DA_KEYS = ("PatientBirthDate", "StudyDate", "SeriesDate", "ContentDate", "AcquisitionDate")
_LEVEL_NAMES = {"patient": "PATIENT", "study": "STUDY", "series": "SERIES", "instance": "IMAGE", "image": "IMAGE"}


class Schema:
    """The columns of each level (the defaults plus configured extra keys) and how a received instance's keys
    become one row per level (:meth:`build_row`). Backends build their tables and statements from it."""

    def __init__(self, extra: Optional[Mapping[str, Sequence[str]]] = None) -> None:
        self.extra: dict[str, tuple[str, ...]] = {lvl: () for lvl in TABLES}
        for level, keys in (extra or {}).items():
            lvl = _LEVEL_NAMES.get(level.lower())
            if lvl is None:
                raise ValueError(f"unknown level {level!r} for extra index keys (patient, study, series, instance)")
            fresh = tuple(k for k in keys if k not in LEVEL_OF and k not in INSTANCE_META)
            self.extra[lvl] = tuple(dict.fromkeys(self.extra[lvl] + fresh))
        self.level_keys: dict[str, tuple[str, ...]] = {
            "PATIENT": PATIENT_KEYS + self.extra["PATIENT"],
            "STUDY": STUDY_KEYS + self.extra["STUDY"],
            "SERIES": SERIES_KEYS + self.extra["SERIES"],
            "IMAGE": INSTANCE_KEYS + self.extra["IMAGE"],
        }
        self.level_of: dict[str, str] = dict(LEVEL_OF)
        for lvl, keys in self.extra.items():
            for k in keys:
                self.level_of[k] = lvl
        #: Every keyword the data path is to extract for this index.
        self.keywords: tuple[str, ...] = INDEX_KEYWORDS + tuple(k for lvl in TABLES for k in self.extra[lvl])
        p_other = PATIENT_KEYS[3:] + self.extra["PATIENT"]
        s_other = STUDY_KEYS[1:] + self.extra["STUDY"]
        se_other = SERIES_KEYS[1:] + self.extra["SERIES"]
        i_other = INSTANCE_KEYS[2:] + self.extra["IMAGE"]
        self._p_other, self._s_other, self._se_other, self._i_other = p_other, s_other, se_other, i_other
        #: Column order of each table's row tuple (as :meth:`build_row` returns it).
        self.patient_cols = PATIENT_KEYS[:3] + p_other + ("PatientNameNorm",)
        self.study_cols = (
            ("StudyInstanceUID", "PatientID", "IssuerOfPatientID", "PatientName") + s_other + ("PatientNameNorm",)
        )
        self.series_cols = ("SeriesInstanceUID", "StudyInstanceUID") + se_other
        self.instance_cols = (
            ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID") + i_other + INSTANCE_META
        )

    def build_row(
        self,
        keys: dict[str, str],
        sop_instance_uid: str,
        sop_class_uid: str,
        study_uid: str,
        series_uid: str,
        meta: tuple[Any, ...],
    ) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
        """(patient, study, series, instance) parameter tuples for one instance."""
        for da in _DA_KEYS:
            if "." in keys.get(da, ""):  # the older YYYY.MM.DD form, kept as YYYYMMDD (what ranges compare)
                keys = {**keys, da: keys[da].replace(".", "")}
        g = keys.get
        name = g("PatientName") or ""
        pkey = (g("PatientID") or "", g("IssuerOfPatientID") or "", name)
        norm = normalise_pn(name)
        patient = (*pkey, *map(g, self._p_other), norm)
        study = (study_uid, *pkey, *map(g, self._s_other), norm)
        series = (series_uid, study_uid, *map(g, self._se_other))
        instance = (sop_instance_uid, sop_class_uid, series_uid, study_uid, *map(g, self._i_other), *meta)
        return patient, study, series, instance


#: The schema without extra keys.
DEFAULT_SCHEMA = Schema()
