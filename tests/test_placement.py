"""The storage data path places the common case itself (rust/node/src/placement.rs): a new SOP Instance UID in
a series whose directory the archive has made, strictly valid UIDs, a data set that agrees with its command.
It must give exactly the archive's answer (PS3.4 B.2.3: Success, the file at <study>/<series>/<sop>.dcm) and
leave every other case (duplicates, remarks, failures) to the archive."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import CTImageStorage, generate_uid
from test_archive import make_ds, write_part
from test_storage import assert_same, make_instance
from test_storage_faults import abort_inside_pixel_data, leftovers
from test_storage_finisher import _serve
from test_uid_filter import wait_for_filter

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


class CountingSCP(StorageSCP):
    """Counts the instances the data path placed itself (the others went through ``prepare``)."""

    def __init__(self, archive: Archive) -> None:
        super().__init__(archive)
        self.placed_here = 0

    def placed(self, request, received):
        self.placed_here += 1
        return super().placed(request, received)


@contextmanager
def _node(root: Path, scp_class: type[StorageSCP] = CountingSCP, **archive_options) -> Iterator[tuple]:
    """A running storage SCP into a fresh archive whose UID filter is filled: (archive, handler, server)."""
    archive = Archive(root, **{"durability": "none", **archive_options})
    wait_for_filter(archive)
    scp = scp_class(archive)
    server = _serve(archive, scp)
    try:
        yield archive, scp, server
    finally:
        server.shutdown()
        archive.close()


def _send(port: int, files: list[Path]) -> list[int]:
    return [int(r.status) for r in store("127.0.0.1", port, files, called_ae="FERRO").results]


@pytest.mark.parametrize("durability", ["none", "full"])
def test_a_series_after_its_first_instance_is_placed_by_the_data_path(tmp_path, durability):
    files = _series(tmp_path / "in", 12)
    with _node(tmp_path / "arc", durability=durability) as (archive, scp, server):
        assert _send(server.port, files) == [0] * 12
        assert archive.count() == 12  # after the queued ``placed`` calls
        assert scp.placed_here == 11  # the first one went through prepare, which made the series directory
        assert len(archive.placer) == 0  # every reservation released once its row was committed
        stored = list(archive.root.rglob("*.dcm"))
        assert len({p.relative_to(archive.root).parts[:2] for p in stored}) == 1  # <study>/<series>
        for f in files:
            uid = _sop_uid(f)
            assert len(archive.query("instance", SOPInstanceUID=uid)) == 1
            assert_same(f, next(p for p in stored if p.name == f"{uid}.dcm"))
    with Archive(tmp_path / "arc", durability=durability) as again:
        assert again.last_recovery["full_scan"] == 0
        assert again.count() == 12


def _sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.mark.parametrize("policy", ["keep-first", "reject"])
def test_a_series_sent_again_goes_to_the_archive_duplicate_policy(tmp_path, policy):
    files = _series(tmp_path / "in", 8)
    with _node(tmp_path / "arc", duplicates=policy) as (archive, scp, server):
        assert _send(server.port, files) == [0] * 8
        archive.flush()
        assert scp.placed_here == 7
        again = _send(server.port, files)
        assert again == [0 if policy == "keep-first" else st.DUPLICATE_REJECTED] * 8
        assert scp.placed_here == 7  # every one went to the archive's prepare: the UID filter said "maybe"
        assert archive.count() == 8


def test_the_same_instances_from_two_associations_at_once_are_stored_once(tmp_path):
    files = _series(tmp_path / "in", 30)
    with _node(tmp_path / "arc") as (archive, _, server):
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


def test_an_abort_inside_a_placed_instance_releases_it(tmp_path):
    files = _series(tmp_path / "in", 2)
    with _node(tmp_path / "arc") as (archive, _, server):
        assert _send(server.port, files[:1]) == [0]
        abort_inside_pixel_data(server, files[1])  # placed by the data path: a known series
        assert len(archive.placer) == 0
        assert archive.count() == 1
        assert leftovers(archive) == []
        assert _send(server.port, files[1:]) == [0]  # not held up by the aborted one's reservation
        assert archive.count() == 2


def test_a_series_directory_removed_at_run_time_is_made_again(tmp_path):
    """The data path's rename fails (A7xx), the directory is forgotten, and the next instance makes it again."""
    files = _series(tmp_path / "in", 3)
    with _node(tmp_path / "arc") as (archive, _, server):
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


def test_the_placer_follows_the_archive(tmp_path):
    """What the data path would decide, asked from Python, as the archive's state changes."""
    archive = Archive(tmp_path / "arc", durability="none")
    wait_for_filter(archive)
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
        wait_for_filter(archive)
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

    with _node(tmp_path / "arc", Deciding) as (_, _, server):
        assert _send(server.port, files) == [0] * 6
        assert len(seen) == 6

    class ReplacedArchivePrepare(StorageSCP):
        def __init__(self, archive: Archive) -> None:
            stock = archive.prepare

            def prepare(sop_class_uid, sop_instance_uid, keys):
                seen.append(sop_instance_uid)
                return stock(sop_class_uid, sop_instance_uid, keys)

            archive.prepare = prepare  # type: ignore[method-assign]
            super().__init__(archive)

    seen.clear()
    with _node(tmp_path / "arc2", ReplacedArchivePrepare) as (_, _, server):
        assert _send(server.port, files) == [0] * 6
        assert len(seen) == 6


def test_an_instance_that_cannot_be_indexed_does_not_hold_its_uid(tmp_path, monkeypatch):
    """An exception while building the index row (after an early Success) frees the UID: a resend is stored,
    not left waiting for a row that will never come; the archive asks for its full scan at the next open."""
    files = _series(tmp_path / "in", 2)
    with _node(tmp_path / "arc") as (archive, scp, server):
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
    with Archive(tmp_path / "arc", durability="none") as again:
        assert again.last_recovery["full_scan"] == 1
        assert again.count() == 2
