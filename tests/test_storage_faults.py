"""Storage under bad input and failure (PS3.4 B.2.3 statuses): nothing is lost, nothing partial is left,
the server keeps serving."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from test_association import raw_associate_rq, read_pdu
from test_storage import assert_same, make_instance

from conftest import ferrodicom_cli, free_port, small_ext4, small_tmpfs, wait_for_port
from ferrodicom import AE, Archive, _core, pdu
from ferrodicom.services.storage import StorageSCP, store


def leftovers(archive: Archive) -> list[Path]:
    """Data left in ``.incoming``. A running server keeps a few empty ``.part`` files ready there (its part
    pool, removed at shutdown); every file the data path has written to holds at least the File Meta."""
    return [p for p in archive.incoming_dir.iterdir() if p.stat().st_size > 0]


def dataset_bytes(path: Path) -> tuple[pydicom.Dataset, bytes]:
    ds = pydicom.dcmread(path)
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = False, True
    write_dataset(buf, ds)
    return ds, buf.getvalue()


def store_rq(sop_instance_uid: str) -> bytes:
    """An encoded C-STORE-RQ command set (PS3.7 9.3.1.1) for a CT instance, a data set following."""
    fields = {0x0002: CTImageStorage, 0x0100: 0x0001, 0x0110: 1, 0x0700: 0, 0x0800: 0, 0x1000: str(sop_instance_uid)}
    return _core.Command(fields).encode()


def inside_pixel_data(data: bytes) -> int:
    """An offset 100 bytes into the Pixel Data value: by then the archive has prepared the instance's place
    (every index key has arrived)."""
    return data.index(b"\xe0\x7f\x10\x00") + 12 + 100


def wait_until_idle(server) -> None:
    """Waits (up to 10 s) until the server has no association left."""
    deadline = time.monotonic() + 10
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.02)


def scu(port: int):
    ae = AE("FAULTS")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="FERRO")
    assert assoc.is_established
    return assoc


def test_truncated_data_set_is_refused_and_nothing_kept(archive_node, tmp_path):
    server, archive = archive_node
    ds, data = dataset_bytes(make_instance(tmp_path / "a.dcm") and tmp_path / "a.dcm")
    with scu(server.port) as assoc:
        status, rsp, _, _ = assoc.core.send_c_store_data(
            CTImageStorage, ds.SOPInstanceUID, ExplicitVRLittleEndian, data[: len(data) - 1000]
        )
        assert 0xC000 <= status <= 0xCFFF, hex(status)  # cannot understand (PS3.4 B.2.3)
        assert "cannot understand" in (rsp.get(0x0902) or "")
        # The association is still usable: a good instance goes through.
        status, *_ = assoc.core.send_c_store_data(CTImageStorage, ds.SOPInstanceUID, ExplicitVRLittleEndian, data)
        assert status == 0
    assert archive.count() == 1
    assert leftovers(archive) == []


def test_hostile_sop_instance_uid_never_escapes_the_archive(archive_node, tmp_path):
    server, archive = archive_node
    ds, data = dataset_bytes(make_instance(tmp_path / "a.dcm") and tmp_path / "a.dcm")
    with scu(server.port) as assoc:
        for bad in ("../../etc/passwd", "1.2/../../x", "/tmp/evil"):
            ds.SOPInstanceUID = bad
            _, data = dataset_bytes_of(ds)
            # Our own SCU refuses to send an invalid UID...
            with pytest.raises(_core.DicomError):
                assoc.core.send_c_store_data(CTImageStorage, bad, ExplicitVRLittleEndian, data)
            # ...so put it in the data set only, under a valid command UID: A900 (mismatch), nothing stored.
            status, *_ = assoc.core.send_c_store_data(CTImageStorage, generate_uid(), ExplicitVRLittleEndian, data)
            assert status == 0xA900, hex(status)
    assert archive.count() == 0
    assert leftovers(archive) == []
    assert not (tmp_path / "etc").exists() and not Path("/tmp/evil").exists()
    assert all(p.is_relative_to(archive.root) for p in archive.root.rglob("*"))


def dataset_bytes_of(ds: pydicom.Dataset) -> tuple[pydicom.Dataset, bytes]:
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = False, True
    write_dataset(buf, ds)
    return ds, buf.getvalue()


def test_hostile_command_uid_from_a_raw_peer(archive_node, tmp_path):
    """A peer that puts '../..' in the command's Affected SOP Instance UID (our SCU would refuse to)."""
    server, archive = archive_node
    ds, data = dataset_bytes(make_instance(tmp_path / "a.dcm") and tmp_path / "a.dcm")
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        ctx_id = raw_associate(s)
        cmd = _core.Command({0x0002: CTImageStorage, 0x0100: 0x0001, 0x0110: 7, 0x0700: 0, 0x0800: 0}).encode()
        # Affected SOP Instance UID (0000,1000) written by hand: the Command class validates UIDs.
        bad = b"../../../tmp/x\x00"[:14]
        cmd = splice_element(cmd, 0x1000, bad)
        s.sendall(pdata(ctx_id, 0x03, cmd) + pdata(ctx_id, 0x02, data))
        rsp = read_command(s)
        assert rsp.status is not None and rsp.status >= 0xA000, rsp
    assert archive.count() == 0
    assert leftovers(archive) == []
    assert not Path("/tmp/x").exists()


def abort_inside_pixel_data(server, path: Path) -> None:
    """Sends the instance at ``path`` up to 100 bytes into its Pixel Data (its place decided by then), then an
    A-ABORT (PS3.8 9.3.8); returns once the server has no association left."""
    ds, data = dataset_bytes(path)
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        ctx_id = raw_associate(s)
        cut = inside_pixel_data(data)
        s.sendall(pdata(ctx_id, 0x03, store_rq(ds.SOPInstanceUID)) + pdata(ctx_id, 0x00, data[:cut]))
        time.sleep(0.2)
        s.sendall(bytes.fromhex("07000000000400000000"))  # A-ABORT
    wait_until_idle(server)


def test_abort_mid_transfer_leaves_nothing(archive_node, tmp_path):
    server, archive = archive_node
    make_instance(tmp_path / "a.dcm")
    abort_inside_pixel_data(server, tmp_path / "a.dcm")
    assert archive.count() == 0
    assert leftovers(archive) == []
    # The same instance again: not held up by the aborted one's reservation.
    report = store("127.0.0.1", server.port, [tmp_path / "a.dcm"], called_ae="FERRO")
    assert [int(r.status) for r in report.results] == [0]
    assert archive.count() == 1


def test_a_silent_peer_is_aborted_after_the_network_timeout(tmp_path):
    """A peer that goes silent between messages, or in the middle of a data set, holds its association only
    until the network timeout (pynetdicom's network_timeout; `serve --network-timeout`): then it gets an
    A-ABORT, nothing of the instance is kept, and its place under the association limit is free again."""
    archive = Archive(tmp_path / "archive", durability="full")
    ae = AE("FERRO")
    ae.maximum_associations = 1
    ae.network_timeout = 0.5
    ae.add_service(StorageSCP(archive))
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        ds, data = dataset_bytes(make_instance(tmp_path / "a.dcm") and tmp_path / "a.dcm")
        cut = inside_pixel_data(data)
        for sent in (b"", pdata(1, 0x03, store_rq(ds.SOPInstanceUID)) + pdata(1, 0x00, data[:cut])):
            with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
                assert raw_associate(s) == 1
                s.sendall(sent)
                started = time.monotonic()
                answer = read_pdu(s)
                waited = time.monotonic() - started
            assert answer[:1] == b"\x07", answer[:16]  # A-ABORT
            assert 0.4 < waited < 10, waited
            wait_until_idle(server)
            assert archive.count() == 0
            assert leftovers(archive) == []
        report = store("127.0.0.1", server.port, [tmp_path / "a.dcm"], called_ae="FERRO")
        assert [int(r.status) for r in report.results] == [0]
    finally:
        server.shutdown()
        archive.close()


def test_unknown_sop_class_is_not_accepted(archive_node, tmp_path):
    server, archive = archive_node
    path = tmp_path / "odd.dcm"
    make_instance(path, sop="1.2.3.4.5.6.7.8.9")
    report = store("127.0.0.1", server.port, [path], called_ae="FERRO")
    (result,) = report.results
    assert result.status is None and "no accepted presentation context" in result.error
    assert archive.count() == 0


def test_disk_full_gives_out_of_resources_and_no_partial_file(tmp_path):
    with small_tmpfs(tmp_path / "small", "3m") as mnt:
        archive = Archive(mnt / "archive", durability="full")
        ae = AE("FERRO")
        ae.add_service(StorageSCP(archive))
        server = ae.start_server(("127.0.0.1", 0), block=False)
        try:
            small, big = tmp_path / "small.dcm", tmp_path / "big.dcm"
            make_instance(small)
            make_instance(big, frames=600)  # ~4.9 MB: does not fit
            report = store("127.0.0.1", server.port, [big, small], called_ae="FERRO")
            statuses = [None if r.status is None else int(r.status) for r in report.results]
            # Refused: out of resources (A7xx), and by eNTEGRA's policy the job stops there.
            assert statuses[0] is not None and 0xA700 <= statuses[0] <= 0xA7FF, statuses
            assert leftovers(archive) == []
            report = store("127.0.0.1", server.port, [small], called_ae="FERRO")
            assert [int(r.status) for r in report.results] == [0]
            assert archive.count() == 1
        finally:
            server.shutdown()
            archive.close()


def test_disk_full_during_direct_writes_gives_out_of_resources_and_no_partial_file(tmp_path):
    """Durability full on a small ext4, where direct I/O works (tmpfs has none): the disk fills up while the
    bytes past 4 MiB of a large data set go to the disk directly (rust/node/src/direct.rs). Out of resources,
    nothing partial left, nothing indexed; the server keeps serving and stores the next instance."""
    with small_ext4(tmp_path / "small", 48) as mnt:
        archive = Archive(mnt / "archive", durability="full")  # no journal here: it needs 256 MiB free
        ae = AE("FERRO")
        ae.add_service(StorageSCP(archive))
        server = ae.start_server(("127.0.0.1", 0), block=False)
        big, small = tmp_path / "big.dcm", tmp_path / "small.dcm"
        make_instance(big, frames=2000)  # ~16.4 MB
        make_instance(small, frames=4)
        filler = mnt / "filler"
        try:
            st = os.statvfs(mnt)
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:
                os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize - (10 << 20))
            finally:
                os.close(fd)
            report = store("127.0.0.1", server.port, [big], called_ae="FERRO")
            status = report.results[0].status
            assert status is not None and 0xA700 <= int(status) <= 0xA7FF, report.results
            assert leftovers(archive) == []
            assert archive.count() == 0
            report = store("127.0.0.1", server.port, [small], called_ae="FERRO")
            assert [int(r.status) for r in report.results] == [0]
            assert archive.count() == 1
            assert_same(small, archive.root / archive.query()[0]["path"])
        finally:
            server.shutdown()
            archive.close()


def test_disk_full_when_a_journaled_instance_reaches_its_file(tmp_path):
    """Durability full with a journal: the data set streams into a journal slot (space taken in advance). With
    direct records the archive file is written alongside, so the disk is found full while the data set
    arrives; with buffered records, only when the record is copied into the archive file at commit. Either
    way: out of resources, no partial file, nothing indexed; once there is room again the next instance is
    stored, and after a restart only that one is in the archive."""
    # The journal is only made where it leaves 256 MiB free.
    with small_tmpfs(tmp_path / "small", "300m") as mnt:
        root = mnt / "archive"
        archive = Archive(root, durability="full", journal=3 << 20, journal_record=1 << 20)
        assert archive.journal is not None and archive.journal.wait_ready(30)
        ae = AE("FERRO")
        ae.add_service(StorageSCP(archive))
        server = ae.start_server(("127.0.0.1", 0), block=False)
        refused, kept = tmp_path / "refused.dcm", tmp_path / "kept.dcm"
        refused_uid = make_instance(refused, frames=60).SOPInstanceUID  # ~490 KB: fits one slot
        kept_uid = make_instance(kept, frames=60).SOPInstanceUID
        filler = mnt / "filler"
        try:
            st = os.statvfs(mnt)
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:
                os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize - 128 * 1024)
            finally:
                os.close(fd)
            report = store("127.0.0.1", server.port, [refused], called_ae="FERRO")
            status = report.results[0].status
            assert status is not None and int(status) == 0xA700, report.results
            assert leftovers(archive) == []
            assert archive.count() == 0
            filler.unlink()
            report = store("127.0.0.1", server.port, [kept], called_ae="FERRO")
            assert [int(r.status) for r in report.results] == [0]
            # Buffered: both went through the journal, the refused record was written, then cancelled. Direct:
            # the refused one never reached its commit.
            assert archive.journal.stats["appended"] == (1 if archive.journal.writes_direct else 2)
        finally:
            server.shutdown()
            archive.close()
        archive = Archive(root, durability="full", journal=3 << 20, journal_record=1 << 20)
        try:
            assert [r["SOPInstanceUID"] for r in archive.query()] == [kept_uid]
            assert not list(root.rglob(f"{refused_uid}.dcm"))
            assert_same(kept, root / archive.query()[0]["path"])
        finally:
            archive.close()


# --- SIGKILL in the middle of a multi-association send ----------------------------------------------------


def test_sigkill_during_parallel_send_keeps_every_acknowledged_instance(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = [src / f"i{i:03d}.dcm" for i in range(120)]
    for f in files:
        make_instance(f, frames=4)
    port = free_port()
    arch = tmp_path / "archive"
    cmd = [*ferrodicom_cli(), "serve", "--aet", "FERRO", "--port", str(port), "--bind", "127.0.0.1", str(arch)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc)
    acked: list[str] = []
    lock = threading.Lock()

    def sender(chunk: list[Path]) -> None:
        def on_result(r) -> None:
            if r.status is not None and int(r.status) == 0:
                with lock:
                    acked.append(r.item.sop_instance_uid)

        store("127.0.0.1", port, chunk, called_ae="FERRO", timeout=10, progress=on_result)

    threads = [threading.Thread(target=sender, args=(files[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 30 and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for t in threads:
        t.join(timeout=60)
    with lock:
        acknowledged = set(acked)
    assert 30 <= len(acknowledged) < len(files), "the kill should land in the middle of the send"

    archive = Archive(arch)  # recovery runs at open after an unclean shutdown
    try:
        indexed = {row["SOPInstanceUID"]: row for row in archive.query()}
        assert acknowledged <= set(indexed), f"lost {len(acknowledged - set(indexed))} acknowledged instances"
        for uid in acknowledged:
            stored = archive.root / indexed[uid]["path"]
            original = next(f for f in files if str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) == uid)
            assert pydicom.dcmread(stored).PixelData == pydicom.dcmread(original).PixelData
        # No orphan rows (every row has its complete file) and no partial files.
        for row in indexed.values():
            assert pydicom.dcmread(archive.root / row["path"]).SOPInstanceUID == row["SOPInstanceUID"]
        assert list(archive.incoming_dir.iterdir()) == []
    finally:
        archive.close()


# --- raw protocol helpers ------------------------------------------------------------------------------------


def raw_associate(s: socket.socket) -> int:
    """Opens an association by hand (pynetdicom encodes the request); returns the context ID."""
    s.sendall(raw_associate_rq(called="FERRO", abstract_syntax=CTImageStorage, transfer_syntax=ExplicitVRLittleEndian))
    ac = pdu.decode(read_pdu(s))
    assert ac.name == "A-ASSOCIATE-AC" and ac.presentation_contexts[0]["result"] == 0
    return 1


def pdata(ctx_id: int, control: int, data: bytes) -> bytes:
    item = struct.pack(">IBB", len(data) + 2, ctx_id, control) + data
    return struct.pack(">BBI", 4, 0, len(item)) + item


def read_command(s: socket.socket) -> _core.Command:
    got = pdu.decode(read_pdu(s))
    assert got.name == "P-DATA-TF", got
    data = b"".join(d for _, is_cmd, _, d in got.pdvs if is_cmd)
    return _core.Command.decode(data)


def splice_element(cmd: bytes, element: int, value: bytes) -> bytes:
    """Inserts (0000,element) with a raw value into an encoded command set and fixes the group length."""
    body = BytesIO(cmd[12:]).read()
    elems = []
    pos = 0
    while pos < len(body):
        _, el, ln = struct.unpack("<HHI", body[pos : pos + 8])
        elems.append((el, body[pos + 8 : pos + 8 + ln]))
        pos += 8 + ln
    elems.append((element, value if len(value) % 2 == 0 else value + b"\x00"))
    elems.sort()
    out = b"".join(struct.pack("<HHI", 0, el, len(v)) + v for el, v in elems)
    return struct.pack("<HHII", 0, 0, 4, len(out)) + out
