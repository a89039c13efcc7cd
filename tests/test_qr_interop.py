"""Q/R with real peers in their own processes: DCMTK's findscu (-P, -S, --cancel), movescu and getscu against
``ferrodicom serve``; ``ferrodicom find/move/get`` against DCMTK's dcmqrscp and pynetdicom's qrscp app. Every
moved or retrieved instance is compared with the file that was stored (attributes and pixels)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pydicom
import pytest
from qr_corpus import PATIENTS, study_uid, synthetic_rows, write_corpus
from qr_peers import dcmqrscp, fill, pynetdicom_qrscp, serve

from conftest import dcmtk, dcmtk_env, ferrodicom_cli, free_port, wait_for_port
from ferrodicom import Archive

ATTRIBUTES = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID", "PatientName",
              "StudyDate", "StudyTime", "AccessionNumber", "Modality", "SeriesNumber", "InstanceNumber", "Rows",
              "Columns", "ImageType")  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qr-corpus")
    items = write_corpus(folder)
    return folder, {i.sop_uid: i for i in items}


def assert_same_files(received: list[Path], corpus_items: dict, expected_uids: set[str]) -> None:
    """Each received file is one of the corpus's, with the same attributes and pixels."""
    seen = set()
    for path in received:
        got = pydicom.dcmread(path)
        uid = str(got.SOPInstanceUID)
        want = pydicom.dcmread(corpus_items[uid].path)
        for kw in ATTRIBUTES:
            assert str(got.get(kw)) == str(want.get(kw)), (path, kw)
        assert got.pixel_array.tobytes() == want.pixel_array.tobytes(), path
        seen.add(uid)
    assert seen == expected_uids


def expected(corpus_items: dict, **where) -> set[str]:
    return {u for u, i in corpus_items.items() if all(getattr(i, k) == v for k, v in where.items())}


def run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def cli(*args) -> subprocess.CompletedProcess:
    return run([*ferrodicom_cli(), *args])


@pytest.fixture
def storescp(tmp_path):
    """DCMTK's storescp as the move destination "DEST" (files into tmp_path/dest)."""
    out = tmp_path / "dest"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen([dcmtk("storescp"), "-aet", "DEST", "-od", str(out), str(port)], env=dcmtk_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for_port(port, proc)
        yield port, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- DCMTK SCUs -> ferrodicom serve -----------------------------------------------------------------------


BULK_STUDY = "1.2.826.0.1.3680043.8.498.21.7.1"


@pytest.fixture
def node(tmp_path, corpus, storescp):
    """``ferrodicom serve`` holding the corpus (stored by ``ferrodicom store``) and 2,000 index rows without
    files (one study, for a C-FIND long enough to be cancelled)."""
    with Archive(tmp_path / "archive", durability="none") as archive:
        archive.index.bulk_load(synthetic_rows(archive.schema, 1, 1, 1, 2000, prefix="7"))
    with serve(tmp_path / "archive", "FERRO", {"DEST": storescp[0]}) as port:
        r = cli("store", "--aec", "FERRO", "127.0.0.1", str(port), str(corpus[0]))
        assert r.returncode == 0, r.stderr
        yield port, storescp[1]


def findscu(port, *args):
    r = run([dcmtk("findscu"), "-v", "-aec", "FERRO", *args, "127.0.0.1", str(port)], env=dcmtk_env())
    assert r.returncode == 0, r.stderr
    text = r.stdout + r.stderr
    return text, len(re.findall(r"Find Response: \d+ \(Pending\)", text))


def test_findscu_patient_and_study_root_and_cancel(node):
    port = node[0]
    # Patient Root, PATIENT level, a UTF-8 name matched without regard to case and accents
    text, n = findscu(port, "-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "SpecificCharacterSet=ISO_IR 192",
                      "-k", "PatientName=MULLER*", "-k", "PatientID")  # fmt: skip
    assert n == 1 and "Müller^Hans" in text and "P001" in text
    # Patient Root, STUDY level under a patient
    text, n = findscu(port, "-P", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=P003", "-k", "StudyInstanceUID",
                      "-k", "NumberOfStudyRelatedInstances")  # fmt: skip
    assert n == 2 and study_uid(2, 1) in text and study_uid(2, 2) in text
    # Study Root, STUDY level, a date range and modalities
    text, n = findscu(port, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyDate=20200101-20221231",
                      "-k", "ModalitiesInStudy", "-k", "PatientName")  # fmt: skip
    assert n == 3 and "Łukasik^Zoë" in text
    # Study Root, IMAGE level
    text, n = findscu(port, "-S", "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={study_uid(1, 1)}",
                      "-k", f"SeriesInstanceUID={study_uid(1, 1)}.1", "-k", "SOPInstanceUID")  # fmt: skip
    assert n == 3
    # --cancel after the first response: the final status is Cancel
    text, n = findscu(
        port,
        "-S",
        "--cancel",
        "1",
        "-k",
        "QueryRetrieveLevel=IMAGE",
        "-k",
        f"StudyInstanceUID={BULK_STUDY}",
        "-k",
        "SeriesInstanceUID",
        "-k",
        "SOPInstanceUID",
    )
    assert "Sending Cancel Request" in text and "Received Final Find Response (Cancel" in text
    assert 1 <= n < 2000


def test_movescu_and_getscu(node, corpus, tmp_path):
    port, dest = node
    r = run([dcmtk("movescu"), "-S", "-aec", "FERRO", "-aem", "DEST", "-k", "QueryRetrieveLevel=STUDY",
             "-k", f"StudyInstanceUID={study_uid(0, 1)}\\{study_uid(4, 1)}", "127.0.0.1", str(port)],
            env=dcmtk_env())  # fmt: skip
    assert r.returncode == 0 and "E:" not in r.stderr, r.stderr
    uids = expected(corpus[1], study_uid=study_uid(0, 1)) | expected(corpus[1], study_uid=study_uid(4, 1))
    assert_same_files(sorted(dest.iterdir()), corpus[1], uids)
    # Patient Root C-MOVE of a series
    r = run([dcmtk("movescu"), "-P", "-aec", "FERRO", "-aem", "DEST", "-k", "QueryRetrieveLevel=SERIES",
             "-k", "PatientID=P001", "-k", f"StudyInstanceUID={study_uid(0, 2)}",
             "-k", f"SeriesInstanceUID={study_uid(0, 2)}.1", "127.0.0.1", str(port)], env=dcmtk_env())  # fmt: skip
    assert r.returncode == 0 and "E:" not in r.stderr, r.stderr
    assert len(list(dest.iterdir())) == len(uids) + 2
    # C-GET: same association, role selection
    out = tmp_path / "got"
    out.mkdir()
    r = run([dcmtk("getscu"), "-S", "-aec", "FERRO", "-od", str(out), "-k", "QueryRetrieveLevel=SERIES",
             "-k", f"StudyInstanceUID={study_uid(2, 2)}", "-k", f"SeriesInstanceUID={study_uid(2, 2)}.1\\"
             f"{study_uid(2, 2)}.2", "127.0.0.1", str(port)], env=dcmtk_env())  # fmt: skip
    assert r.returncode == 0 and "E:" not in r.stderr, r.stderr
    assert_same_files(sorted(out.iterdir()), corpus[1], expected(corpus[1], study_uid=study_uid(2, 2)))
    # an unknown destination: A801
    r = run([dcmtk("movescu"), "-S", "-aec", "FERRO", "-aem", "NOWHERE", "-k", "QueryRetrieveLevel=STUDY",
             "-k", f"StudyInstanceUID={study_uid(0, 1)}", "127.0.0.1", str(port)], env=dcmtk_env())  # fmt: skip
    assert "MoveDestinationUnknown" in r.stderr, r.stderr


def test_serve_moves_to_its_own_ae_title(node):
    """The archive's own AE title is a destination: the instances are stored again (kept, as duplicates)."""
    r = cli("move", "--aec", "FERRO", "--aem", "FERRO", "-k", f"StudyInstanceUID={study_uid(3, 1)}",
            "127.0.0.1", str(node[0]))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 completed, 0 failed" in r.stdout


# --- ferrodicom SCU -> dcmqrscp and pynetdicom's qrscp -----------------------------------------------------


@pytest.fixture(params=["dcmqrscp", "pynetdicom"])
def other_scp(request, tmp_path, corpus, storescp):
    files = sorted(corpus[0].glob("*.dcm"))
    if request.param == "dcmqrscp":
        with dcmqrscp(tmp_path / "area", files, "DCMQR", {"DEST": storescp[0]}) as port:
            yield "DCMQR", port, storescp[1]
    else:
        with pynetdicom_qrscp(tmp_path / "pyn", "PYNQR", {"DEST": storescp[0]}) as port:
            fill(port, "PYNQR", files)
            yield "PYNQR", port, storescp[1]


def test_ferrodicom_find_move_get_against_other_scps(other_scp, corpus, tmp_path):
    aet, port, dest = other_scp
    base = ["--aec", aet, "127.0.0.1", str(port)]
    # find, table and JSON
    r = cli("find", "-S", "-k", "PatientName=Smith*", "-k", "PatientID", "-k", "StudyInstanceUID", *base)
    assert r.returncode == 0, r.stderr
    assert "Smith^John" in r.stdout and "P003" in r.stdout
    r = cli("find", "-S", "--json", "-k", "StudyDate=20230101-", "-k", "StudyInstanceUID", "-k", "0010,0020", *base)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert {d["0020000D"]["Value"][0] for d in lines} == {study_uid(2, 2), study_uid(3, 1), study_uid(4, 1)}
    assert all(d["00080052"]["Value"] == ["STUDY"] for d in lines)
    r = cli("find", "-P", "--level", "PATIENT", "-k", "PatientID=P00*", "-k", "PatientName", *base)
    assert r.returncode == 0 and all(pid in r.stdout for pid, *_ in PATIENTS), r.stdout + r.stderr
    # move a study to DCMTK's storescp
    r = cli("move", "-S", "--aem", "DEST", "-k", f"StudyInstanceUID={study_uid(0, 2)}", *base)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_files(sorted(dest.iterdir()), corpus[1], expected(corpus[1], study_uid=study_uid(0, 2)))
    # get a study into a folder
    out = tmp_path / "got"
    r = cli("get", "-S", "-od", str(out), "-k", f"StudyInstanceUID={study_uid(1, 1)}", *base)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_files(sorted(out.iterdir()), corpus[1], expected(corpus[1], study_uid=study_uid(1, 1)))
    # a destination the peer does not know: exit 1, the status named
    r = cli("move", "-S", "--aem", "NOWHERE", "-k", f"StudyInstanceUID={study_uid(0, 2)}", *base)
    assert r.returncode == 1 and "0xA801" in r.stdout, r.stdout + r.stderr


def test_find_arguments_errors(tmp_path):
    r = cli("find", "-k", "NoSuchKeyword=1", "127.0.0.1", "104")
    assert r.returncode == 2 and "neither a DICOM keyword nor a tag" in r.stderr
    r = cli("find", "-S", "--level", "PATIENT", "127.0.0.1", "104")
    assert r.returncode == 2 and "Study Root model has no PATIENT level" in r.stderr
    r = cli("move", "-k", "PatientID=1", "127.0.0.1", "104")
    assert r.returncode == 2 and "--aem" in r.stderr
    r = cli("find", "-k", "PatientID=1", "127.0.0.1", str(free_port()))
    assert r.returncode == 1 and r.stderr.startswith("Error: cannot reach")
