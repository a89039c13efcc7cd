"""The storage data path places the common case itself (rust/node/src/placement.rs): a new SOP Instance UID in
a series whose directory the archive has made, strictly valid UIDs, a data set that agrees with its command.
It must give exactly the archive's answer (PS3.4 B.2.3: Success, the file at <study>/<series>/<sop>.dcm) and
leave every other case (duplicates, remarks, failures) to the archive."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, generate_uid
from test_archive import make_ds, write_part
from test_storage import assert_same, make_instance
from test_storage_faults import (
    dataset_bytes,
    inside_pixel_data,
    leftovers,
    pdata,
    raw_associate,
    store_rq,
    wait_until_idle,
)

from ferrodicom import AE
from ferrodicom.archive import Archive
from ferrodicom.archive import status as st
from ferrodicom.services.storage import StorageSCP, store


def _series(folder: Path, n: int) -> list[Path]:
    """``n`` CT instances of one new series."""
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    files = [folder / f"i{k}.dcm" for k in range(n)]
    for f in files:
        ds = make_instance(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.save_as(f, enforce_file_format=True)
    return files


def _filter_ready(archive: Archive) -> None:
    deadline = time.monotonic() + 10
    while not archive.index.uid_filter.ready:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the UID filter was never filled"
        time.sleep(0.01)


class CountingSCP(StorageSCP):
    """Counts the instances the data path placed itself (the others went through ``prepare``)."""

    def __init__(self, archive: Archive) -> None:
        super().__init__(archive)
        self.placed_here = 0

    def placed(self, request, received):
        self.placed_here += 1
        return super().placed(request, received)


def _serve(archive: Archive, scp: StorageSCP):
    ae = AE("FERRO")
    ae.add_service(scp)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    return server


def _send(port: int, files: list[Path]) -> list[int]:
    return [int(r.status) for r in store("127.0.0.1", port, files, called_ae="FERRO").results]


@pytest.mark.parametrize("durability", ["none", "full"])
def test_a_series_after_its_first_instance_is_placed_by_the_data_path(tmp_path, durability):
    files = _series(tmp_path / "in", 12)
    archive = Archive(tmp_path / "arc", durability=durability)
    _filter_ready(archive)
    scp = CountingSCP(archive)
    server = _serve(archive, scp)
    try:
        assert _send(server.port, files) == [0] * 12
        assert archive.count() == 12  # after the queued ``placed`` calls
        assert scp.placed_here == 11  # the first one went through prepare, which made the series directory
        assert len(archive.placer) == 0  # every reservation released once its row was committed
        for f in (files[0], files[-1]):
            row = archive.query("instance", SOPInstanceUID=str(make_ds_uid(f)))
            assert len(row) == 1
        rel = {p.relative_to(archive.root).parts[:2] for p in archive.root.rglob("*.dcm")}
        assert len(rel) == 1  # <study>/<series>, as the archive files them
        for f in files:
            assert_same(f, next(archive.root.rglob(f"{make_ds_uid(f)}.dcm")))
    finally:
        server.shutdown()
        archive.close()
    with Archive(tmp_path / "arc", durability=durability) as again:
        assert again.last_recovery["full_scan"] == 0
        assert again.count() == 12


def make_ds_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.mark.parametrize("policy", ["keep-first", "reject"])
def test_a_series_sent_again_goes_to_the_archive_duplicate_policy(tmp_path, policy):
    files = _series(tmp_path / "in", 8)
    archive = Archive(tmp_path / "arc", durability="none", duplicates=policy)
    _filter_ready(archive)
    scp = CountingSCP(archive)
    server = _serve(archive, scp)
    try:
        assert _send(server.port, files) == [0] * 8
        archive.flush()
        assert scp.placed_here == 7
        again = _send(server.port, files)
        assert again == [0 if policy == "keep-first" else st.DUPLICATE_REJECTED] * 8
        assert scp.placed_here == 7  # every one went to the archive's prepare: the UID filter said "maybe"
        assert archive.count() == 8
    finally:
        server.shutdown()
        archive.close()


def test_the_same_instances_from_two_associations_at_once_are_stored_once(tmp_path):
    files = _series(tmp_path / "in", 30)
    archive = Archive(tmp_path / "arc", durability="none")
    _filter_ready(archive)
    server = _serve(archive, StorageSCP(archive))
    try:
        assert _send(server.port, files[:1]) == [0]
        results: list[list[int]] = []
        threads = [threading.Thread(target=lambda: results.append(_send(server.port, files[1:]))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [[0] * 29] * 2  # keep-first: the second copy is answered Success and not kept
        assert archive.count() == 30
        assert len(list(archive.root.rglob("*.dcm"))) == 30
    finally:
        server.shutdown()
        archive.close()


def test_an_abort_inside_a_placed_instance_releases_it(tmp_path):
    files = _series(tmp_path / "in", 2)
    archive = Archive(tmp_path / "arc", durability="none")
    _filter_ready(archive)
    scp = CountingSCP(archive)
    server = _serve(archive, scp)
    try:
        assert _send(server.port, files[:1]) == [0]
        ds, data = dataset_bytes(files[1])
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
            ctx_id = raw_associate(s)
            cut = inside_pixel_data(data)
            s.sendall(pdata(ctx_id, 0x03, store_rq(ds.SOPInstanceUID)) + pdata(ctx_id, 0x00, data[:cut]))
            time.sleep(0.2)
            s.sendall(bytes.fromhex("07000000000400000000"))  # A-ABORT
        wait_until_idle(server)
        assert len(archive.placer) == 0  # the aborted one (placed by the data path: a known series) released
        assert archive.count() == 1
        assert leftovers(archive) == []
        assert _send(server.port, files[1:]) == [0]  # not held up by the aborted one's reservation
        assert archive.count() == 2
    finally:
        server.shutdown()
        archive.close()


def test_a_series_directory_removed_at_run_time_is_made_again(tmp_path):
    """The data path's rename fails (A7xx), the directory is forgotten, and the next instance makes it again."""
    files = _series(tmp_path / "in", 3)
    archive = Archive(tmp_path / "arc", durability="none")
    _filter_ready(archive)
    server = _serve(archive, StorageSCP(archive))
    try:
        assert _send(server.port, files[:1]) == [0]
        archive.flush()
        stored = next(archive.root.rglob("*.dcm"))
        stored.unlink()
        stored.parent.rmdir()
        first, second = _send(server.port, files[1:2]), _send(server.port, files[2:])
        assert 0xA700 <= first[0] <= 0xA7FF, hex(first[0])
        assert second == [0]
        archive.flush()
        assert len(archive.placer) == 0
        assert archive.count() == 2
        assert leftovers(archive) == []
    finally:
        server.shutdown()
        archive.close()


def test_the_placer_follows_the_archive(tmp_path):
    """What the data path would decide, asked from Python, as the archive's state changes."""
    archive = Archive(tmp_path / "arc", durability="none")
    _filter_ready(archive)
    ds = make_ds()
    keys = {
        "SOPInstanceUID": str(ds.SOPInstanceUID),
        "SOPClassUID": CTImageStorage,
        "StudyInstanceUID": str(ds.StudyInstanceUID),
        "SeriesInstanceUID": str(ds.SeriesInstanceUID),
    }
    placer = archive.placer

    def place(uid: str) -> str | None:
        return placer.try_place(CTImageStorage, uid, {**keys, "SOPInstanceUID": uid})

    new = generate_uid()
    assert place(new) is None  # the series has no directory yet
    assert archive.ingest(write_part(archive, ds))[0] == st.SUCCESS
    archive.flush()
    want = f"{archive.root}/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{new}.dcm"
    assert place(new) == want and len(placer) == 1
    assert place(new) is None  # reserved
    placer.release(new)
    assert place(str(ds.SOPInstanceUID)) is None  # indexed: the archive applies its duplicate policy
    assert len(placer) == 0
    plan = archive.prepare(CTImageStorage, new, {**keys, "SOPInstanceUID": new})
    assert place(new) is None  # reserved by the archive's own prepare
    archive.abandon(plan)
    assert place(new) == want
    placer.release(new)
    archive.recover()  # the scan wrote rows around the UID filter, and directories are checked again
    assert place(new) is None
    archive.close()
    assert place(new) is None


def test_no_placement_without_an_early_answer(tmp_path):
    """Durability full without a journal answers only once indexed: the archive keeps every decision."""
    with Archive(tmp_path / "arc", durability="full", journal=0) as archive:
        _filter_ready(archive)
        ds = make_ds()
        assert archive.ingest(write_part(archive, ds))[0] == st.SUCCESS
        uid = generate_uid()
        keys = {
            "SOPInstanceUID": uid,
            "SOPClassUID": CTImageStorage,
            "StudyInstanceUID": str(ds.StudyInstanceUID),
            "SeriesInstanceUID": str(ds.SeriesInstanceUID),
        }
        assert archive.placer.try_place(CTImageStorage, uid, keys) is None


def test_a_handler_or_archive_with_its_own_prepare_sees_every_instance(tmp_path):
    """The data path places by itself only for the stock ``StorageSCP.prepare`` and ``Archive.prepare``: a
    subclass (or a replacement) that decides for itself is asked about every instance."""
    files = _series(tmp_path / "in", 6)
    seen: list[str] = []

    class Deciding(StorageSCP):
        def prepare(self, request, keys):
            seen.append(keys["SOPInstanceUID"])
            return super().prepare(request, keys)

    archive = Archive(tmp_path / "arc", durability="none")
    _filter_ready(archive)
    server = _serve(archive, Deciding(archive))
    try:
        assert _send(server.port, files) == [0] * 6
        assert len(seen) == 6
    finally:
        server.shutdown()
        archive.close()

    archive = Archive(tmp_path / "arc2", durability="none")
    _filter_ready(archive)
    stock_prepare = archive.prepare
    asked: list[str] = []

    def prepare(sop_class_uid, sop_instance_uid, keys):
        asked.append(sop_instance_uid)
        return stock_prepare(sop_class_uid, sop_instance_uid, keys)

    archive.prepare = prepare  # type: ignore[method-assign]
    server = _serve(archive, StorageSCP(archive))
    try:
        assert _send(server.port, files) == [0] * 6
        assert len(asked) == 6
    finally:
        server.shutdown()
        archive.close()


def test_an_instance_that_cannot_be_indexed_does_not_hold_its_uid(tmp_path, monkeypatch):
    """An exception while building the index row (after an early Success) frees the UID: a resend is stored,
    not left waiting for a row that will never come; the archive asks for its full scan at the next open."""
    files = _series(tmp_path / "in", 2)
    archive = Archive(tmp_path / "arc", durability="none")
    _filter_ready(archive)
    scp = CountingSCP(archive)
    server = _serve(archive, scp)
    try:
        assert _send(server.port, files[:1]) == [0]
        archive.flush()

        def broken(*args, **kwargs):
            raise ValueError("broken index row")

        monkeypatch.setattr(archive.schema, "build_row", broken)
        assert _send(server.port, files[1:]) == [0]  # answered once the file was in place
        archive.flush()
        monkeypatch.undo()
        assert scp.placed_here == 1 and len(archive.placer) == 0
        statuses: list[int] = []
        sender = threading.Thread(target=lambda: statuses.extend(_send(server.port, files[1:])), daemon=True)
        sender.start()
        sender.join(30)
        assert statuses == [0]
        assert archive.count() == 2
    finally:
        server.shutdown()
        archive.close()
    with Archive(tmp_path / "arc", durability="none") as again:
        assert again.last_recovery["full_scan"] == 1
        assert again.count() == 2
