"""The storage SCP indexes early-answered instances on a thread of its own (rust/py/src/finisher.rs): the
C-STORE response goes out once the file is in place (PS3.4 B.2.3), the index row follows in batches. Nothing
answered may be lost to that delay: the archive's readers, its close and a clean shutdown wait for it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_storage import make_instance

from ferrodicom import AE
from ferrodicom.archive import Archive
from ferrodicom.services.storage import StorageSCP, store


def _instances(folder: Path, n: int) -> list[Path]:
    folder.mkdir()
    files = [folder / f"i{k}.dcm" for k in range(n)]
    for f in files:
        make_instance(f)
    return files


def _serve(archive: Archive, scp: StorageSCP):
    ae = AE("FERRO")
    ae.add_service(scp)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    return server


@pytest.mark.parametrize("durability", ["none", "full"])
def test_instances_answered_before_close_are_indexed_and_the_shutdown_is_clean(tmp_path, durability):
    files = _instances(tmp_path / "in", 40)
    archive = Archive(tmp_path / "arc", durability=durability)
    server = _serve(archive, StorageSCP(archive))
    report = store("127.0.0.1", server.port, files, called_ae="FERRO")
    assert [r.status for r in report.results] == [0] * 40
    server.shutdown()  # straight after the last response: rows may still be queued
    archive.close()
    with Archive(tmp_path / "arc", durability=durability) as again:
        assert again.last_recovery["full_scan"] == 0  # a clean shutdown: nothing left for the scan
        assert again.count() == 40


def test_readers_see_every_answered_instance(tmp_path):
    files = _instances(tmp_path / "in", 25)
    archive = Archive(tmp_path / "arc", durability="none")
    server = _serve(archive, StorageSCP(archive))
    try:
        report = store("127.0.0.1", server.port, files, called_ae="FERRO")
        assert [r.status for r in report.results] == [0] * 25
        assert archive.count() == 25  # count() flushes the queued stored calls, then the committer
        assert len(archive.query("instance", PatientID="ST1")) == 25
    finally:
        server.shutdown()
        archive.close()


def test_a_stored_callback_may_read_the_archive_and_may_raise(tmp_path):
    """on_stored runs on the finisher's thread: reading the archive there (which flushes) must not wait for
    itself, and an exception in one call must not stop the others."""
    files = _instances(tmp_path / "in", 12)
    archive = Archive(tmp_path / "arc", durability="none")
    seen: list[int] = []
    threads: set[int] = set()

    def on_stored(inst, status):
        threads.add(threading.get_ident())
        seen.append(archive.count())
        if len(seen) == 1:
            raise RuntimeError("a handler that fails once")

    server = _serve(archive, StorageSCP(archive, on_stored))
    try:
        done = threading.Event()
        statuses: list[int] = []

        def send():
            statuses.extend(r.status for r in store("127.0.0.1", server.port, files, called_ae="FERRO").results)
            done.set()

        threading.Thread(target=send, daemon=True).start()
        assert done.wait(30), "the sender hung: the finisher waited for itself"
        assert statuses == [0] * 12
        assert archive.count() == 12
        assert len(seen) == 12
        assert threading.get_ident() not in threads
    finally:
        server.shutdown()
        archive.close()


def test_a_blocked_stored_call_holds_back_the_sender_instead_of_queueing_without_bound(tmp_path):
    """Past 1,024 queued calls the association's own thread runs them: a handler that stops answering slows
    the sender down (PS3.7 has it wait for the response) instead of growing the queue, and nothing is lost."""
    n = 1_040
    files = _instances(tmp_path / "in", n)
    archive = Archive(tmp_path / "arc", durability="none")
    release = threading.Event()

    def on_stored(inst, status):
        release.wait(60)

    server = _serve(archive, StorageSCP(archive, on_stored))
    try:
        statuses: list[int] = []
        done = threading.Event()

        def send():
            statuses.extend(r.status for r in store("127.0.0.1", server.port, files, called_ae="FERRO").results)
            done.set()

        threading.Thread(target=send, daemon=True).start()
        deadline = time.monotonic() + 60
        while len(archive.placer) < 1_024 and not done.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not done.wait(2), "the sender finished while every stored call was blocked"
        assert 1_024 <= len(archive.placer) < n  # answered but not yet indexed: bounded by the queue
        release.set()
        assert done.wait(60)
        assert statuses == [0] * n
        assert archive.count() == n
    finally:
        release.set()
        server.shutdown()
        archive.close()
