"""``ferrodicom store`` sends everything it can (issue 24): a folder of pydicom's files plus files that cannot be
sent (an empty SOP Class UID, truncated, not DICOM) and data sets without File Meta, sent to ``serve``, to
DCMTK's storescp and to an SCP answering A700 for one instance. Every sendable instance arrives; every other
file is named once, with the reason; a data set that breaks while being sent costs its association, not the
job; the failure policy (continue, --halt, eNTEGRA's) is followed."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RTPlanStorage,
    generate_uid,
)
from pynetdicom import AE as PynAE
from pynetdicom import AllStoragePresentationContexts, build_context
from pynetdicom import evt as pyn_evt
from test_storage import make_instance

from conftest import dcmtk, dcmtk_env, ferrodicom_cli, free_port, wait_for_port
from ferrodicom.archive.inspect import IndexReader
from ferrodicom.services.storage import store
from ferrodicom.services.storage.scu import FULL_CHECK_BYTES, check_item, inspect_file, plan

#: pydicom's files that can be sent: Part 10 in the uncompressed syntaxes and Deflated, and two data sets
#: without File Meta (implicit VR LE, explicit VR BE).
PYDICOM_GOOD = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "rtdose.dcm",
    "rtplan.dcm",
    "image_dfl.dcm",
    "rtstruct.dcm",  # no File Meta, implicit VR little endian
    "ExplVR_BigEndNoMeta.dcm",  # no File Meta, explicit VR big endian
]
#: pydicom's files that cannot be sent, and what the message says about each.
PYDICOM_BAD = {
    "nested_priv_SQ.dcm": "no SOP Class UID",  # empty Media Storage SOP Class UID, none in the data set
    "rtplan_truncated.dcm": "truncated",
    "README.txt": "not a DICOM file",
}


def _uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True, force=True).SOPInstanceUID)


def _without_meta(src: Path, dst: Path, *, implicit: bool) -> None:
    """``src``'s data set alone (no preamble, no File Meta), as some modalities export."""
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = generate_uid()
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = implicit, True
    write_dataset(buf, ds)
    dst.write_bytes(buf.getvalue())


@pytest.fixture
def mixed(tmp_path) -> tuple[Path, dict[str, str], dict[str, str]]:
    """A folder with pydicom's files and ours: ``(folder, {good file: SOP Instance UID}, {bad file: reason})``."""
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    good: dict[str, str] = {}
    bad: dict[str, str] = {}
    for name in PYDICOM_GOOD:
        dst = folder / name
        dst.write_bytes(Path(get_testdata_file(name)).read_bytes())
        good[str(dst)] = _uid(dst)
    for name, why in PYDICOM_BAD.items():
        dst = folder / "sub" / name
        dst.write_bytes(Path(get_testdata_file(name)).read_bytes())
        bad[str(dst)] = why
    # ours: an instance in a sub-folder, one without File Meta, one with an empty SOP Class UID, a truncated
    # one and a file that is not DICOM
    ours = folder / "sub" / "ct.dcm"
    good[str(ours)] = str(make_instance(ours).SOPInstanceUID)
    no_meta = folder / "sub" / "no_meta_ct.dcm"
    _without_meta(Path(get_testdata_file("CT_small.dcm")), no_meta, implicit=False)
    good[str(no_meta)] = _uid(no_meta)
    empty = folder / "sub" / "empty_class.dcm"
    ds = make_instance(empty)
    del ds.SOPClassUID
    ds.file_meta.MediaStorageSOPClassUID = ""
    ds.save_as(empty, enforce_file_format=False)
    bad[str(empty)] = "no SOP Class UID"
    cut = folder / "sub" / "truncated.dcm"
    make_instance(cut, frames=2)
    cut.write_bytes(cut.read_bytes()[:-5000])
    bad[str(cut)] = "truncated"
    (folder / "notes.txt").write_text("a note that sits among the images\n")
    bad[str(folder / "notes.txt")] = "not a DICOM file"
    return folder, good, bad


def run_store(port: int, aec: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ferrodicom_cli(), "store", "--aec", aec, "127.0.0.1", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_each_bad_named_once(stderr: str, bad: dict[str, str]) -> None:
    lines = stderr.splitlines()
    for path, why in bad.items():
        named = [line for line in lines if path in line]
        assert len(named) == 1, (path, named)
        assert named[0].startswith(f"warning: skipped {path}: ") and why in named[0], named[0]
    assert "Traceback" not in stderr


def test_plan_sorts_sendable_from_the_rest(mixed):
    """The checks alone (what ``--dry-run`` prints): each file is sendable or skipped with its reason; a data set
    without File Meta takes its UIDs and encoding from the data set."""
    folder, good, bad = mixed
    items, skipped = plan([folder])
    assert {str(it.path): it.sop_instance_uid for it in items} == good
    assert {name for name, _ in skipped} == set(bad)
    for name, why in skipped:
        assert bad[name] in why, (name, why)
    by_name = {it.path.name: it for it in items}
    assert by_name["rtstruct.dcm"].offset == 0 and by_name["rtstruct.dcm"].transfer_syntax == ImplicitVRLittleEndian
    assert by_name["ExplVR_BigEndNoMeta.dcm"].transfer_syntax == "1.2.840.10008.1.2.2"
    assert by_name["no_meta_ct.dcm"].transfer_syntax == ExplicitVRLittleEndian
    assert by_name["CT_small.dcm"].offset is None


def test_large_files_are_checked_by_their_element_headers(tmp_path, monkeypatch):
    """Past FULL_CHECK_BYTES a file is checked by walking its element headers (seeking over values): a file cut
    anywhere is still found truncated, a complete one passes."""
    path = tmp_path / "nm.dcm"
    make_instance(path, frames=8)
    monkeypatch.setattr("ferrodicom.services.storage.scu.FULL_CHECK_BYTES", 1024)
    item, why = inspect_file(path)
    assert why is None and check_item(item) is None
    data = path.read_bytes()
    for cut in (600, len(data) // 2, len(data) - 1):  # in the data set (before 600: the File Meta)
        path.write_bytes(data[:cut])
        item, why = inspect_file(path)
        assert item is not None and "truncated" in check_item(item), cut
    assert FULL_CHECK_BYTES > len(data)


def test_store_to_serve_sends_every_sendable_file_and_names_the_others_once(mixed, serve_process, tmp_path):
    """The issue's first test as a user runs it: ``serve``, then ``store`` of a mixed folder. Everything that can
    be sent is stored and indexed (the data sets without File Meta too); every other file is named once, with
    the reason; the exit status is 0 (skipped files do not fail the job)."""
    port, _proc = serve_process
    folder, good, bad = mixed
    r = run_store(port, "FERRO", str(folder))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"{len(good)} stored")
    assert f", 0 failed, 0 not sent, {len(bad)} skipped, 1 association(s)" in r.stdout
    assert_each_bad_named_once(r.stderr, bad)
    # one line per stored file, each once
    for path in good:
        assert sum(path in line for line in r.stderr.splitlines()) == 1, path
    with IndexReader(tmp_path / "a") as index:
        stored = {row["SOPInstanceUID"] for row in index.query("instance")}
    assert stored == set(good.values())


def test_store_to_dcmtk_storescp(mixed, tmp_path):
    """To DCMTK's storescp, every sendable file is stored, pydicom's image_dfl.dcm included: its deflated data
    set has an odd length in the file, and is sent padded with one NUL byte (PS3.5 A.5; storescp aborts an odd
    fragment)."""
    port = free_port()
    out = tmp_path / "storescp"
    out.mkdir()
    folder, good, bad = mixed
    assert (folder / "image_dfl.dcm").exists()
    proc = subprocess.Popen(
        [dcmtk("storescp"), "+xa", "-aet", "DCMTK", "-od", str(out), str(port)],
        env=dcmtk_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        r = run_store(port, "DCMTK", str(folder))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr  # skipped files do not count as failures
    assert r.stdout.startswith(f"{len(good)} stored, 0 failed, 0 not sent, {len(bad)} skipped, 1 association(s)")
    assert_each_bad_named_once(r.stderr, bad)
    assert {_uid(p) for p in out.iterdir()} == set(good.values())


@pytest.fixture
def refusing_scp():
    """A pynetdicom storage SCP answering A700 (out of resources) for the SOP Instance UIDs in ``refuse``; it
    records the UIDs it is sent. Yields (port, refuse, seen)."""
    refuse: set[str] = set()
    seen: list[str] = []

    def on_store(event):
        uid = str(event.request.AffectedSOPInstanceUID)
        seen.append(uid)
        return 0xA700 if uid in refuse else 0x0000

    ae = PynAE(ae_title="PYN")
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(pyn_evt.EVT_C_STORE, on_store)])
    try:
        yield port, refuse, seen
    finally:
        server.shutdown()


def test_store_goes_on_after_a700_and_halt_stops_there(mixed, refusing_scp):
    """An SCP that refuses one instance (A700, as Orthanc does for an instance it cannot index): by default that
    instance is reported once, with its status, and every other one is sent; with --halt the job stops there,
    says so in one line and counts the rest as not sent."""
    port, refuse, seen = refusing_scp
    folder, good, bad = mixed
    refused_file = str(folder / "rtdose.dcm")
    refuse.add(good[refused_file])
    r = run_store(port, "PYN", str(folder))
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith(f"{len(good) - 1} stored, 1 failed, 0 not sent, {len(bad)} skipped")
    assert_each_bad_named_once(r.stderr, bad)
    refused_lines = [line for line in r.stderr.splitlines() if refused_file in line]
    assert refused_lines == [f"error: 0xA700 {refused_file}: Failure: refused: out of resources"]
    assert set(seen) == set(good.values())

    seen.clear()
    r = run_store(port, "PYN", "--halt", str(folder))
    assert r.returncode == 1
    sent = len(seen)
    assert seen[-1] == good[refused_file] and sent < len(good)
    stored, failed, unsent, skipped = (int(r.stdout.split(", ")[k].split()[0]) for k in range(4))
    assert (stored, failed) == (sent - 1, 1)
    # the files after the refused one are not looked at further: a broken one among them is "not sent"
    assert stored + failed + unsent + skipped == len(good) + len(bad) and unsent >= len(good) - sent
    assert r.stderr.splitlines()[-1] == (
        f"Error: --halt: stopped after {refused_file} failed: {unsent} instance(s) not sent; "
        "deal with that failure, then send again"
    )


def test_dry_run_lists_what_would_be_sent_and_why_the_rest_would_not(mixed, tmp_path):
    folder, good, bad = mixed
    # nobody listens on the port: a dry run does not connect
    r = run_store(free_port(), "ANY", "--dry-run", str(folder))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert sorted(line.split()[1] for line in lines if line.startswith("send ")) == sorted(good)
    skips = {line.split()[1].rstrip(":"): line for line in lines if line.startswith("skip ")}
    assert set(skips) == set(bad)
    for path, why in bad.items():
        assert why in skips[path]
    assert lines[-1].startswith(f"{len(good)} to send") and lines[-1].endswith(f"{len(bad)} skipped")


def rtplan_scp(accepts: str):
    """A pynetdicom SCP for RT Plan (in ``accepts`` only) and CT: records the UIDs it receives and the
    associations it sees aborted."""
    seen: list[str] = []
    aborted: list[int] = []
    ae = PynAE(ae_title="PYN")
    ae.supported_contexts = [build_context(RTPlanStorage, accepts), build_context(CTImageStorage)]
    handlers = [
        (pyn_evt.EVT_C_STORE, lambda e: seen.append(str(e.request.AffectedSOPInstanceUID)) or 0x0000),
        (pyn_evt.EVT_ABORTED, lambda e: aborted.append(1)),
    ]
    port = free_port()
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers), port, seen, aborted


@pytest.mark.parametrize("truncated_last", [False, True])
def test_a_data_set_that_breaks_while_sent_costs_its_association_only(tmp_path, truncated_last):
    """pydicom's rtplan_truncated.dcm (implicit VR) to a peer that takes RT Plan in explicit VR only: the data set
    is converted while it is sent, and the conversion fails at the truncation. Without the check before sending
    (``check=False``), the command is out without its complete data set: that association is aborted (the peer
    never sees the instance) and the next instance goes on a new one; last in the list, nothing raises. With the
    check (the default) the file is skipped before anything goes out."""
    truncated = Path(get_testdata_file("rtplan_truncated.dcm"))
    ct = tmp_path / "ct.dcm"
    ct_uid = str(make_instance(ct).SOPInstanceUID)
    files = [ct, truncated] if truncated_last else [truncated, ct]
    server, port, seen, aborted = rtplan_scp(ExplicitVRLittleEndian)
    try:
        report = store("127.0.0.1", port, files, called_ae="PYN", check=False)
        broken = next(r for r in report.results if r.item.path == truncated)
        assert broken.outcome == "failed" and broken.status is None
        assert "truncated" in broken.error and broken.error.endswith("association aborted"), broken.error
        assert [r.outcome for r in report.results if r.item.path == ct] == ["stored"]
        assert seen == [ct_uid]
        assert report.associations == (1 if truncated_last else 2)
        deadline = time.monotonic() + 10  # the peer's thread sees the A-ABORT soon after store() returns
        while not aborted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert aborted == [1]

        seen.clear()
        report = store("127.0.0.1", port, files, called_ae="PYN")
        assert [r.item.path for r in report.results] == [ct]
        assert [(Path(n), "truncated" in why) for n, why in report.skipped] == [(truncated, True)]
        assert seen == [ct_uid] and report.associations == 1
    finally:
        server.shutdown()


def test_b007_comment_reaches_the_sender_and_the_log(tmp_path, archive_node, caplog):
    """A data set without Study Instance UID is stored with B007: the sender's result carries the peer's comment
    naming the missing UID, and the archive's log says the same."""
    server, archive = archive_node
    path = tmp_path / "no_study.dcm"
    ds = make_instance(path)
    del ds.StudyInstanceUID
    ds.save_as(path, enforce_file_format=True)
    # and one with nothing but its File Meta's UIDs: the warnings do not fit the comment's 64 characters whole
    bare = tmp_path / "bare.dcm"
    ds2 = make_instance(bare)
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        delattr(ds2, keyword)
    ds2.save_as(bare, enforce_file_format=True)
    with caplog.at_level("WARNING", logger="ferrodicom.archive"):
        report = store("127.0.0.1", server.port, [path, bare], called_ae="FERRO")
    r, r2 = report.results
    assert int(r.status) == 0xB007 and r.outcome == "warning"
    assert r.comment == "Study Instance UID: missing"
    assert f"SOP Instance {ds.SOPInstanceUID} is stored with warning B007" in caplog.text
    assert "Study Instance UID: missing" in caplog.text
    assert int(r2.status) == 0xB007 and r2.comment == "missing UID: SOP Instance, SOP Class, Study, Series"
    assert (
        f"SOP Instance {ds2.file_meta.MediaStorageSOPInstanceUID} is stored with warning B007 (data set does not "
        "match SOP Class): no SOP Instance/Class UID in data set; Study Instance UID: missing; Series Instance UID: "
        "missing; filed as _unknown/_unknown/"
    ) in caplog.text


def test_json_log_has_one_object_per_line_with_indexable_fields(tmp_path, archive_node):
    """``--log-format json --log-file``: every line is a JSON object with time, level, logger, message and the
    result's fields; the B007 one carries the comment; stdout keeps the summary."""
    server, _archive = archive_node
    ok, warn = tmp_path / "ok.dcm", tmp_path / "warn.dcm"
    make_instance(ok)
    ds = make_instance(warn)
    del ds.SeriesInstanceUID
    ds.save_as(warn, enforce_file_format=True)
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 10)
    log = tmp_path / "store.log"
    r = run_store(
        server.port,
        "FERRO",
        "--log-format",
        "json",
        "--log-file",
        str(log),
        str(ok),
        str(warn),
        str(tmp_path / "junk.bin"),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""
    assert r.stdout.startswith("2 stored (1 with a warning), 0 failed, 0 not sent, 1 skipped")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(rec) for rec in records)
    results = {rec["file"]: rec for rec in records if rec.get("event") == "result"}
    assert results[str(ok)]["status"] == 0 and results[str(ok)]["level"] == "info"
    assert results[str(warn)]["status"] == 0xB007 and results[str(warn)]["level"] == "warning"
    assert results[str(warn)]["comment"] == "Series Instance UID: missing"
    assert results[str(warn)]["sop_instance_uid"] == str(ds.SOPInstanceUID)
    (summary,) = [rec for rec in records if rec.get("event") == "summary"]
    assert (summary["stored"], summary["warnings"], summary["failed"], summary["skipped"]) == (2, 1, 0, 1)
    (skipped,) = [rec for rec in records if rec.get("event") == "skipped"]
    assert skipped["file"] == str(tmp_path / "junk.bin") and "not a DICOM file" in skipped["reason"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbosity_options_before_or_after_the_command(tmp_path, archive_node, where):
    """``-q`` leaves only warnings and errors (no per-instance lines); it is accepted before the command name and
    after it, as every logging option."""
    server, _archive = archive_node
    f = tmp_path / "a.dcm"
    make_instance(f)
    args = ["store", "--aec", "FERRO", "127.0.0.1", str(server.port), str(f)]
    cmd = [*ferrodicom_cli(), "-q", *args] if where == "before" else [*ferrodicom_cli(), *args[:1], "-q", *args[1:]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout.startswith("1 stored")
    r = subprocess.run([*ferrodicom_cli(), "-v", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and f"0x0000 {f}" in r.stderr


def test_store_api_reports_a_missing_source_and_a_dataset_without_uids(tmp_path, archive_node):
    server, _archive = archive_node
    ds = Dataset()
    ds.PatientName = "No^Uids"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report = store("127.0.0.1", server.port, [tmp_path / "nowhere", ds], called_ae="FERRO")
    assert report.results == [] and report.associations == 0
    assert [why for _, why in report.skipped] == [
        "no such file or folder",
        "no SOP Class UID (neither in the data set nor in the File Meta)",
    ]
