"""``ferrodicom ls``, ``stats`` and ``verify`` against an archive with known content (issue 24, item 4): two
patients, three studies, four series, seven instances, stored over the network by ``serve``'s storage SCP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, NuclearMedicineImageStorage, generate_uid

from conftest import ferrodicom_cli, free_port, wait_for_port
from ferrodicom import AE, Archive
from ferrodicom.services.storage import StorageSCP, add_storage_contexts, store

#: (patient id, name, study key, study date, series key, modality, instances)
LAYOUT = [
    ("P1", "Doe^Jane", "S1", "20200101", "A", "CT", 2),
    ("P1", "Doe^Jane", "S1", "20200101", "B", "NM", 1),
    ("P1", "Doe^Jane", "S2", "20210615", "C", "CT", 1),
    ("P2", "Roe^Rick", "S3", "20190301", "D", "NM", 3),
]


def _instance(path: Path, patient: str, name: str, study: str, date: str, series: str, modality: str, n: int) -> str:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage if modality == "CT" else NuclearMedicineImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.Modality = patient, name, date, modality
    ds.StudyDescription = f"study {study[-4:]}"
    ds.SeriesNumber, ds.InstanceNumber = 1, n
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.full((16, 16), n, dtype=np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


@pytest.fixture
def known(tmp_path) -> tuple[Path, dict]:
    """A closed archive holding LAYOUT; returns (folder, facts)."""
    src = tmp_path / "src"
    src.mkdir()
    uids = {key: generate_uid() for key in ("S1", "S2", "S3", "A", "B", "C", "D")}
    files, facts = [], {"instances": {}}
    for patient, name, study, date, series, modality, count in LAYOUT:
        for n in range(1, count + 1):
            path = src / f"{study}{series}{n}.dcm"
            uid = _instance(path, patient, name, uids[study], date, uids[series], modality, n)
            files.append(path)
            facts["instances"][uid] = (patient, study, series, modality, path.stat().st_size)
    facts["uids"] = uids
    root = tmp_path / "archive"
    archive = Archive(root)
    ae = AE("FERRO")
    add_storage_contexts(ae)
    ae.add_service(StorageSCP(archive))
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        report = store("127.0.0.1", server.port, files, called_ae="FERRO")
        assert [r.outcome for r in report.results] == ["stored"] * len(files)
    finally:
        server.shutdown()
        archive.close()
    return root, facts


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ferrodicom_cli(), *args], capture_output=True, text=True, timeout=60)


def test_ls_levels_and_filters(known):
    root, facts = known
    uids = facts["uids"]
    r = cli("ls", str(root))
    assert r.returncode == 0, r.stderr
    header, *lines = r.stdout.splitlines()
    assert header.split()[:3] == ["StudyDate", "PatientID", "PatientName"]
    # one line per study, by date; the counts per study
    assert [line.split()[0] for line in lines] == ["20190301", "20200101", "20210615"]
    s1 = next(line for line in lines if uids["S1"] in line).split()
    assert s1[-4:] == ["CT\\NM", "2", "3", uids["S1"]]
    assert r.stderr.strip() == "3 studies"

    r = cli("ls", str(root), "--json", "-k", "PatientID=P1")
    rows = json.loads(r.stdout)
    assert sorted(row["StudyInstanceUID"] for row in rows) == sorted([uids["S1"], uids["S2"]])
    assert {row["StudyInstanceUID"]: row["instances"] for row in rows} == {uids["S1"]: 3, uids["S2"]: 1}

    # a series-level key at the study level, a wildcard, a list
    r = cli("ls", str(root), "--json", "-k", "Modality=NM", "-k", "PatientName=Doe*")
    assert [row["StudyInstanceUID"] for row in json.loads(r.stdout)] == [uids["S1"]]
    r = cli("ls", str(root), "--json", "--level", "series", "-k", f"StudyInstanceUID={uids['S1']}\\{uids['S3']}")
    assert sorted(row["SeriesInstanceUID"] for row in json.loads(r.stdout)) == sorted(uids[k] for k in "ABD")

    r = cli("ls", str(root), "--level", "patient", "--json")
    patients = {row["PatientID"]: row for row in json.loads(r.stdout)}
    assert {p: (row["studies"], row["series"], row["instances"]) for p, row in patients.items()} == {
        "P1": (2, 3, 4),
        "P2": (1, 1, 3),
    }

    r = cli("ls", str(root), "--level", "instance", "--json")
    rows = json.loads(r.stdout)
    assert {row["SOPInstanceUID"] for row in rows} == set(facts["instances"])
    assert all((root / row["path"]).stat().st_size == row["size"] for row in rows)

    r = cli("ls", str(root), "-k", "PatientID=nobody")
    assert r.returncode == 0 and r.stdout == "" and r.stderr.strip() == "0 studies"


def test_ls_bad_arguments_are_one_line_and_exit_2(known, tmp_path):
    root, _ = known
    for args, says in [
        (["-k", "NoSuchKey=1"], "'NoSuchKey' is not an indexed key"),
        (["-k", "PatientID"], "'PatientID' is not KEY=VALUE"),
        (["--level", "frame"], "Invalid value for '--level'"),
    ]:
        r = cli("ls", str(root), *args)
        assert r.returncode == 2, (args, r.stderr)
        (line,) = r.stderr.splitlines()
        assert line.startswith("Error: ") and says in line, line
    missing = tmp_path / "nothing-here"
    for command in ("ls", "stats", "verify"):
        r = cli(command, str(missing))
        assert r.returncode == 2
        assert r.stderr.splitlines() == [
            f"Error: no archive at {missing}: not a folder; give the folder that ferrodicom serve stores into"
        ]
        assert not missing.exists()  # nothing made on disk
    (tmp_path / "plain").mkdir()
    r = cli("verify", "--repair", str(tmp_path / "plain"))
    assert r.returncode == 2 and "it has no index.sqlite" in r.stderr
    assert list((tmp_path / "plain").iterdir()) == []


def test_stats(known):
    root, facts = known
    r = cli("stats", str(root), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["patients"], s["studies"], s["series"], s["instances"]) == (2, 3, 4, 7)
    assert s["bytes"] == sum(p.stat().st_size for p in root.rglob("*.dcm"))
    assert (s["oldest_study_date"], s["newest_study_date"]) == ("20190301", "20210615")
    assert s["oldest_received"] <= s["newest_received"]
    by = {row["modality"]: row for row in s["by_modality"]}
    assert {m: (row["studies"], row["series"], row["instances"]) for m, row in by.items()} == {
        "CT": (2, 2, 3),
        "NM": (2, 2, 4),
    }
    assert by["CT"]["bytes"] + by["NM"]["bytes"] == s["bytes"]
    text = cli("stats", str(root)).stdout
    assert "instances   7" in text and "study date  2019-03-01 .. 2021-06-15" in text and "by modality" in text


def test_verify_finds_damage_and_repair_fixes_it(known, tmp_path):
    root, facts = known
    r = cli("verify", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == ["7 indexed files checked, 7 ok"]

    rows = json.loads(cli("ls", str(root), "--level", "instance", "--json").stdout)
    damaged, gone, other = (root / rows[k]["path"] for k in range(3))
    damaged.write_bytes(damaged.read_bytes()[:-100])  # truncated inside the Pixel Data
    gone.unlink()
    # a file of the archive that the index does not list (copied in by hand), and one that does not parse
    made = tmp_path / "stray.dcm"
    study, series = rows[3]["StudyInstanceUID"], rows[3]["SeriesInstanceUID"]
    stray_uid = _instance(made, "P3", "New^One", study, "20220101", series, "CT", 9)
    stray = root / study / series / f"{stray_uid}.dcm"
    made.rename(stray)
    junk = other.with_name(f"{generate_uid()}.dcm")
    junk.write_bytes(b"\x00" * 200)
    before = sorted(p for p in root.rglob("*") if p.is_file())

    r = cli("verify", str(root))
    assert r.returncode == 1
    out = r.stdout.splitlines()

    def rel(p: Path) -> str:
        return str(p.relative_to(root))

    assert f"missing: {rel(gone)}: indexed, but the file is missing" in out
    (d,) = [line for line in out if line.startswith("damaged: ")]
    assert d.startswith(f"damaged: {rel(damaged)}: truncated data set")
    assert f"not indexed: {rel(stray)}: a file of the archive that the index does not list" in out
    (j,) = [line for line in out if rel(junk) in line]
    assert j.startswith(f"not indexed: {rel(junk)}:") and "does not parse" in j
    assert out[-1] == "7 indexed files checked, 5 ok; 1 missing, 1 damaged, 2 not indexed"
    assert "--repair" in r.stderr
    assert sorted(p for p in root.rglob("*") if p.is_file()) == before  # checking changed nothing

    r = cli("verify", "--repair", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    assert any(
        line.startswith(f"damaged: {rel(damaged)}") and "-> moved to .quarantine/" in line
        for line in r.stdout.splitlines()
    )
    quarantined = sorted(p.name for p in (root / ".quarantine").iterdir())
    assert quarantined == sorted([rel(damaged).replace("/", "_"), rel(junk).replace("/", "_")])
    r = cli("verify", str(root))
    assert r.returncode == 0 and r.stdout.splitlines() == ["6 indexed files checked, 6 ok"]
    instances = {
        row["SOPInstanceUID"] for row in json.loads(cli("ls", str(root), "--level", "instance", "--json").stdout)
    }
    assert stray_uid in instances and len(instances) == 6


def test_ls_and_verify_read_an_archive_that_serve_is_using_and_repair_refuses(known, tmp_path):
    """ls and verify only read, so they work while serve holds the archive; verify --repair needs it to itself and
    says so in one line (exit 1); the read-only commands leave no file behind."""
    root, _ = known
    before = sorted(os.listdir(root))
    shutil.rmtree(root / ".incoming")  # serve makes it again
    before.remove(".incoming")
    r = cli("ls", str(root), "--level", "series")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 5
    assert sorted(os.listdir(root)) == before  # no -wal/-shm left by a reader
    port = free_port()
    proc = subprocess.Popen(
        [*ferrodicom_cli(), "serve", "--aet", "FERRO", "--port", str(port), "--bind", "127.0.0.1", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        assert len(json.loads(cli("ls", str(root), "--level", "instance", "--json").stdout)) == 7
        r = cli("verify", str(root))
        assert r.returncode == 0 and r.stdout.splitlines()[-1] == "7 indexed files checked, 7 ok"
        assert "a running serve holds this archive" in r.stderr
        r = cli("verify", "--repair", str(root))
        assert r.returncode == 1
        assert r.stderr.splitlines() == [
            f"Error: archive {root} is in use by another process; stop the ferrodicom serve (or verify --repair) "
            "using it, or choose another folder"
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
