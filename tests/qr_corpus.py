"""A small Q/R test corpus: several patients (names with non-ASCII characters in ISO_IR 100 and ISO_IR 192,
one in ISO 2022 IR 100), studies spread over dates and years, NM, PT and CT series, small pixel data that
differs per instance. ``write_corpus(folder)`` writes Part 10 files and returns their descriptions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

CT = "1.2.840.10008.5.1.4.1.1.2"
NM = "1.2.840.10008.5.1.4.1.1.20"
PT = "1.2.840.10008.5.1.4.1.1.128"
ROOT = "1.2.826.0.1.3680043.8.498.21"

#: (PatientID, PatientName, charset, sex, birth date)
PATIENTS = [
    ("P001", "Müller^Hans", "ISO_IR 100", "M", "19500102"),
    ("P002", "Łukasik^Zoë", "ISO_IR 192", "F", "19621230"),
    ("P003", "Smith^John", None, "M", "19700707"),
    ("P004", "Smithson^Ann", None, "F", "19811111"),
    ("P005", "Gómez^José", "ISO 2022 IR 100", "M", "19900505"),
]
#: (patient index, study number, StudyDate, StudyTime, AccessionNumber, [(modality, n instances)])
STUDIES = [
    (0, 1, "20190314", "083000", "ACC0101", [("NM", 2), ("CT", 2)]),
    (0, 2, "20210601", "141500.25", "ACC0102", [("PT", 2), ("CT", 1)]),
    (1, 1, "20200229", "235959", "ACC0201", [("NM", 3)]),
    (2, 1, "20221231", "000001", "ACC0301", [("CT", 3)]),
    (2, 2, "20230101", "120000", "ACC0302", [("PT", 1), ("NM", 1)]),
    (3, 1, "20230615", "093000", "ACC0401", [("CT", 2)]),
    (4, 1, "20240110", "101010", "ACC0501", [("NM", 2)]),
]
CLASS = {"CT": CT, "NM": NM, "PT": PT}


@dataclass
class Item:
    path: Path
    patient_id: str
    patient_name: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str
    modality: str
    study_date: str


def study_uid(p: int, s: int) -> str:
    return f"{ROOT}.{p + 1}.{s}"


def series_uid(p: int, s: int, n: int) -> str:
    return f"{ROOT}.{p + 1}.{s}.{n}"


def make_dataset(p: int, s: int, n: int, i: int, modality: str, study: tuple) -> Dataset:
    pid, name, charset, sex, birth = PATIENTS[p]
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CLASS[modality]
    ds.SOPInstanceUID = f"{series_uid(p, s, n)}.{i + 1}"
    ds.StudyInstanceUID = study_uid(p, s)
    ds.SeriesInstanceUID = series_uid(p, s, n)
    ds.PatientID = pid
    ds.PatientName = name
    ds.PatientSex = sex
    ds.PatientBirthDate = birth
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study[2], study[3], study[4]
    ds.StudyID = f"S{s}"
    ds.StudyDescription = f"{modality} study {s} of {name.split('^')[0]}"
    ds.ReferringPhysicianName = "Dr^Who"
    ds.Modality = modality
    ds.SeriesNumber = n
    ds.SeriesDescription = f"{modality} series {n}"
    ds.SeriesDate, ds.SeriesTime = study[2], study[3]
    ds.InstanceNumber = i + 1
    ds.ContentDate, ds.ContentTime = study[2], study[3]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    seed = (p + 1) * 10000 + s * 1000 + n * 100 + i
    ds.PixelData = np.random.default_rng(seed).integers(0, 4096, 64, dtype=np.uint16).tobytes()
    return ds


def datasets() -> list[tuple[Dataset, Item]]:
    out = []
    for study in STUDIES:
        p, s, date = study[0], study[1], study[2]
        for n, (modality, count) in enumerate(study[5], start=1):
            for i in range(count):
                ds = make_dataset(p, s, n, i, modality, study)
                out.append(
                    (
                        ds,
                        Item(
                            Path(),
                            PATIENTS[p][0],
                            PATIENTS[p][1],
                            ds.StudyInstanceUID,
                            ds.SeriesInstanceUID,
                            ds.SOPInstanceUID,
                            ds.SOPClassUID,
                            modality,
                            date,
                        ),  # fmt: skip
                    )
                )
    return out


def write_corpus(folder: Path) -> list[Item]:
    """Writes every instance as a Part 10 file (Explicit VR LE; the PT ones Implicit VR LE)."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for ds, item in datasets():
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if item.modality == "PT" else ExplicitVRLittleEndian
        ds.file_meta = meta
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        item.path = path
        items.append(item)
    return items


def synthetic_rows(schema, patients: int, studies: int, series_per_study: int, instances_per_series: int,
                   prefix: str = "9", names=None):  # fmt: skip
    """Index rows (``Schema.build_row``) of instances that have no file: for bulk-loading an index through
    :meth:`SqliteIndex.bulk_load` (benchmarks; C-FIND tests that need many matches). Study k belongs to patient
    k % patients; dates spread over 2000-2024; modalities CT, NM, PT in turn."""
    first = names or ["SMITH", "JONES", "MÜLLER", "GARCIA", "NGUYEN", "BROWN", "DUBOIS", "ROSSI", "SILVA", "KOWALSKI"]
    modalities = ("CT", "NM", "PT")
    classes = {"CT": CT, "NM": NM, "PT": PT}
    base = f"{ROOT}.{prefix}"
    for k in range(studies):
        p = k % patients
        year = 2000 + (k * 7919) % 25
        date = f"{year}{(k % 12) + 1:02d}{(k % 28) + 1:02d}"
        keys = {
            "PatientID": f"PID{p:07d}",
            "PatientName": f"{first[p % len(first)]}{p // len(first)}^PAT{p}",
            "PatientBirthDate": f"19{(p % 90) + 10:02d}0101",
            "PatientSex": "MF"[p % 2],
            "StudyDate": date,
            "StudyTime": f"{(k % 24):02d}{(k % 60):02d}00",
            "AccessionNumber": f"ACC{k:08d}",
            "StudyID": str(k),
            "StudyDescription": "synthetic",
        }
        study = f"{base}.{k + 1}"
        for s in range(series_per_study):
            modality = modalities[(k + s) % 3]
            series = f"{study}.{s + 1}"
            keys = {**keys, "Modality": modality, "SeriesNumber": str(s + 1)}
            for i in range(instances_per_series):
                uid = f"{series}.{i + 1}"
                keys_i = {**keys, "InstanceNumber": str(i + 1), "Rows": "512", "Columns": "512"}
                meta = ("1.2.840.10008.1.2.1", 0, f"{study}/{series}/{uid}.dcm", 0.0, None, None)
                yield schema.build_row(keys_i, uid, classes[modality], study, series, meta)
