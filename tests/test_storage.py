"""Storage (PS3.4 Annex B) against real peers: DCMTK storescu/storescp, pynetdicom, and ferrodicom itself.

Every instance received is read back with pydicom and compared with what was sent: attributes and pixels.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    NuclearMedicineImageStorage,
    generate_uid,
)
from pynetdicom import AE as PynAE
from pynetdicom import AllStoragePresentationContexts
from pynetdicom import evt as pyn_evt

from conftest import dcmtk, dcmtk_env, ferrodicom_cli, free_port, wait_for_port
from ferrodicom import AE
from ferrodicom.archive import Archive
from ferrodicom.services.storage import StorageSCP, store

# pydicom's own files (data we did not write): uncompressed LE/BE pairs and compressed ones.
SAMPLES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "rtdose.dcm",
    "rtdose_expb.dcm",
    "JPEG2000.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPGExtended.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline (Process 1)
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG Lossless SV1 (Process 14 SV1)
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
]


@pytest.fixture
def samples(tmp_path) -> list[Path]:
    """pydicom's files with fresh SOP Instance UIDs: its variants of one image (LE, BE, RLE, JPEG-LS...)
    share a UID, and some (rtdose.dcm) disagree between File Meta and data set. Encodings are untouched."""
    out = []
    (tmp_path / "samples").mkdir()
    for name in SAMPLES:
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        p = tmp_path / "samples" / name
        ds.save_as(p, enforce_file_format=True)
        out.append(p)
    return out


def without_j2k(files: list[Path]) -> list[Path]:
    # DCMTK 3.6.7's storescu has no JPEG 2000 codec and cannot propose that transfer syntax.
    return [f for f in files if f.name != "JPEG2000.dcm"]


def make_instance(path: Path, *, ts: str = ExplicitVRLittleEndian, frames: int = 1, sop=CTImageStorage) -> Dataset:
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    ds = Dataset()
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Test^Storage"
    ds.PatientID = "ST1"
    ds.Modality = "NM" if sop == NuclearMedicineImageStorage else "CT"
    ds.InstanceNumber = 1
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = rng.integers(0, 65535, (frames, 64, 64), dtype=np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return ds


def assert_same(sent: Path, stored: Path) -> None:
    a, b = pydicom.dcmread(sent), pydicom.dcmread(stored)
    skip = {0xFFFCFFFC, 0x7FE00010}
    for elem in a:
        if elem.tag in skip:
            continue
        assert elem.tag in b, f"{elem.tag} missing from stored {stored}"
        assert b[elem.tag].value == elem.value, f"{elem.tag} differs in {stored}"
    if "PixelData" in a:
        if (
            a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID
            and a.file_meta.TransferSyntaxUID.is_compressed
        ):
            assert a.PixelData == b.PixelData  # compressed: stored exactly as received
        else:
            assert np.array_equal(a.pixel_array, b.pixel_array)


def stored_path(archive: Archive, sop_instance_uid: str) -> Path:
    rows = archive.query(SOPInstanceUID=sop_instance_uid)
    assert len(rows) == 1, rows
    return archive.root / rows[0]["path"]


def stored_copy_of(archive: Archive, sent: Path) -> Path:
    """The archive's file for the instance in the sent file ``sent`` (found by its SOP Instance UID)."""
    return stored_path(archive, str(pydicom.dcmread(sent, stop_before_pixels=True).SOPInstanceUID))


#: storescu proposes a compressed transfer syntax only when told which (3.6.7 has no JPEG 2000 codec at all).
DCMTK_PROPOSE = {
    "MR_small_RLE.dcm": "-xr",
    "MR_small_jpeg_ls_lossless.dcm": "-xt",
    "JPGExtended.dcm": "-xx",
    "SC_rgb_jpeg_dcmtk.dcm": "-xy",
    "SC_rgb_jpeg_gdcm.dcm": "-xs",
    "image_dfl.dcm": "-xd",
}


def dcmtk_storescu(port: int, files: list[Path], *extra: str) -> None:
    """Sends with DCMTK's storescu: uncompressed files together, each compressed one with its option."""
    plain = [f for f in files if f.name not in DCMTK_PROPOSE]
    runs = [([], plain)] + [([DCMTK_PROPOSE[f.name]], [f]) for f in files if f.name in DCMTK_PROPOSE]
    for opts, batch in runs:
        if not batch:
            continue
        r = subprocess.run(
            [dcmtk("storescu"), *opts, *extra, "-aec", "FERRO", "127.0.0.1", str(port), *map(str, batch)],
            env=dcmtk_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr


def test_dcmtk_storescu_to_ferrodicom(archive_node, samples):
    server, archive = archive_node
    files = without_j2k(samples)
    dcmtk_storescu(server.port, files)
    assert archive.count() == len(files)
    for f in files:
        uid = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        stored = stored_path(archive, uid)
        assert_same(f, stored)
        # Part 10 (PS3.10 §7.1): 128-byte preamble, DICM, File Meta with the negotiated syntax and the sender.
        assert stored.read_bytes()[128:132] == b"DICM"
        meta = pydicom.dcmread(stored, stop_before_pixels=True).file_meta
        assert meta.SourceApplicationEntityTitle == "STORESCU"
        assert meta.MediaStorageSOPInstanceUID == uid


def test_dcmtk_storescu_big_endian_and_folder(archive_node, tmp_path):
    server, archive = archive_node
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    made = {folder / "a.dcm": ExplicitVRBigEndian, folder / "sub" / "b.dcm": ExplicitVRLittleEndian}
    for p, ts in made.items():
        make_instance(p, ts=ts, frames=2, sop=NuclearMedicineImageStorage)
    # -xb proposes Explicit VR Big Endian first; +sd +r sends the folder recursively.
    r = subprocess.run(
        [dcmtk("storescu"), "-xb", "+sd", "+r", "-aec", "FERRO", "127.0.0.1", str(server.port), str(folder)],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert archive.count() == 2
    for p in made:
        stored = stored_copy_of(archive, p)
        assert_same(p, stored)
    big = stored_copy_of(archive, folder / "a.dcm")
    assert pydicom.dcmread(big).file_meta.TransferSyntaxUID == ExplicitVRBigEndian


def resident_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache now (``mincore`` of a read-only mapping)."""
    size = path.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        pages = (size + page - 1) // page
        vec = (ctypes.c_ubyte * pages)()
        try:
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec) * page


def direct_io_works(folder: Path) -> bool:
    try:
        fd = os.open(folder / ".direct-probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(fd)
    (folder / ".direct-probe").unlink()
    return True


def test_large_instances_with_full_durability_are_written_directly_and_read_back_identical(tmp_path):
    """Durability full: past 4 MiB a data set's bytes go to the disk with direct I/O in 1 MiB pieces, the last
    unaligned bytes through the page cache (rust/node/src/direct.rs). Sizes around the piece boundaries, from
    DCMTK's storescu and from ferrodicom's SCU, each read back identical; the bytes past 4 MiB never entered the
    page cache (on a filesystem without direct I/O, such as tmpfs, they go through it and only the content is
    checked)."""
    archive = Archive(tmp_path / "archive", durability="full")
    ae = AE("FERRO")
    ae.add_service(StorageSCP(archive))
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        sent = []
        # 8,192 bytes a frame: 512 frames end the pixel data just past 4 MiB, 640 at 5 MiB plus the header,
        # 1,501 in the middle of a piece with an odd tail.
        for i, frames in enumerate((512, 640, 1501)):
            p = tmp_path / f"big{i}.dcm"
            make_instance(p, frames=frames, sop=NuclearMedicineImageStorage)
            sent.append(p)
        dcmtk_storescu(server.port, sent[:2])
        report = store("127.0.0.1", server.port, sent[2:], called_ae="FERRO")
        assert [int(r.status) for r in report.results] == [0]
        assert archive.count() == 3
        stored = [stored_copy_of(archive, p) for p in sent]
        if direct_io_works(archive.root):
            # The write that crosses 4 MiB (one PDV, up to 128 KiB here) still goes through the page cache.
            for path in stored:
                assert resident_bytes(path) <= (4 << 20) + (256 << 10), path
            assert stored[2].stat().st_size > 2 * (4 << 20)
        for p, path in zip(sent, stored):
            assert_same(p, path)
    finally:
        server.shutdown()
        archive.close()


def test_storage_syntax_conversion_on_the_fly(tmp_path):
    archive = Archive(tmp_path / "archive", durability="none")
    ae = AE("FERRO")
    ae.add_service(StorageSCP(archive, store_transfer_syntax=ExplicitVRLittleEndian))
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        src = tmp_path / "be.dcm"
        make_instance(src, ts=ExplicitVRBigEndian, frames=3, sop=NuclearMedicineImageStorage)
        report = store("127.0.0.1", server.port, [src], called_ae="FERRO")
        assert [r.status for r in report.results] == [0]
        stored = stored_copy_of(archive, src)
        assert pydicom.dcmread(stored).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert_same(src, stored)
    finally:
        server.shutdown()
        archive.close()


def test_ferrodicom_store_cli_to_dcmtk_storescp(tmp_path, samples):
    port = free_port()
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [dcmtk("storescp"), "+xa", "-aet", "DCMTK", "-od", str(out), str(port)],
        env=dcmtk_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        files = without_j2k(samples)
        r = subprocess.run(
            [*ferrodicom_cli(), "store", "--aec", "DCMTK", "127.0.0.1", str(port), *map(str, files)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{len(files)} stored, 0 failed" in r.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    received = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in out.iterdir()}
    for f in files:
        assert_same(f, received[str(pydicom.dcmread(f).SOPInstanceUID)])


def test_store_cli_shows_a_progress_bar_on_a_terminal_and_log_lines_otherwise(tmp_path, archive_node):
    """``ferrodicom store``: a bar with bytes, rate and instances when stderr is a terminal; otherwise one
    plain line per instance with its status."""
    server, archive = archive_node
    plain = [tmp_path / f"plain{k}.dcm" for k in range(3)]
    tty = [tmp_path / f"tty{k}.dcm" for k in range(3)]
    for f in plain + tty:
        make_instance(f)
    cmd = [*ferrodicom_cli(), "store", "--aec", "FERRO", "127.0.0.1", str(server.port)]

    r = subprocess.run([*cmd, *map(str, plain)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(line for line in r.stderr.splitlines() if line.startswith("0x")) == [f"0x0000 {f}" for f in plain]
    assert "3 stored, 0 failed" in r.stdout

    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([*cmd, *map(str, tty)], stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    shown = b""
    while True:  # until the child closes the terminal (EIO on Linux); bounded by the child's --timeout
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + shown.decode(errors="replace")
    text = shown.decode(errors="replace")
    assert "3/3 instances" in text and "B/s" in text, text
    assert "0x0000" not in text
    assert "3 stored, 0 failed" in out and "B/s" in out
    assert archive.count() == 6


def test_store_cli_reports_a_refused_connection_and_skipped_files(tmp_path):
    """Nobody listening: every instance is counted not sent, no association, exit 1, and the cause is said once,
    with the fix; a file that is not DICOM is listed as skipped."""
    good, junk = tmp_path / "good.dcm", tmp_path / "junk.txt"
    make_instance(good)
    junk.write_text("not DICOM")
    port = free_port()
    r = subprocess.run(
        [*ferrodicom_cli(), "store", "127.0.0.1", str(port), str(good), str(junk)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "0 stored, 0 failed, 1 not sent, 1 skipped, 0 association(s)" in r.stdout
    assert r.stderr.splitlines() == [
        f"warning: skipped {junk}: not a DICOM file: no DICM prefix at byte 128, and no data set at byte 0",
        f"Error: cannot reach ANY-SCP at 127.0.0.1:{port}: network error: Connection refused (os error 111); "
        "check the host and port, and that the peer is running",
    ]


def test_ferrodicom_store_to_pynetdicom_and_datasets(tmp_path, samples):
    got: dict[str, Dataset] = {}

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        got[str(ds.SOPInstanceUID)] = ds
        return 0x0000

    pae = PynAE(ae_title="PYN")
    pae.supported_contexts = AllStoragePresentationContexts[:100]
    port = free_port()
    server = pae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(pyn_evt.EVT_C_STORE, on_store)])
    try:
        files = [p for p in samples if p.name in ("CT_small.dcm", "MR_small_bigendian.dcm", "rtdose.dcm")]
        ds = make_instance(tmp_path / "mem.dcm")  # also sent as an in-memory Dataset
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        report = store("127.0.0.1", port, [*files, ds], called_ae="PYN")
        assert [int(r.status) for r in report.results] == [0] * 4, [r.error for r in report.results]
    finally:
        server.shutdown()
    for f in files:
        a = pydicom.dcmread(f)
        b = got[str(a.SOPInstanceUID)]
        assert np.array_equal(a.pixel_array, b.pixel_array)
        assert a.PatientName == b.PatientName
    assert np.array_equal(got[str(ds.SOPInstanceUID)].pixel_array, ds.pixel_array)


@pytest.fixture
def answering_scp():
    """A pynetdicom storage SCP for every storage SOP class. ``answers[uid]`` is the status it returns for that
    SOP Instance UID (default 0000); it records the UIDs it was sent and the associations it accepted."""
    answers: dict[str, int] = {}
    seen: list[str] = []
    associations: list[int] = []

    def on_store(event):
        uid = str(event.request.AffectedSOPInstanceUID)
        seen.append(uid)
        return answers.get(uid, 0x0000)

    def on_established(event):
        associations.append(len(event.assoc.accepted_contexts))

    pae = PynAE(ae_title="PYN")
    pae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    handlers = [(pyn_evt.EVT_C_STORE, on_store), (pyn_evt.EVT_ESTABLISHED, on_established)]
    server = pae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    try:
        yield port, answers, seen, associations
    finally:
        server.shutdown()


@pytest.mark.parametrize("status", [0xC000, 0xA900, 0xA700])
def test_store_follows_entegra_failure_policy_when_asked(tmp_path, answering_scp, status):
    """``on_failure="entegra"`` (seed 000 L422-429, for a device profile that asks for it): after a Refused status
    (A7xx) the association ends and the rest is not sent; after any other failure the instance counts as failed
    and the rest goes on a new association. Every instance gets a result, with its status's meaning."""
    port, answers, seen, associations = answering_scp
    files = [tmp_path / f"i{k}.dcm" for k in range(5)]
    uids = [str(make_instance(f).SOPInstanceUID) for f in files]
    answers[uids[1]] = status
    progressed = []
    report = store("127.0.0.1", port, files, called_ae="PYN", progress=progressed.append, on_failure="entegra")
    got = [(r.item.sop_instance_uid, None if r.status is None else int(r.status)) for r in report.results]
    assert progressed == report.results
    assert report.results[1].error == report.results[1].status.meaning
    if status == 0xA700:
        assert got == [(uids[0], 0), (uids[1], status)] + [(u, None) for u in uids[2:]]
        assert all(r.error.startswith("not sent") and not r.sent for r in report.results[2:])
        assert seen == uids[:2]
        assert report.associations == len(associations) == 1
        assert [r.item.sop_instance_uid for r in report.not_sent] == uids[2:]
        assert "eNTEGRA" in report.stopped
    else:
        assert got == [(u, status if u == uids[1] else 0) for u in uids]
        assert seen == uids
        assert report.associations == len(associations) == 2
        assert report.not_sent == [] and report.stopped is None
    assert [r.item.sop_instance_uid for r in report.failed] == uids[1:2]


@pytest.mark.parametrize("status", [0xC000, 0xA700])
def test_store_by_default_reports_a_failure_and_goes_on_and_halt_stops(tmp_path, answering_scp, status):
    """The default (as DCMTK's storescu --no-halt): a failure status, Refused A7xx included, is reported and the
    rest goes on the same association. ``on_failure="halt"`` stops at the first failure: the rest is reported
    not sent, with the reason."""
    port, answers, seen, associations = answering_scp
    files = [tmp_path / f"i{k}.dcm" for k in range(4)]
    uids = [str(make_instance(f).SOPInstanceUID) for f in files]
    answers[uids[1]] = status
    report = store("127.0.0.1", port, files, called_ae="PYN")
    assert [(r.item.sop_instance_uid, r.outcome) for r in report.results] == [
        (u, "failed" if u == uids[1] else "stored") for u in uids
    ]
    assert seen == uids and report.associations == len(associations) == 1 and report.stopped is None

    seen.clear()
    report = store("127.0.0.1", port, files, called_ae="PYN", on_failure="halt")
    assert [r.outcome for r in report.results] == ["stored", "failed", "not sent", "not sent"]
    assert seen == uids[:2]
    assert report.stopped.startswith(f"--halt: stopped after {files[1]} failed")


@pytest.mark.parametrize("refuse_first", [False, True])
def test_store_splits_more_than_128_contexts_over_associations(tmp_path, answering_scp, refuse_first):
    """130 SOP classes need 130 presentation contexts: at most 128 per association (PS3.8 §9.3.2.2), so two
    associations. After a Refused status (eNTEGRA's policy) the second group is not sent, but every instance is
    reported."""
    port, answers, seen, associations = answering_scp
    classes = [cx.abstract_syntax for cx in AllStoragePresentationContexts][:130]
    (tmp_path / "many").mkdir()
    uids = [str(make_instance(tmp_path / "many" / f"{k:03d}.dcm", sop=c).SOPInstanceUID) for k, c in enumerate(classes)]
    if refuse_first:
        answers[uids[0]] = 0xA702
    report = store("127.0.0.1", port, [tmp_path / "many"], called_ae="PYN", on_failure="entegra")
    assert sorted(r.item.sop_instance_uid for r in report.results) == sorted(uids)
    if refuse_first:
        assert seen == uids[:1]
        assert associations == [128] and report.associations == 1
        assert [int(r.status) for r in report.results if r.status is not None] == [0xA702]
        assert sum(r.error is not None and r.error.startswith("not sent") for r in report.results) == 129
    else:
        assert sorted(seen) == sorted(uids)
        assert associations == [128, 2] and report.associations == 2
        assert [int(r.status) for r in report.results] == [0] * 130


@pytest.mark.parametrize(
    ("name", "peer_accepts"),
    [
        ("MR_small_bigendian.dcm", ImplicitVRLittleEndian),
        ("rtdose_expb.dcm", ExplicitVRLittleEndian),
        ("image_dfl.dcm", ExplicitVRLittleEndian),
        ("MR_small.dcm", ExplicitVRBigEndian),
    ],
)
def test_store_converts_when_the_peer_accepts_only_another_syntax(samples, name, peer_accepts):
    """The SCU offers the file's own syntax first, then ELE and ILE (as eNTEGRA offers several per SOP class);
    a peer that takes only one of those gets the data set converted on the fly, and reads the same values."""
    path = next(p for p in samples if p.name == name)
    sent = pydicom.dcmread(path)
    got: list[Dataset] = []

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        got.append(ds)
        return 0x0000

    pae = PynAE(ae_title="PYN")
    pae.add_supported_context(sent.SOPClassUID, peer_accepts)
    port = free_port()
    server = pae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(pyn_evt.EVT_C_STORE, on_store)])
    try:
        if peer_accepts == ExplicitVRBigEndian:
            # An ELE file is offered in ELE and ILE only: a peer that takes EBE alone gets nothing.
            report = store("127.0.0.1", port, [path], called_ae="PYN")
            (result,) = report.results
            assert result.status is None and "no accepted presentation context" in result.error
            assert got == []
            return
        report = store("127.0.0.1", port, [path], called_ae="PYN")
    finally:
        server.shutdown()
    (result,) = report.results
    assert int(result.status) == 0, result.error
    assert result.sent_transfer_syntax == peer_accepts
    (ds,) = got
    assert ds.file_meta.TransferSyntaxUID == peer_accepts
    for elem in sent:
        if elem.tag != 0x7FE00010:
            assert ds[elem.tag].value == elem.value, elem.tag
    assert np.array_equal(ds.pixel_array, sent.pixel_array)


def test_pynetdicom_scu_to_ferrodicom(archive_node, samples):
    """pynetdicom sends every sample, each in its own transfer syntax (one context per class and syntax):
    datasets it encodes itself for the uncompressed ones, the files as they are for the others."""
    server, archive = archive_node
    pae = PynAE(ae_title="PYNSCU")
    metas = {f: pydicom.dcmread(f, stop_before_pixels=True) for f in samples}
    for pair in sorted({(str(m.SOPClassUID), str(m.file_meta.TransferSyntaxUID)) for m in metas.values()}):
        pae.add_requested_context(*pair)
    assoc = pae.associate("127.0.0.1", server.port, ae_title="FERRO")
    assert assoc.is_established
    for f, meta in metas.items():
        compressed = meta.file_meta.TransferSyntaxUID.is_compressed
        status = assoc.send_c_store(f if compressed else pydicom.dcmread(f))
        assert status.Status == 0x0000, f.name
    assoc.release()
    for f in samples:
        stored = stored_path(archive, str(metas[f].SOPInstanceUID))
        assert pydicom.dcmread(stored).file_meta.TransferSyntaxUID == metas[f].file_meta.TransferSyntaxUID
        assert_same(f, stored)


def test_serve_cli_receives_from_storescu(tmp_path, samples):
    """README's main command, as a process: files arrive, are indexed, and survive a restart."""
    port = free_port()
    arch = tmp_path / "archive"
    cmd = [*ferrodicom_cli(), "serve", "--aet", "FERRO", "--port", str(port), "--bind", "127.0.0.1", str(arch)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, proc)
        files = without_j2k(samples)
        dcmtk_storescu(port, files)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    archive = Archive(arch)
    try:
        assert archive.count() == len(files)
        for f in files:
            assert_same(f, stored_copy_of(archive, f))
    finally:
        archive.close()


def test_serve_cli_storage_syntax(tmp_path, samples):
    """``serve --storage-syntax ele``: big-endian data sets from DCMTK storescu (``-xb``) are stored Explicit VR
    Little Endian, compressed ones as received; a syntax it cannot convert to is refused at start."""
    bad = subprocess.run(
        [*ferrodicom_cli(), "serve", "--port", "0", "--storage-syntax", "jpeg", str(tmp_path / "never")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "not an uncompressed transfer syntax" in bad.stderr
    assert not (tmp_path / "never").exists()

    port = free_port()
    arch = tmp_path / "archive"
    cmd = [*ferrodicom_cli(), "serve", "--aet", "FERRO", "--port", str(port), "--bind", "127.0.0.1"]
    proc = subprocess.Popen([*cmd, "--storage-syntax", "ele", str(arch)], stdout=subprocess.PIPE, text=True)
    files = [
        next(p for p in samples if p.name == n)
        for n in ("MR_small_bigendian.dcm", "rtdose_expb.dcm", "JPGExtended.dcm")
    ]
    try:
        wait_for_port(port, proc)
        dcmtk_storescu(port, files[:2], "-xb")  # proposes Explicit VR Big Endian
        dcmtk_storescu(port, files[2:])  # JPEG Extended (-xx)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    archive = Archive(arch)
    try:
        for f in files:
            sent = pydicom.dcmread(f, stop_before_pixels=True)
            stored = stored_path(archive, str(sent.SOPInstanceUID))
            sent_ts = sent.file_meta.TransferSyntaxUID
            want = sent_ts if sent_ts.is_compressed else ExplicitVRLittleEndian
            assert pydicom.dcmread(stored).file_meta.TransferSyntaxUID == want, f.name
            assert_same(f, stored)
    finally:
        archive.close()


def test_ferrodicom_to_ferrodicom_every_sample(archive_node, samples):
    server, archive = archive_node
    report = store("127.0.0.1", server.port, samples, called_ae="FERRO", calling_ae="SENDER")
    assert [(r.item.path.name, int(r.status)) for r in report.results] == [(p.name, 0) for p in samples]
    # Every data set is sent and stored exactly in the syntax it came in; the File Meta names the
    # negotiated syntax and the sender (PS3.10 §7.1).
    for f, r in zip(samples, report.results):
        sent = pydicom.dcmread(f, stop_before_pixels=True)
        stored = stored_path(archive, str(sent.SOPInstanceUID))
        meta = pydicom.dcmread(stored, stop_before_pixels=True).file_meta
        assert meta.TransferSyntaxUID == r.sent_transfer_syntax == sent.file_meta.TransferSyntaxUID
        assert meta.SourceApplicationEntityTitle == "SENDER"
        assert_same(f, stored)


@pytest.mark.parametrize("sop", ["1.2.840.113619.4.27", "1.2.840.113619.4.26", "1.2.840.113619.4.17"])
def test_seed_private_sop_classes_are_stored(tmp_path, archive_node, sop):
    """The seeds' private storage SOP classes (eNTEGRA/Xeleris Protocol Data, GE 3D Model, Xeleris/DaTQUANT
    Series Data): accepted, stored with their private elements and indexed, from ferrodicom's SCU and from
    pynetdicom's (which knows nothing of them)."""
    server, archive = archive_node
    files = []
    for who in ("ferrodicom", "pynetdicom"):
        ds = Dataset()
        ds.SOPClassUID = sop
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.PatientName, ds.PatientID, ds.Modality = "Private^Objects", "PRV1", "NM"
        block = ds.private_block(0x0033, "GEMS_XELPRV_01", create=True)
        block.add_new(0x08, "CS", "SERIES DATA")  # Object Type (seed 002 L1443)
        block.add_new(0x71, "UI", sop)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop, ds.SOPInstanceUID
        ds.save_as(tmp_path / f"{who}.dcm", enforce_file_format=True)
        files.append(tmp_path / f"{who}.dcm")

    report = store("127.0.0.1", server.port, files[:1], called_ae="FERRO")
    assert [int(r.status) for r in report.results] == [0], [r.error for r in report.results]
    pae = PynAE(ae_title="PYNSCU")
    pae.add_requested_context(sop, ExplicitVRLittleEndian)
    assoc = pae.associate("127.0.0.1", server.port, ae_title="FERRO")
    assert assoc.is_established
    assert assoc.send_c_store(files[1]).Status == 0x0000
    assoc.release()

    for f in files:
        stored = stored_copy_of(archive, f)
        assert_same(f, stored)
        assert pydicom.dcmread(stored).SOPClassUID == sop
    assert {r["SOPClassUID"] for r in archive.query(PatientID="PRV1")} == {sop}


class _RecordingSCP(StorageSCP):
    """A StorageSCP that keeps what the data path handed to ``prepare`` and ``stored``."""

    def __init__(self, archive: Archive) -> None:
        super().__init__(archive)
        self.prepared: list[dict] = []
        self.received: list = []

    def prepare(self, request, keys):
        self.prepared.append(dict(keys))
        return super().prepare(request, keys)

    def stored(self, request, received, plan):
        self.received.append(received)
        return super().stored(request, received, plan)


@pytest.mark.parametrize("durability", ["full", "none"])
@pytest.mark.parametrize(
    "policy, second_status, kept",
    [("keep-first", 0x0000, "Test^Storage"), ("reject", 0xC003, "Test^Storage"), ("replace", 0x0000, "Second^Copy")],
)
def test_placed_mid_stream_and_duplicates_over_the_network(tmp_path, durability, policy, second_status, kept):
    """The archive decides where a file goes once the data path has the index keys (before the Pixel Data
    has arrived); the file is renamed there by the data path. Duplicates follow the policy either way."""
    archive = Archive(tmp_path / "arc", durability=durability, duplicates=policy)
    ae = AE("FERRO")
    scp = _RecordingSCP(archive)
    ae.add_service(scp)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        first = tmp_path / "a.dcm"
        make_instance(first)
        second = tmp_path / "b.dcm"
        ds = pydicom.dcmread(first)
        ds.PatientName = "Second^Copy"
        ds.save_as(second)
        assert [r.status for r in store("127.0.0.1", server.port, [first], called_ae="FERRO").results] == [0]
        report = store("127.0.0.1", server.port, [second], called_ae="FERRO")
        assert [r.status for r in report.results] == [second_status]
        rows = archive.query("instance")
        assert len(rows) == 1 and rows[0]["PatientName"] == kept
        assert pydicom.dcmread(archive.root / rows[0]["path"]).PatientName == kept
        assert_same(first if kept == "Test^Storage" else second, archive.root / rows[0]["path"])
        # Both were decided mid-stream: keys known, the first placed by the data path, no .part left.
        assert [p["SOPInstanceUID"] for p in scp.prepared] == [str(ds.SOPInstanceUID)] * 2
        assert scp.received[0].placed == str(archive.root / rows[0]["path"])
        assert scp.received[0].path is None
        assert scp.received[1].discarded is (policy != "replace")
        assert [p for p in archive.incoming_dir.iterdir() if p.stat().st_size > 0] == []
    finally:
        server.shutdown()
        archive.close()
