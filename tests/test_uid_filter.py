"""The SQLite index's UID filter (archive/index/uid_filter.py): the duplicate check asks SQLite only when the
filter says "maybe", so the filter must never say "absent" for an instance the index holds (PS3.4 B.2.3)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from test_archive import make_ds, write_part

from ferrodicom.archive import Archive
from ferrodicom.archive import status as st
from ferrodicom.archive.index.uid_filter import UidFilter


def _uids(n: int, prefix: str = "1.2.826.0.1.3680043.10.") -> list[str]:
    return [f"{prefix}{i}.{i * 7919 % 100_003}" for i in range(n)]


def wait_for_filter(archive: Archive, timeout: float = 10.0) -> None:
    """Waits until the index's UID filter holds every row of the open (filled by a background thread)."""
    deadline = time.monotonic() + timeout
    while not archive.index.uid_filter.ready:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the UID filter was never filled"
        time.sleep(0.01)


def test_every_added_uid_is_maybe_present_and_most_others_are_absent() -> None:
    f = UidFilter(0)
    added = _uids(20_000)
    for uid in added[:10_000]:
        f.add(uid)
    f.add_many(added[10_000:])
    f.ready = True
    assert all(uid in f for uid in added)
    unseen = _uids(50_000, prefix="1.2.826.0.1.3680043.11.")
    false_maybe = sum(uid in f for uid in unseen)
    assert false_maybe < 50_000 * 0.01, false_maybe


def test_a_disabled_filter_answers_maybe() -> None:
    f = UidFilter(0)
    f.ready = True
    assert "1.2.3" not in f
    f.disable()
    assert "1.2.3" in f and not f.enabled


def test_the_filter_is_sized_for_twice_the_instances_at_open() -> None:
    assert UidFilter(0).nbytes == 1 << 20
    assert UidFilter(10_000_000).nbytes == 32 << 20


def test_a_filter_not_yet_filled_answers_maybe() -> None:
    f = UidFilter(0)
    assert "1.2.3" in f
    f.ready = True
    assert "1.2.3" not in f


def test_instances_indexed_before_open_are_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "arc"
    with Archive(root) as archive:
        stored = [make_ds() for _ in range(5)]
        for ds in stored:
            assert archive.ingest(write_part(archive, ds))[0] == st.SUCCESS
    with Archive(root, duplicates="reject") as archive:
        wait_for_filter(archive)
        for ds in stored:
            assert archive.ingest(write_part(archive, ds))[0] == st.DUPLICATE_REJECTED
        assert archive.ingest(write_part(archive, make_ds()))[0] == st.SUCCESS


def test_instances_stored_in_this_run_are_duplicates(tmp_path: Path) -> None:
    with Archive(tmp_path / "arc", duplicates="reject") as archive:
        wait_for_filter(archive)
        ds = make_ds()
        assert archive.ingest(write_part(archive, ds))[0] == st.SUCCESS
        assert archive.ingest(write_part(archive, ds))[0] == st.DUPLICATE_REJECTED


def test_rows_written_around_the_filter_still_count_as_duplicates(tmp_path: Path) -> None:
    """A file indexed by a recovery scan at run time never passed the filter: the check goes to SQLite."""
    elsewhere = tmp_path / "elsewhere"
    with Archive(elsewhere) as archive:
        ds = make_ds()
        assert archive.ingest(write_part(archive, ds))[0] == st.SUCCESS
        rel = archive.query(SOPInstanceUID=ds.SOPInstanceUID)[0]["path"]
    with Archive(tmp_path / "arc", duplicates="reject") as archive:
        wait_for_filter(archive)
        # A complete file the index does not know (as a crash leaves one), indexed by an on-demand scan.
        (archive.root / rel).parent.mkdir(parents=True)
        shutil.copy(elsewhere / rel, archive.root / rel)
        assert archive.recover(full_scan=True)["reindexed"] == 1
        assert archive.ingest(write_part(archive, ds))[0] == st.DUPLICATE_REJECTED


def test_bulk_loaded_rows_are_duplicates(tmp_path: Path) -> None:
    from qr_corpus import synthetic_rows

    with Archive(tmp_path / "arc", duplicates="reject") as archive:
        wait_for_filter(archive)
        rows = list(synthetic_rows(archive.schema, 1, 1, 1, 3, prefix="9"))
        archive.index.bulk_load(iter(rows))
        uid = rows[0][3][0]
        ds = make_ds(SOPInstanceUID=uid, SOPClassUID=rows[0][3][1])
        assert archive.ingest(write_part(archive, ds))[0] == st.DUPLICATE_REJECTED
