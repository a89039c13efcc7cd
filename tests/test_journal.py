"""The archive's write-ahead journal (durability full): instances acknowledged through it survive a crash
that loses their files and index rows, because opening the archive replays it (rust/node/src/journal.rs)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pydicom
from test_storage import make_instance

from conftest import free_port, small_tmpfs, wait_for_port
from ferrodicom import AE, Archive
from ferrodicom.services.storage import StorageSCP, store


def _serve(archive: Archive):
    ae = AE("FERRO")
    ae.add_service(StorageSCP(archive))
    return ae.start_server(("127.0.0.1", 0), block=False)


def test_small_instances_are_acknowledged_through_the_journal_and_large_ones_fsynced(tmp_path):
    archive = Archive(tmp_path / "archive", journal=1 << 20, journal_record=128 * 1024)  # 7 slots of 128 KiB
    assert archive.journal is not None and archive.journal.wait_ready(30)
    assert archive.journal.max_record == 128 * 1024
    small = [tmp_path / f"s{i}.dcm" for i in range(5)]
    for f in small:
        make_instance(f, frames=2)  # ~17 KB
    big = tmp_path / "big.dcm"
    make_instance(big, frames=40)  # ~330 KB: larger than a record may be
    server = _serve(archive)
    try:
        report = store("127.0.0.1", server.port, [*small, big], called_ae="FERRO")
        assert [int(r.status) for r in report.results] == [0] * 6
        assert archive.journal.stats["appended"] == 5
        assert archive.count() == 6
        for f in [*small, big]:
            uid = pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
            (row,) = archive.query(SOPInstanceUID=uid)
            assert pydicom.dcmread(archive.root / row["path"]).PixelData == pydicom.dcmread(f).PixelData
    finally:
        server.shutdown()
        archive.close()
    # A clean close checkpoints everything: nothing is replayed at the next open.
    again = Archive(tmp_path / "archive", journal=1 << 20, journal_record=128 * 1024)
    try:
        assert again.last_recovery["journal_replayed"] == 0
        assert again.last_recovery["full_scan"] == 0
        assert again.count() == 6
    finally:
        again.close()


SERVER = textwrap.dedent(
    """
    import sys, time
    from ferrodicom import AE, Archive
    from ferrodicom.services.storage import StorageSCP, add_storage_contexts
    # No checkpoint during the test.
    archive = Archive(sys.argv[1], journal=32 << 20, journal_checkpoint=3600.0, duplicates=sys.argv[3])
    archive.journal.wait_ready(30)
    ae = AE("FERRO")
    ae.add_service(StorageSCP(archive))
    ae.start_server(("127.0.0.1", int(sys.argv[2])), block=False)
    while True:
        time.sleep(1)
    """
)


def _server(root: Path, port: int, duplicates: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(root), str(port), duplicates], stderr=subprocess.PIPE)
    wait_for_port(port, proc)
    return proc


def test_a_crash_that_loses_files_and_rows_is_repaired_from_the_journal(tmp_path):
    files = [tmp_path / f"i{i}.dcm" for i in range(6)]
    uids = []
    for f in files:
        uids.append(str(make_instance(f, frames=3).SOPInstanceUID))
    root, port = tmp_path / "archive", free_port()
    proc = _server(root, port, "keep-first")
    try:
        report = store("127.0.0.1", port, files, called_ae="FERRO")
        assert [int(r.status) for r in report.results] == [0] * len(files)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    # What a power cut may do to data that was only in the page cache: the acknowledged files are
    # gone and so are their index rows (the journal records were fdatasynced, so they survive).
    placed = sorted(p for p in root.rglob("*.dcm"))
    assert len(placed) == len(files)
    for p in placed:
        p.unlink()
    with sqlite3.connect(root / "index.sqlite") as db:
        db.execute("DELETE FROM instance")

    archive = Archive(root)
    try:
        assert archive.last_recovery["journal_replayed"] == len(files)
        assert archive.last_recovery["full_scan"] == 1
        assert archive.count() == len(files)
        for f, uid in zip(files, uids):
            (row,) = archive.query(SOPInstanceUID=uid)
            assert row["calling_ae"] == "FERRODICOM"  # from the File Meta written by the data path
            assert pydicom.dcmread(root / row["path"]).PixelData == pydicom.dcmread(f).PixelData
        assert list(archive.incoming_dir.iterdir()) == []
    finally:
        archive.close()
    # Replayed once only.
    again = Archive(root)
    try:
        assert again.last_recovery["journal_replayed"] == 0
        assert again.count() == len(files)
    finally:
        again.close()


def test_durability_none_and_a_zero_journal_have_no_journal(tmp_path):
    none = Archive(tmp_path / "a", durability="none")
    off = Archive(tmp_path / "b", journal=0)
    try:
        assert none.journal is None and off.journal is None
        assert not (tmp_path / "a" / ".journal").exists()
    finally:
        none.close()
        off.close()


def test_a_replacement_is_not_undone_by_the_replay_of_the_copy_it_replaced(tmp_path):
    first, second = tmp_path / "first.dcm", tmp_path / "second.dcm"
    ds = make_instance(first, frames=2)
    ds.PixelData = bytes(len(ds.PixelData))  # same SOP Instance UID, other pixels
    ds.save_as(second, enforce_file_format=True)
    root, port = tmp_path / "archive", free_port()
    proc = _server(root, port, "replace")
    try:
        for f in (first, second):
            report = store("127.0.0.1", port, [f], called_ae="FERRO")
            assert [int(r.status) for r in report.results] == [0]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    archive = Archive(root, duplicates="replace")
    try:
        # The first copy was journaled, the replacement fsynced; the first copy's record was cancelled.
        assert archive.last_recovery["journal_replayed"] == 0
        (row,) = archive.query(SOPInstanceUID=str(ds.SOPInstanceUID))
        assert pydicom.dcmread(root / row["path"]).PixelData == ds.PixelData
    finally:
        archive.close()


def test_a_journal_with_an_unreadable_header_is_set_aside_and_the_archive_opens(tmp_path):
    archive = Archive(tmp_path / "a")
    assert archive.journal.wait_ready(30)
    archive.close()
    with open(tmp_path / "a" / ".journal", "r+b") as f:
        f.write(b"\xff" * 4096)
    archive = Archive(tmp_path / "a")
    try:
        assert "header unreadable" in archive.journal.damaged
        assert archive.last_recovery["full_scan"] == 1
        assert len(list((tmp_path / "a").glob(".journal.damaged-*"))) == 1
    finally:
        archive.close()


def test_a_journal_left_by_a_crash_is_replayed_even_when_reopened_with_durability_none(tmp_path):
    files = [tmp_path / f"n{i}.dcm" for i in range(2)]
    for f in files:
        make_instance(f)
    root, port = tmp_path / "archive", free_port()
    proc = _server(root, port, "keep-first")
    try:
        report = store("127.0.0.1", port, files, called_ae="FERRO")
        assert [int(r.status) for r in report.results] == [0, 0]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for p in root.rglob("*.dcm"):
        p.unlink()
    archive = Archive(root, durability="none")
    try:
        assert archive.journal is None
        assert archive.last_recovery["journal_replayed"] == 2
        assert archive.count() == 2
    finally:
        archive.close()


def test_no_journal_is_made_where_space_is_short(tmp_path):
    """A journal never takes the room instances need: on a small filesystem, instances are fsynced."""
    with small_tmpfs(tmp_path / "small", "64m") as mnt:
        archive = Archive(mnt / "arc")
        try:
            assert archive.journal is not None and not archive.journal.wait_ready(10)
            assert not list((mnt / "arc").glob(".journal*"))
            small = tmp_path / "s.dcm"
            make_instance(small)
            server = _serve(archive)
            try:
                report = store("127.0.0.1", server.port, [small], called_ae="FERRO")
                assert [int(r.status) for r in report.results] == [0]
            finally:
                server.shutdown()
            assert archive.journal.stats["appended"] == 0 and archive.count() == 1
        finally:
            archive.close()
