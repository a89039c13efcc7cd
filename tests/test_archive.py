"""The embedded archive: layout, statuses (PS3.4 B.2.3), duplicates, hostile UIDs, group commit, recovery,
disk full. ``.part`` files are written with pydicom to stand in for the Rust data path's output."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ferrodicom import DicomError
from ferrodicom.archive import (
    PRIVATE_STORE_STATUSES,
    STORE_STATUSES,
    UNKNOWN_DIR,
    Archive,
    ArchiveError,
    Plan,
    StoredInstance,
    check_uid,
    keys_from_dataset,
    store_status_meaning,
)
from ferrodicom.archive import status as st
from ferrodicom.status import category

NM = "1.2.840.10008.5.1.4.1.1.20"
CT = "1.2.840.10008.5.1.4.1.1.2"
HOSTILE = [
    "../../etc",
    "1.2/../../x",
    "/etc/passwd",
    "/tmp",
    "..",
    ".",
    "1" * 300,
    "1." * 40 + "1",  # 81 characters
    "1.2\x00.3",
    "1.2\\..\\..\\x",
    "C:\\x",
    "1..2",
    ".1.2",
    "1.2.",
    "1.2.3a",
    "1.2 .3",
    "\u0661.\u0662",  # Arabic-Indic digits: not PS3.5 digits
]


def make_ds(**attrs: Any) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = NM
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "PID1"
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC1"
    ds.Modality = "NM"
    ds.SeriesNumber = 3
    ds.InstanceNumber = 1
    ds.NumberOfFrames = 4
    ds.ImageType = ["ORIGINAL", "PRIMARY", "STATIC"]
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    for key, value in attrs.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def write_part(archive: Archive, ds: Dataset, **fields: Any) -> StoredInstance:
    """A complete Part 10 file in .incoming plus the StoredInstance the data path would pass."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", NM)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "1.2.3")
    ds.file_meta.SourceApplicationEntityTitle = "MODALITY"
    part = archive.new_part_path()
    ds.save_as(part, enforce_file_format=True)
    args: dict[str, Any] = {
        "part_path": part,
        "size": part.stat().st_size,
        "sop_class_uid": str(ds.get("SOPClassUID", NM)),
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
        "transfer_syntax_uid": ExplicitVRLittleEndian,
        "calling_ae": "MODALITY",
        "called_ae": "FERRO",
        "keys": keys_from_dataset(ds),
    }
    args.update(fields)
    return StoredInstance(**args)


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def dcm_files(root: Path) -> list[str]:
    return [f for f in files_under(root) if f.endswith(".dcm") and not f.startswith(".")]


def assert_consistent(archive: Archive) -> None:
    """Every row has its file, every archive file has its row, no temporary files."""
    root = archive.root
    assert list(archive.incoming_dir.iterdir()) == []
    rows = archive.query()
    assert sorted(r["path"] for r in rows) == dcm_files(root)
    for r in rows:
        assert (root / r["path"]).stat().st_size == r["size"]


@pytest.fixture
def archive(tmp_path: Path):
    a = Archive(tmp_path / "arc")
    yield a
    a.close()


# -- layout and success ----------------------------------------------------------------------------


def test_success_layout_and_index(archive: Archive) -> None:
    ds = make_ds()
    inst = write_part(archive, ds)
    sent = Path(inst.part_path).read_bytes()
    assert archive.ingest(inst) == (0x0000, None)
    rel = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    assert (archive.root / rel).read_bytes() == sent
    assert not Path(inst.part_path).exists()
    (row,) = archive.query(SOPInstanceUID=ds.SOPInstanceUID)
    assert row["path"] == rel
    assert row["size"] == len(sent)
    assert row["SOPClassUID"] == NM
    assert row["TransferSyntaxUID"] == ExplicitVRLittleEndian
    assert row["calling_ae"] == "MODALITY" and row["called_ae"] == "FERRO"
    assert row["PatientName"] == "Doe^Jane" and row["PatientSex"] == "F"
    assert row["StudyDate"] == "20240102" and row["AccessionNumber"] == "ACC1"
    assert row["Modality"] == "NM" and row["SeriesNumber"] == "3"
    assert row["NumberOfFrames"] == "4" and row["ImageType"] == "ORIGINAL\\PRIMARY\\STATIC"
    assert row["Manufacturer"] == "GE MEDICAL SYSTEMS"
    assert abs(row["received_at"] - time.time()) < 60
    assert archive.count() == 1
    assert_consistent(archive)


def test_query_levels_and_filters(archive: Archive) -> None:
    study = generate_uid()
    series = [generate_uid(), generate_uid()]
    for i in range(6):
        ds = make_ds(StudyInstanceUID=study, SeriesInstanceUID=series[i % 2], InstanceNumber=i + 1)
        assert archive.ingest(write_part(archive, ds))[0] == 0
    other = make_ds(PatientID="PID2", PatientName="Roe^Rick", Modality="CT", SOPClassUID=CT)
    assert archive.ingest(write_part(archive, other))[0] == 0

    assert archive.count() == 7
    assert len(archive.query("patient")) == 2
    assert {r["StudyInstanceUID"] for r in archive.query("study", PatientID="PID1")} == {study}
    assert len(archive.query("series", StudyInstanceUID=study)) == 2
    assert len(archive.query(SeriesInstanceUID=series[0])) == 3
    assert len(archive.query("IMAGE", StudyInstanceUID=study)) == 6
    assert [r["PatientID"] for r in archive.query("study", PatientName="Roe*")] == ["PID2"]
    assert len(archive.query(PatientName="Doe^Ja?e")) == 6
    assert len(archive.query(Modality=["CT", "MR"])) == 1
    assert archive.query(StudyDescription=None, PatientID="PID2")[0]["Modality"] == "CT"
    assert archive.query(PatientID="nobody") == []
    with pytest.raises(ArchiveError):
        archive.query(NoSuchKey="x")
    with pytest.raises(ArchiveError):
        archive.query("frame")


def test_study_attributes_upserted_not_erased(archive: Archive) -> None:
    study = generate_uid()
    a = make_ds(StudyInstanceUID=study, StudyDescription="first")
    b = make_ds(StudyInstanceUID=study, StudyDescription=None, AccessionNumber="ACC2")
    assert archive.ingest(write_part(archive, a))[0] == 0
    assert archive.ingest(write_part(archive, b))[0] == 0
    (row,) = archive.query("study", StudyInstanceUID=study)
    assert row["StudyDescription"] == "first"  # a missing value does not erase a known one
    assert row["AccessionNumber"] == "ACC2"  # a new value wins


# -- statuses --------------------------------------------------------------------------------------


def test_parse_error_is_c000(archive: Archive) -> None:
    inst = write_part(archive, make_ds(), parse_error="truncated element at offset 812")
    status, comment = archive.ingest(inst)
    assert status == st.CANNOT_UNDERSTAND == 0xC000
    assert "truncated" in comment and len(comment) <= 64
    assert files_under(archive.root) == ["index.sqlite"] or dcm_files(archive.root) == []
    assert not Path(inst.part_path).exists() and archive.count() == 0


@pytest.mark.parametrize("uid", HOSTILE)
def test_hostile_sop_instance_uid_refused(tmp_path: Path, uid: str) -> None:
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    with Archive(tmp_path / "arc") as archive:
        ds = make_ds()
        inst = write_part(archive, ds, sop_instance_uid=uid, keys={**keys_from_dataset(ds), "SOPInstanceUID": uid})
        status, comment = archive.ingest(inst)
        assert status == st.INVALID_SOP_INSTANCE_UID
        assert comment.startswith("SOP Instance UID") and len(comment) <= 64
        assert archive.count() == 0
        assert dcm_files(archive.root) == []
        assert list(archive.incoming_dir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arc"]


@pytest.mark.parametrize("uid", HOSTILE)
def test_hostile_study_and_series_uid_stay_inside(tmp_path: Path, uid: str) -> None:
    with Archive(tmp_path / "arc") as archive:
        ds = make_ds()
        keys = {**keys_from_dataset(ds), "StudyInstanceUID": uid, "SeriesInstanceUID": uid}
        status, comment = archive.ingest(write_part(archive, ds, keys=keys))
        assert status == st.WARN_MISMATCH == 0xB007
        assert "Study Instance UID" in comment
        (row,) = archive.query()
        assert row["path"] == f"{UNKNOWN_DIR}/{UNKNOWN_DIR}/{ds.SOPInstanceUID}.dcm"
        assert row["StudyInstanceUID"] == uid  # the index keeps the value as received
        real = (archive.root / row["path"]).resolve()
        assert real.is_file() and archive.root in real.parents
        assert sorted(p.name for p in tmp_path.iterdir()) == ["arc"]


def test_missing_study_and_series_uid_stored_under_unknown(archive: Archive) -> None:
    ds = make_ds(StudyInstanceUID=None)
    status, comment = archive.ingest(write_part(archive, ds))
    assert status == 0xB007 and "Study Instance UID: missing" in comment
    ds2 = make_ds(SeriesInstanceUID=None)
    status, comment = archive.ingest(write_part(archive, ds2))
    assert status == 0xB007 and "Series Instance UID: missing" in comment
    paths = {r["SOPInstanceUID"]: r["path"] for r in archive.query()}
    assert paths[ds.SOPInstanceUID] == f"{UNKNOWN_DIR}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    assert paths[ds2.SOPInstanceUID] == f"{ds2.StudyInstanceUID}/{UNKNOWN_DIR}/{ds2.SOPInstanceUID}.dcm"
    assert archive.query(SOPInstanceUID=ds.SOPInstanceUID)[0]["StudyInstanceUID"] == ""
    assert_consistent(archive)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_leading_zero_uids_accepted_with_warning(archive: Archive, caplog: pytest.LogCaptureFixture) -> None:
    uid = "1.2.840.0123.1"
    ds = make_ds(SOPInstanceUID=uid, StudyInstanceUID="1.2.03.4")
    with caplog.at_level(logging.WARNING, logger="ferrodicom.archive"):
        assert archive.ingest(write_part(archive, ds)) == (0, None)
    assert "leading zero" in caplog.text
    assert (archive.root / "1.2.03.4" / ds.SeriesInstanceUID / f"{uid}.dcm").is_file()
    assert check_uid("1.2.0.3") == (True, None)
    assert check_uid("1.02")[0] is True and check_uid("1.02")[1] is not None


def test_uid_padding_trimmed(archive: Archive) -> None:
    ds = make_ds()
    inst = write_part(archive, ds, sop_instance_uid=ds.SOPInstanceUID + "\x00", sop_class_uid=NM + " ")
    assert archive.ingest(inst) == (0, None)
    assert archive.query()[0]["path"].endswith(f"/{ds.SOPInstanceUID}.dcm")


def test_sop_class_mismatch_is_a900(archive: Archive) -> None:
    ds = make_ds()
    inst = write_part(archive, ds, sop_class_uid=CT)
    status, comment = archive.ingest(inst)
    assert status == st.SOP_CLASS_MISMATCH == 0xA900 and "SOP Class" in comment
    assert archive.count() == 0 and dcm_files(archive.root) == [] and not Path(inst.part_path).exists()


def test_sop_instance_mismatch_is_a900(archive: Archive) -> None:
    ds = make_ds()
    inst = write_part(archive, ds, sop_instance_uid=generate_uid())
    status, comment = archive.ingest(inst)
    assert status == 0xA900 and "SOP Instance UID" in comment
    assert archive.count() == 0 and dcm_files(archive.root) == []


def test_data_set_without_sop_uids_stored_with_b007(archive: Archive) -> None:
    ds = make_ds()
    uid = ds.SOPInstanceUID
    del ds.SOPInstanceUID
    del ds.SOPClassUID
    inst = write_part(archive, ds, sop_instance_uid=uid, sop_class_uid=NM)
    status, comment = archive.ingest(inst)
    assert status == 0xB007 and "SOP Instance/Class" in comment
    (row,) = archive.query()
    assert row["SOPInstanceUID"] == uid and row["SOPClassUID"] == NM  # from the command


def test_missing_part_file_is_c002(archive: Archive) -> None:
    inst = write_part(archive, make_ds())
    os.unlink(inst.part_path)
    status, comment = archive.ingest(inst)
    assert status == st.RECEIVED_FILE_UNUSABLE == 0xC002 and "missing" in comment
    assert archive.count() == 0 and dcm_files(archive.root) == []


def test_series_directory_removed_while_running(archive: Archive) -> None:
    ds = make_ds()
    assert archive.ingest(write_part(archive, ds))[0] == 0
    series_dir = archive.root / ds.StudyInstanceUID / ds.SeriesInstanceUID
    for f in series_dir.iterdir():
        f.unlink()
    series_dir.rmdir()
    same_series = dict(StudyInstanceUID=ds.StudyInstanceUID, SeriesInstanceUID=ds.SeriesInstanceUID)
    inst = write_part(archive, make_ds(**same_series))
    assert archive.ingest(inst)[0] == st.OUT_OF_RESOURCES_IO
    assert not Path(inst.part_path).exists()
    assert archive.ingest(write_part(archive, make_ds(**same_series)))[0] == 0  # made again


def test_coerced_and_discarded_warnings(archive: Archive) -> None:
    assert archive.ingest(write_part(archive, make_ds(), coerced=True))[0] == 0xB000
    assert archive.ingest(write_part(archive, make_ds(), discarded=True))[0] == 0xB006
    assert archive.count() == 2


def test_part_outside_incoming_is_a_programming_error(archive: Archive, tmp_path: Path) -> None:
    inst = write_part(archive, make_ds())
    outside = tmp_path / "elsewhere.part"
    os.replace(inst.part_path, outside)
    inst.part_path = outside
    with pytest.raises(ArchiveError):
        archive.ingest(inst)
    assert issubclass(ArchiveError, DicomError)


def test_unreadable_index_is_a701(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = write_part(archive, make_ds())

    def broken(self: Any, uid: str) -> None:
        raise sqlite3.DatabaseError("disk I/O error")

    monkeypatch.setattr(Archive, "_lookup", broken)
    status, comment = archive.ingest(inst)
    assert status == st.OUT_OF_RESOURCES_INDEX and "I/O" in comment
    assert not Path(inst.part_path).exists() and dcm_files(archive.root) == []


def test_placed_file_answered_early_survives_an_archive_closing_under_it(tmp_path: Path) -> None:
    """Durability none: the data path may have answered as soon as the file was placed; if the archive closes
    before the row is queued, the file stays and the next open (full scan) indexes it."""
    archive = Archive(tmp_path / "arc", durability="none")
    ds = make_ds()
    inst = write_part(archive, ds)
    plan = archive.prepare(inst.sop_class_uid, inst.sop_instance_uid, inst.keys)
    assert isinstance(plan, Plan) and archive.early_status(plan) == (0, None)
    os.replace(inst.part_path, plan.final)
    archive.close()
    assert archive.complete(plan, inst)[0] == st.OUT_OF_RESOURCES_CLOSED
    assert Path(plan.final).exists()
    with Archive(tmp_path / "arc", durability="none") as again:
        assert again.last_recovery["reindexed"] == 1
        assert again.query("instance", SOPInstanceUID=str(ds.SOPInstanceUID))[0]["path"] == plan.rel


def test_closed_archive_refuses_with_a703(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "arc")
    inst = write_part(archive, make_ds())
    archive.close()
    assert archive.ingest(inst)[0] == st.OUT_OF_RESOURCES_CLOSED
    assert not Path(inst.part_path).exists()


def test_bad_options_raise(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="durability"):
        Archive(tmp_path / "a", durability="fast")
    with pytest.raises(ArchiveError, match="duplicates"):
        Archive(tmp_path / "a", duplicates="overwrite")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArchiveError):
        Archive(tmp_path / "file")


def test_one_archive_per_directory(tmp_path: Path) -> None:
    with Archive(tmp_path / "arc"):
        with pytest.raises(ArchiveError, match="in use"):
            Archive(tmp_path / "arc")
    with Archive(tmp_path / "arc") as again:  # the lock goes with close()
        assert again.count() == 0


def test_status_table() -> None:
    for code in STORE_STATUSES:
        expected = {0: "Success", 0xB: "Warning"}.get(code >> 12, "Failure")
        assert category(code) == expected, hex(code)
    assert store_status_meaning(0xA710, "entegra").endswith("could not write dataset")
    assert store_status_meaning(0xA760, "xeleris").startswith("Default destination for PET RAW")
    assert store_status_meaning(0xA713, "pacs-iw").endswith("not enough disk space")
    assert "pixel data size" in store_status_meaning(0xC011, "pacs-iw")
    assert store_status_meaning(0xC003) == STORE_STATUSES[0xC003]
    assert store_status_meaning(0xA700, "pacs-iw") == STORE_STATUSES[0xA700]  # PACS-IW defines no A700
    assert "out of resources" in store_status_meaning(0xA7F0)
    assert set(PRIVATE_STORE_STATUSES) == {"entegra", "xeleris", "pacs-iw"}
    assert len(PRIVATE_STORE_STATUSES["pacs-iw"]) == 12  # A710, A711-A717, A900, C010-C012
    with pytest.raises(KeyError):
        store_status_meaning(0xA700, "nobody")


def test_entegra_and_xeleris_codes_match_systems_json() -> None:
    from ferrodicom.profiles import catalog

    for system in ("entegra", "xeleris"):
        codes = {int(r["code"], 16): r["meaning"] for r in catalog.system(system)["private_status_codes"]}
        assert codes == PRIVATE_STORE_STATUSES[system]


# -- duplicates ------------------------------------------------------------------------------------


def _dup_pair(archive: Archive, **second: Any) -> tuple[Dataset, StoredInstance, StoredInstance]:
    ds = make_ds(InstanceNumber=1)
    first = write_part(archive, ds)
    ds2 = make_ds(
        SOPInstanceUID=ds.SOPInstanceUID,
        StudyInstanceUID=ds.StudyInstanceUID,
        SeriesInstanceUID=ds.SeriesInstanceUID,
        InstanceNumber=2,
    )
    for k, v in second.items():
        setattr(ds2, k, v)
    return ds, first, write_part(archive, ds2)


def test_duplicate_keep_first(archive: Archive) -> None:
    ds, first, second = _dup_pair(archive)
    first_bytes = Path(first.part_path).read_bytes()
    assert archive.ingest(first) == (0, None)
    assert archive.ingest(second) == (0, None)
    (row,) = archive.query()
    assert row["InstanceNumber"] == "1"
    assert (archive.root / row["path"]).read_bytes() == first_bytes
    assert_consistent(archive)


def test_duplicate_replace_same_place(tmp_path: Path) -> None:
    with Archive(tmp_path / "arc", duplicates="replace") as archive:
        ds, first, second = _dup_pair(archive)
        second_bytes = Path(second.part_path).read_bytes()
        assert archive.ingest(first) == (0, None)
        assert archive.ingest(second) == (0, None)
        (row,) = archive.query()
        assert row["InstanceNumber"] == "2"
        assert (archive.root / row["path"]).read_bytes() == second_bytes
        assert_consistent(archive)


def test_duplicate_replace_moved_to_another_series(tmp_path: Path) -> None:
    with Archive(tmp_path / "arc", duplicates="replace") as archive:
        new_series = generate_uid()
        ds, first, second = _dup_pair(archive, SeriesInstanceUID=new_series)
        assert archive.ingest(first)[0] == 0
        old = archive.query()[0]["path"]
        assert archive.ingest(second)[0] == 0
        (row,) = archive.query()
        assert row["SeriesInstanceUID"] == new_series and row["path"] != old
        assert not (archive.root / old).exists()
        assert_consistent(archive)


def test_duplicate_reject(tmp_path: Path) -> None:
    with Archive(tmp_path / "arc", duplicates="reject") as archive:
        ds, first, second = _dup_pair(archive)
        first_bytes = Path(first.part_path).read_bytes()
        assert archive.ingest(first) == (0, None)
        status, comment = archive.ingest(second)
        assert status == st.DUPLICATE_REJECTED == 0xC003 and "duplicate" in comment
        (row,) = archive.query()
        assert (archive.root / row["path"]).read_bytes() == first_bytes
        assert_consistent(archive)


@pytest.mark.parametrize("policy", ["keep-first", "reject", "replace"])
def test_concurrent_duplicates(tmp_path: Path, policy: str) -> None:
    with Archive(tmp_path / "arc", duplicates=policy) as archive:
        base = make_ds()
        parts = []
        for _ in range(8):
            ds = make_ds(
                SOPInstanceUID=base.SOPInstanceUID,
                StudyInstanceUID=base.StudyInstanceUID,
                SeriesInstanceUID=base.SeriesInstanceUID,
            )
            parts.append(write_part(archive, ds))
        results: list[int] = []
        threads = [threading.Thread(target=lambda p=p: results.append(archive.ingest(p)[0])) for p in parts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if policy == "reject":
            assert sorted(results) == [0] + [0xC003] * 7
        else:
            assert results == [0] * 8
        assert archive.count() == 1
        assert_consistent(archive)


# -- durability and group commit -------------------------------------------------------------------


def test_group_commit_eight_threads(tmp_path: Path) -> None:
    with Archive(tmp_path / "arc", durability="full") as archive:
        per_thread = 40
        parts = [[write_part(archive, make_ds()) for _ in range(per_thread)] for _ in range(8)]
        statuses: list[int] = []
        lock = threading.Lock()

        def run(items: list[StoredInstance]) -> None:
            for inst in items:
                status = archive.ingest(inst)[0]
                with lock:
                    statuses.append(status)

        threads = [threading.Thread(target=run, args=(p,)) for p in parts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [0] * (8 * per_thread)
        stats = archive.stats
        assert archive.count() == 8 * per_thread == stats["rows"]
        assert stats["commits"] < stats["rows"]  # commits covered several rows
        assert stats["max_batch"] > 1
        uids = {inst.sop_instance_uid for p in parts for inst in p}
        assert {r["SOPInstanceUID"] for r in archive.query()} == uids
        assert_consistent(archive)


def test_durability_none_warns_and_is_correct(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ferrodicom.archive"):
        archive = Archive(tmp_path / "arc", durability="none")
    assert "durability none" in caplog.text and "operating system" in caplog.text
    with archive:
        insts = [write_part(archive, make_ds()) for _ in range(50)]
        assert [archive.ingest(i)[0] for i in insts] == [0] * 50
        assert archive.count() == 50
        conn = sqlite3.connect(str(archive.root / "index.sqlite"))
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
        assert_consistent(archive)


def test_full_durability_syncs_file_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    with Archive(tmp_path / "arc") as archive:
        ds = make_ds()
        inst = write_part(archive, ds)
        monkeypatch.setattr(os, "fsync", spy)
        assert archive.ingest(inst)[0] == 0
        monkeypatch.undo()
        study = str(archive.root / ds.StudyInstanceUID)
        series = f"{study}/{ds.SeriesInstanceUID}"
        assert str(archive.root) in synced and study in synced and series in synced
        conn = sqlite3.connect(str(archive.root / "index.sqlite"))
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


# -- recovery --------------------------------------------------------------------------------------


def _unclean(archive: Archive) -> None:
    """Closes, then removes the clean-shutdown marker: the next open scans as after a crash."""
    archive.close()
    (archive.root / ".clean-shutdown").unlink()


def test_recovery_simulated(tmp_path: Path) -> None:
    root = tmp_path / "arc"
    archive = Archive(root)
    kept = [make_ds() for _ in range(3)]
    for ds in kept:
        assert archive.ingest(write_part(archive, ds))[0] == 0
    leftover = write_part(archive, make_ds())  # crash before ingest: .part left behind
    # crash between rename and commit: a complete file in place, no index row
    orphan = make_ds(PatientID="ORPHAN")
    orphan_inst = write_part(archive, orphan)
    orphan_rel = f"{orphan.StudyInstanceUID}/{orphan.SeriesInstanceUID}/{orphan.SOPInstanceUID}.dcm"
    (root / orphan_rel).parent.mkdir(parents=True)
    os.replace(orphan_inst.part_path, root / orphan_rel)
    # an indexed row whose file is gone
    lost = kept[0]
    (root / lost.StudyInstanceUID / lost.SeriesInstanceUID / f"{lost.SOPInstanceUID}.dcm").unlink()
    # an unreadable file in place
    junk = root / kept[1].StudyInstanceUID / kept[1].SeriesInstanceUID / f"{generate_uid()}.dcm"
    junk.write_bytes(b"not dicom")
    _unclean(archive)

    archive = Archive(root)
    try:
        rec = archive.last_recovery
        assert rec["full_scan"] == 1
        assert rec["part_removed"] == 1 and not Path(leftover.part_path).exists()
        assert rec["reindexed"] == 1 and rec["rows_removed"] == 1 and rec["quarantined"] == 1
        assert archive.count() == 3
        (row,) = archive.query(PatientID="ORPHAN")
        assert row["path"] == orphan_rel and row["calling_ae"] == "MODALITY"
        assert row["TransferSyntaxUID"] == ExplicitVRLittleEndian and row["NumberOfFrames"] == "4"
        assert archive.query(SOPInstanceUID=lost.SOPInstanceUID) == []
        assert (root / ".quarantine").is_dir() and not junk.exists()
        assert_consistent(archive)
    finally:
        archive.close()
    # A clean reopen only clears .incoming.
    archive = Archive(root)
    assert archive.last_recovery["full_scan"] == 0 and archive.count() == 3
    archive.close()


def test_recovery_removes_stale_copy_left_by_replace(tmp_path: Path) -> None:
    root = tmp_path / "arc"
    archive = Archive(root, duplicates="replace")
    ds = make_ds()
    assert archive.ingest(write_part(archive, ds))[0] == 0
    old_rel = archive.query()[0]["path"]
    stale = (root / old_rel).read_bytes()
    moved = make_ds(SOPInstanceUID=ds.SOPInstanceUID, StudyInstanceUID=ds.StudyInstanceUID)
    assert archive.ingest(write_part(archive, moved))[0] == 0
    (root / old_rel).write_bytes(stale)  # as if the process died before removing the old copy
    _unclean(archive)
    with Archive(root, duplicates="replace") as archive:
        assert archive.last_recovery["duplicates_removed"] == 1
        (row,) = archive.query()
        assert row["SeriesInstanceUID"] == moved.SeriesInstanceUID
        assert_consistent(archive)


def test_recover_on_demand_and_clean_open_clears_incoming(tmp_path: Path) -> None:
    root = tmp_path / "arc"
    with Archive(root) as archive:
        assert archive.ingest(write_part(archive, make_ds()))[0] == 0
        stray = write_part(archive, make_ds())
    assert Path(stray.part_path).exists()
    with Archive(root) as archive:
        assert archive.last_recovery["full_scan"] == 0 and archive.last_recovery["part_removed"] == 1
        counts = archive.recover()
        assert counts["full_scan"] == 1 and counts["reindexed"] == 0 and counts["rows_removed"] == 0
        assert archive.count() == 1


CRASH_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    sys.path.insert(0, sys.argv[2])
    from test_archive import make_ds, write_part
    from ferrodicom.archive import Archive
    archive = Archive(sys.argv[1], durability="full")
    out = threading.Lock()
    def run():
        while True:
            ds = make_ds()
            status, _ = archive.ingest(write_part(archive, ds))
            if status == 0:
                with out:
                    sys.stdout.write(ds.SOPInstanceUID + "\\n")
                    sys.stdout.flush()
    for _ in range(4):
        threading.Thread(target=run, daemon=True).start()
    threading.Event().wait()
    """
)


@pytest.mark.parametrize("acks_before_kill", [40, 150])
def test_recovery_after_sigkill(tmp_path: Path, acks_before_kill: int) -> None:
    root = tmp_path / "arc"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(root), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while len(acked) < acks_before_kill and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(line.strip())
        assert len(acked) >= acks_before_kill, f"child stopped early (rc={proc.poll()})"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Archive(root) as archive:
        assert archive.last_recovery["full_scan"] == 1
        indexed = {r["SOPInstanceUID"] for r in archive.query()}
        assert set(acked) <= indexed  # every acknowledged instance survived
        for uid in acked:
            (row,) = archive.query(SOPInstanceUID=uid)
            assert (root / row["path"]).stat().st_size == row["size"]
        assert_consistent(archive)


# -- disk full -------------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 2 MB tmpfs with 64 inodes (root may mount here); None where mounting is not permitted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,nr_inodes=64", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if res.returncode != 0:
        warnings.warn(f"tmpfs mount not permitted ({res.stderr.strip()}): disk full is simulated", stacklevel=1)
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(directory: Path) -> None:
    """Fills the filesystem's blocks (one big file) until ENOSPC."""
    with open(directory / "filler", "wb") as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_disk_full_while_indexing_leaves_nothing(small_fs: Path | None, tmp_path: Path, monkeypatch) -> None:
    if small_fs is not None:
        archive = Archive(small_fs / "arc")
        inst = write_part(archive, make_ds())
        _fill(small_fs)
    else:  # fallback: the index write fails as SQLite does on a full disk
        archive = Archive(tmp_path / "arc")
        inst = write_part(archive, make_ds())
        from ferrodicom.archive.index import Committer

        def full(self: Any, ops: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(Committer, "_apply", full)
    try:
        status, comment = archive.ingest(inst)
        assert status == st.OUT_OF_RESOURCES_INDEX == 0xA701, comment
        assert "full" in comment
        if small_fs is not None:
            (small_fs / "filler").unlink()
        else:
            monkeypatch.undo()
        assert dcm_files(archive.root) == [] and list(archive.incoming_dir.iterdir()) == []
        assert archive.count() == 0
        # space is back: the archive works again
        assert archive.ingest(write_part(archive, make_ds()))[0] == 0
        assert_consistent(archive)
    finally:
        archive.close()


def test_disk_full_while_placing_leaves_nothing(small_fs: Path | None, tmp_path: Path, monkeypatch) -> None:
    if small_fs is not None:
        archive = Archive(small_fs / "arc")
        inst = write_part(archive, make_ds())
        # use up the inodes so that the new study directory cannot be made
        spare = small_fs / "inodes"
        spare.mkdir()
        n = 0
        try:
            while True:
                (spare / str(n)).touch()
                n += 1
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    else:  # fallback: the rename fails as on a full disk
        archive = Archive(tmp_path / "arc")
        inst = write_part(archive, make_ds())

        def no_space(src: Any, dst: Any) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "replace", no_space)
    try:
        status, comment = archive.ingest(inst)
        assert status == st.OUT_OF_RESOURCES_DISK == 0xA700
        assert "disk full" in comment
        monkeypatch.undo()
        assert not Path(inst.part_path).exists()
        assert dcm_files(archive.root) == [] and archive.count() == 0
    finally:
        archive.close()
