"""C-STORE ingest: ferrodicom ``serve`` vs DCMTK ``storescp`` vs pynetdicom's ``storescp``, one run, one corpus.

DCMTK's ``storescu`` sends (TCP_NODELAY=1) to each receiver in turn:
  * small set: 400 CT-like 512x512 16-bit instances (~512 KiB each) -> instances/s
  * large set: 4 NM multi-frames of 512 frames of 256x256 16-bit (~64 MiB each) -> MB/s
ferrodicom runs with ``--durability none`` (like for like with storescp, which never fsyncs) and with the
default ``--durability full``. Also measured: ferrodicom SCU -> ferrodicom SCP, 8 parallel associations
(beside DCMTK's ``storescp --fork`` and pynetdicom receiving the same 8 senders), the server's peak RSS while
receiving one 2 GiB instance, and the disk's own floors for making the instances durable.

Run: ``python -m pytest bench/bench_ingest.py --benchmark-only -s`` (about 7-9 minutes).
Every server is started fresh, into an empty folder, for every round; rates are in ``extra_info``.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, NuclearMedicineImageStorage, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from processes import dcmtk_env, ferrodicom_cli, free_port, wait_for_port  # noqa: E402

DCMTK_ENV = dcmtk_env()

CT_COUNT = 400
NM_COUNT = 4
NM_FRAMES = 512
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
RESULTS: dict[str, dict[str, float]] = {}


def _instance(path: Path, sop: str, rows: int, frames: int, pixels: bytes, study: str, series: str, n: int) -> None:
    ds = Dataset()
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Bench^Ingest"
    ds.PatientID = "BENCH"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyDate = "20260101"
    ds.Modality = "NM" if sop == NuclearMedicineImageStorage else "CT"
    ds.InstanceNumber = n
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ingest-corpus")
    rng = np.random.default_rng(42)
    ct, nm = root / "ct", root / "nm"
    ct.mkdir()
    nm.mkdir()
    study, series = generate_uid(), generate_uid()
    px = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
    for i in range(CT_COUNT):
        _instance(ct / f"ct{i:04d}.dcm", CTImageStorage, 512, 1, px, study, series, i + 1)
    frames = rng.integers(0, 65535, (NM_FRAMES, 256, 256), dtype=np.uint16).tobytes()
    for i in range(NM_COUNT):
        _instance(nm / f"nm{i}.dcm", NuclearMedicineImageStorage, 256, NM_FRAMES, frames, study, series, i + 1)
    return {"ct": ct, "nm": nm, "root": root}


#: Seconds to wait after the clean-up before a round (see :class:`Receiver`).
SETTLE_S = 5.5


def _read_into_page_cache(folder: Path) -> None:
    """Reads every file under ``folder`` once, so that the sender reads its input from memory: this
    VM evicts file pages idle for about a minute (bench/README.md, "Method")."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                while f.read(1 << 20):
                    pass


def _retire(folder: Path) -> None:
    """Empties ``folder`` without freeing an inode: every file in it is truncated to 0 bytes (its
    page-cache pages and blocks are freed, as by a deletion) and the folder moves into
    ``.retired/`` beside it (pytest deletes that with the rest of its temporary folders). On this
    machine's journal-less ext4 a deletion would slow down every file created in the next minutes:
    the inode allocator checks, one at a time, each inode freed in the last 5 s, or 5 min while its
    inode-table block is dirty, and new files dirty those blocks again (bench/README.md, "Method")."""
    if not folder.exists():
        return
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.truncate(path, 0)
    graveyard = folder.parent / ".retired"
    graveyard.mkdir(exist_ok=True)
    folder.rename(graveyard / f"{folder.name}-{time.monotonic_ns()}")


def _empty_settled_folder(folder: Path) -> None:
    """Retires ``folder`` (:func:`_retire`), flushes everything, waits :data:`SETTLE_S` seconds, and
    makes ``folder`` again, empty: the state every round starts from (see :class:`Receiver`)."""
    _retire(folder)
    os.sync()
    time.sleep(SETTLE_S)
    folder.mkdir(parents=True)


class Receiver:
    """A receiver process started fresh, into an empty folder, for each round.

    Before each round (untimed) the previous round's files are emptied and moved aside
    (:func:`_retire`), everything is flushed with ``sync``, and the run waits :data:`SETTLE_S` seconds.
    Two effects of this machine make that necessary for a fair comparison: (1) on its journal-less
    ext4 the inode allocator checks, one by one, every inode freed in the last 5 seconds (5 minutes
    while the inode table block is dirty), so creating files after a mass deletion is several times
    slower (hence truncating, which frees no inode, rather than deleting); (2) in this VM, page-cache
    pages that were never used before cost a host page fault each, so keeping every round's data
    would make each round write into fresh memory (hence freeing the pages). This gives every receiver
    the same state: recycled page cache, no inode recently freed, no write-back in flight. Then the
    sender's input (``sender_input``) is read once, so that no round's sender reads it from disk:
    the VM evicts file pages idle for about a minute, as between two tests."""

    def __init__(self, kind: str, out: Path, sender_input: Path | None = None) -> None:
        self.kind, self.out, self.sender_input = kind, out, sender_input
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def command(self) -> tuple[list[str], dict[str, str]]:
        p, out = str(self.port), str(self.out)
        if self.kind.startswith("ferrodicom"):
            durability = self.kind.split("-")[1]
            cmd = [*ferrodicom_cli(), "serve", "--port", p, "--bind", "127.0.0.1", "--durability", durability, out]
            if self.kind.endswith("-metrics"):  # the Prometheus endpoint on: every instance counted
                cmd += ["--metrics-port", str(free_port())]
            return cmd, dict(os.environ)
        if self.kind == "dcmtk":
            return ["/usr/bin/storescp", "-od", out, p], DCMTK_ENV
        if self.kind == "dcmtk-fork":  # a child process per association: DCMTK's way to take several at once
            return ["/usr/bin/storescp", "--fork", "-od", out, p], DCMTK_ENV
        if self.kind == "null":  # DCMTK's receive path alone: reads every byte, answers Success, stores nothing
            return ["/usr/bin/storescp", "--ignore", p], DCMTK_ENV
        if self.kind == "pynetdicom":
            return [sys.executable, "-m", "pynetdicom", "storescp", "-od", out, p], dict(os.environ)
        raise ValueError(self.kind)

    def start(self) -> None:
        self.stop()
        _empty_settled_folder(self.out)
        if self.sender_input is not None:
            _read_into_page_cache(self.sender_input)
        self.port = free_port()
        cmd, env = self.command()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc, timeout=30.0)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stored_files(self) -> int:
        return sum(
            1
            for p in self.out.rglob("*")
            if p.is_file()
            and p.suffix != ".sqlite"
            and "sqlite" not in p.name
            and not p.name.startswith(".")
            and ".incoming" not in p.parts
        )


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) process ``pid`` has used so far (proc(5), stat fields 14-15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: CPU seconds the senders used, per test key (summed over rounds).
SENDER_CPU: dict[str, list[float]] = {}


def _storescu(port: int, folder: Path, cpu: list[float] | None = None) -> None:
    before = _children_cpu_s()
    r = subprocess.run(
        ["/usr/bin/storescu", "-aec", "BENCH", "127.0.0.1", str(port), "+sd", str(folder)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if cpu is not None:  # only storescu is reaped in between: the receivers are stopped outside
        cpu.append(_children_cpu_s() - before)
    assert r.returncode == 0, r.stderr[-2000:]


def _shares(files: list[Path], parts: int) -> list[list[Path]]:
    """``files`` cut into ``parts`` equal shares, in order: one per parallel sender."""
    n = len(files)
    return [files[k * n // parts : (k + 1) * n // parts] for k in range(parts)]


def _split_into_folders(files: list[Path], where: Path, parts: int) -> list[Path]:
    """``parts`` folders under ``where`` holding the :func:`_shares` of ``files`` (symlinks), one per sender."""
    folders = []
    for k, share in enumerate(_shares(files, parts)):
        d = where / f"part{k}"
        d.mkdir()
        for f in share:
            os.symlink(f.resolve(), d / f.name)
        folders.append(d)
    return folders


def _storescu_parallel(port: int, folders: list[Path]) -> None:
    """One DCMTK storescu process per folder, all at once; waits for every one to succeed."""
    cmd = ["/usr/bin/storescu", "-aec", "BENCH", "127.0.0.1", str(port), "+sd"]
    procs = [
        subprocess.Popen([*cmd, str(d)], env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for d in folders
    ]
    assert all(p.wait(timeout=600) == 0 for p in procs)


RECEIVERS = ["ferrodicom-none", "ferrodicom-full", "ferrodicom-full-metrics", "dcmtk", "pynetdicom", "null"]


@pytest.mark.parametrize("receiver", RECEIVERS)
@pytest.mark.parametrize("dataset", ["ct", "nm"])
def test_ingest_storescu(benchmark, corpus, tmp_path, receiver, dataset):
    folder = corpus[dataset]
    rx = Receiver(receiver, tmp_path / "out", folder)
    n = CT_COUNT if dataset == "ct" else NM_COUNT
    total_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    rounds = 1 if receiver == "pynetdicom" else ROUNDS
    cpu: list[float] = []
    server_cpu: list[float] = []

    def send() -> None:
        assert rx.proc is not None
        before = _process_cpu_s(rx.proc.pid)
        _storescu(rx.port, folder, cpu)
        server_cpu.append(_process_cpu_s(rx.proc.pid) - before)

    try:
        benchmark.pedantic(send, setup=rx.start, rounds=rounds, iterations=1)
        expected = 0 if receiver == "null" else n
        assert rx.stored_files() == expected, f"{receiver} stored {rx.stored_files()} of {expected}"
    finally:
        rx.stop()
    median = benchmark.stats.stats.median
    rate = {
        "instances_per_s": n / median,
        "mb_per_s": total_mb / median,
        "sender_cpu_ms_per_instance": 1e3 * sorted(cpu)[len(cpu) // 2] / n,
        "server_cpu_ms_per_instance": 1e3 * sorted(server_cpu)[len(server_cpu) // 2] / n,
    }
    benchmark.extra_info.update(rate)
    RESULTS[f"{dataset}/{receiver}"] = rate


@pytest.mark.parametrize("durability", ["none", "full"])
def test_ferrodicom_scu_to_scp(benchmark, corpus, tmp_path, durability):
    """ferrodicom store -> ferrodicom serve, in-process SCU, one association."""
    from ferrodicom.services.storage import store

    rx = Receiver(f"ferrodicom-{durability}", tmp_path / "out", corpus["ct"])
    try:
        benchmark.pedantic(
            lambda: store("127.0.0.1", rx.port, [corpus["ct"]], called_ae="BENCH"),
            setup=rx.start,
            rounds=ROUNDS,
            iterations=1,
        )
        assert rx.stored_files() == CT_COUNT
    finally:
        rx.stop()
    rate = {"instances_per_s": CT_COUNT / benchmark.stats.stats.median}
    benchmark.extra_info.update(rate)
    RESULTS[f"ct/ferrodicom-scu->ferrodicom-{durability}"] = rate


PARALLEL = [
    ("storescu", "ferrodicom-none"),
    ("storescu", "ferrodicom-full"),
    ("storescu", "dcmtk-fork"),
    ("storescu", "pynetdicom"),
    ("ferrodicom-scu", "ferrodicom-none"),
    ("ferrodicom-scu", "ferrodicom-full"),
]


@pytest.mark.parametrize(("sender", "receiver"), PARALLEL)
def test_parallel_associations(benchmark, corpus, tmp_path, receiver, sender):
    """8 associations at once, 50 instances each, into one receiver: from 8 DCMTK storescu processes,
    or from 8 threads of one process each running ferrodicom's ``store``. Compare with the same sender
    on one association (``test_ingest_storescu``, ``test_ferrodicom_scu_to_scp``), and with DCMTK's
    storescp (``--fork``: a process per association) and pynetdicom's storescp (a thread per
    association) receiving the same 8 storescu senders. The sender CPU time is recorded: on 2 cores,
    8 storescu start-ups (~20 ms each) are a visible share of the whole run."""
    from ferrodicom.services.storage import store

    files = sorted(corpus["ct"].iterdir())
    chunks = _shares(files, 8)
    parts = _split_into_folders(files, tmp_path, 8)
    rx = Receiver(receiver, tmp_path / "out", corpus["ct"])
    cpu: list[float] = []

    def run_storescu() -> None:
        before = _children_cpu_s()
        _storescu_parallel(rx.port, parts)
        cpu.append(_children_cpu_s() - before)

    def run_scu() -> None:
        reports: list = [None] * len(chunks)

        def send(k: int) -> None:
            reports[k] = store("127.0.0.1", rx.port, chunks[k], called_ae="BENCH")

        threads = [threading.Thread(target=send, args=(k,)) for k in range(len(chunks))]
        before = _self_cpu_s()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        cpu.append(_self_cpu_s() - before)
        assert sum(len(r.succeeded) for r in reports if r is not None) == CT_COUNT

    try:
        benchmark.pedantic(
            run_storescu if sender == "storescu" else run_scu,
            setup=rx.start,
            rounds=1 if receiver == "pynetdicom" else ROUNDS,
            iterations=1,
        )
        assert rx.stored_files() == CT_COUNT
    finally:
        rx.stop()
    rate = {
        "instances_per_s": CT_COUNT / benchmark.stats.stats.median,
        "sender_cpu_ms_per_instance": 1e3 * sorted(cpu)[len(cpu) // 2] / CT_COUNT,
    }
    benchmark.extra_info.update(rate)
    RESULTS[f"ct/8-parallel/{sender}->{receiver}"] = rate


def _create_durably(folder: Path, i: int, flags: int, write: Callable[[int], object]) -> None:
    """Creates ``folder/i.dcm`` the classic durable way: write to ``.part``, fsync, rename, fsync the
    folder (what a receiver without a journal does per instance)."""
    part = folder / f"{i}.part"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flags)
    try:
        write(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(part, folder / f"{i}.dcm")
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def test_fsync_floor(benchmark, corpus, tmp_path):
    """The disk's own cost of making one 512 KiB file durable as ``--durability full`` does (write, fsync,
    rename, fsync the directory), with no DICOM and no network: with one synchronous sender, the full-mode
    rate cannot beat ``1 / (sender's time per instance + this)``."""
    payload = (corpus["ct"] / "ct0000.dcm").read_bytes()
    out = tmp_path / "floor"
    out.mkdir()
    counter = iter(range(10**9))

    def run() -> None:
        for _ in range(CT_COUNT):
            i = next(counter)
            _create_durably(out, i, 0, lambda fd: os.write(fd, payload))

    benchmark.pedantic(run, setup=lambda: _empty_settled_folder(out), rounds=ROUNDS, iterations=1)
    _retire(out)
    per_file_ms = benchmark.stats.stats.median / CT_COUNT * 1e3
    benchmark.extra_info["ms_per_file"] = per_file_ms
    RESULTS["ct/disk-floor (write+fsync+rename+dir fsync)"] = {"ms_per_file": per_file_ms}


def test_journal_floor(benchmark, corpus, tmp_path):
    """The disk's own cost of what the journal does per instance: overwrite 512 KiB of a preallocated,
    fully written file and ``fdatasync`` it (no metadata changes). The journaled full-mode rate cannot
    beat ``1 / (sender's time per instance + this)``."""
    payload = (corpus["ct"] / "ct0000.dcm").read_bytes()
    slot = -(-len(payload) // 4096) * 4096 + 4096
    ring = tmp_path / "ring"
    fd = os.open(ring, os.O_RDWR | os.O_CREAT)
    try:
        zeros = bytes(1 << 20)
        for off in range(0, 64 << 20, len(zeros)):
            os.pwrite(fd, zeros, off)
        os.fsync(fd)
        slots = (64 << 20) // slot
        counter = iter(range(10**9))

        def run() -> None:
            for _ in range(CT_COUNT):
                os.pwrite(fd, payload, (next(counter) % slots) * slot)
                os.fdatasync(fd)

        def settle() -> None:
            os.sync()
            time.sleep(SETTLE_S)

        benchmark.pedantic(run, setup=settle, rounds=ROUNDS, iterations=1)
    finally:
        os.close(fd)
    per_file_ms = benchmark.stats.stats.median / CT_COUNT * 1e3
    benchmark.extra_info["ms_per_file"] = per_file_ms
    RESULTS["ct/journal-floor (overwrite+fdatasync)"] = {"ms_per_file": per_file_ms}


def test_nm_disk_floor(benchmark, corpus, tmp_path):
    """The disk's own rate for what ``--durability full`` must do with each large instance: get its
    bytes onto the device in a new file, fsync, rename, fsync the directory (no DICOM, no network).
    The bytes go with ``O_DIRECT`` from one reused, page-aligned buffer, so this is the device's rate
    and not the page cache's (in this VM, page-cache memory freed more than a second ago costs a host
    page fault on first use, which would make a buffered "floor" slower than the receivers). No
    receiver that makes each NM instance durable before answering can beat this MB/s."""
    import mmap

    files = sorted(corpus["nm"].iterdir())
    size = files[0].stat().st_size
    total_mb = sum(p.stat().st_size for p in files) / 1e6
    step = 4 << 20
    padded = -(-size // 4096) * 4096
    buf = mmap.mmap(-1, step)  # page-aligned, as O_DIRECT requires
    with open(files[0], "rb") as f:
        f.readinto(buf)
    out = tmp_path / "nmfloor"
    counter = iter(range(10**9))

    def run() -> None:
        for _ in files:
            i = next(counter)
            _create_durably(out, i, os.O_DIRECT, write_nm)

    def write_nm(fd: int) -> None:
        for off in range(0, padded, step):
            os.write(fd, memoryview(buf)[: min(step, padded - off)])

    try:
        benchmark.pedantic(run, setup=lambda: _empty_settled_folder(out), rounds=ROUNDS, iterations=1)
    finally:
        buf.close()
        _retire(out)
    mb_per_s = total_mb / benchmark.stats.stats.median
    benchmark.extra_info["mb_per_s"] = mb_per_s
    RESULTS["nm/disk-floor (O_DIRECT write+fsync+rename+dir fsync)"] = {"mb_per_s": mb_per_s}


def _vmhwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_peak_rss_2gib_instance(benchmark, tmp_path):
    """Peak RSS of ferrodicom serve receiving one 2 GiB instance (sent by ferrodicom's streaming SCU)."""
    from ferrodicom.services.storage import store

    big = tmp_path / "big.dcm"
    frames = 16384  # 16384 x 256 x 256 x 2 bytes = 2 GiB
    ds = Dataset()
    ds.SOPClassUID = NuclearMedicineImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = "BIG", "NM"
    ds.Rows = ds.Columns = 256
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = frames
    ds.PixelData = b""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(big, enforce_file_format=True)
    size = frames * 256 * 256 * 2
    # Rewrite the empty Pixel Data element with its real length and stream 2 GiB of pixels after it.
    raw = big.read_bytes()
    head = raw[: raw.rindex(b"\xe0\x7f\x10\x00")]
    with open(big, "wb") as f:
        f.write(head + b"\xe0\x7f\x10\x00OW\x00\x00" + size.to_bytes(4, "little"))
        block = np.random.default_rng(1).integers(0, 65535, 1 << 22, dtype=np.uint16).tobytes()
        for _ in range(size // len(block)):
            f.write(block)
    rx = Receiver("ferrodicom-none", tmp_path / "out")
    peaks = []

    def run() -> None:
        report = store("127.0.0.1", rx.port, [big], called_ae="BENCH", timeout=600)
        assert [int(r.status) for r in report.results] == [0]
        peaks.append(_vmhwm_kib(rx.proc.pid))

    try:
        benchmark.pedantic(run, setup=rx.start, rounds=1, iterations=1)
    finally:
        rx.stop()
        big.unlink()
    info = {"peak_rss_mib": peaks[0] / 1024, "mb_per_s": size / 1e6 / benchmark.stats.stats.median}
    benchmark.extra_info.update(info)
    RESULTS["2gib/ferrodicom-none"] = info


def test_zz_summary(benchmark):
    """Prints the table of rates and ratios (runs last in this file)."""
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    lines = ["", "ingest summary (median of rounds)"]
    for key, rate in sorted(RESULTS.items()):
        lines.append(f"  {key:42s} " + "  ".join(f"{k}={v:,.1f}" for k, v in rate.items()))

    def ratio(a: str, b: str, metric: str) -> str:
        if a in RESULTS and b in RESULTS:
            return f"{RESULTS[a][metric] / RESULTS[b][metric]:.2f}x"
        return "n/a"

    null = RESULTS.get("ct/null", {}).get("instances_per_s")
    floor = RESULTS.get("ct/disk-floor (write+fsync+rename+dir fsync)", {}).get("ms_per_file")
    if null and floor:
        best = 1 / (1 / null + floor / 1e3)
        lines.append(
            f"  ct full-durability bound for one synchronous sender: 1/(1/{null:,.0f} + {floor:.3f} ms) = "
            f"{best:,.0f}/s = {best / RESULTS['ct/dcmtk']['instances_per_s']:.2f}x dcmtk"
            if "ct/dcmtk" in RESULTS
            else f"  ct full-durability bound: {best:,.0f}/s"
        )
    jfloor = RESULTS.get("ct/journal-floor (overwrite+fdatasync)", {}).get("ms_per_file")
    if null and jfloor and "ct/dcmtk" in RESULTS:
        best = 1 / (1 / null + jfloor / 1e3)
        lines.append(
            f"  ct journaled full-durability bound: 1/(1/{null:,.0f} + {jfloor:.3f} ms) = {best:,.0f}/s = "
            f"{best / RESULTS['ct/dcmtk']['instances_per_s']:.2f}x dcmtk"
        )
    for ds, metric in (("ct", "instances_per_s"), ("nm", "mb_per_s")):
        ceiling = ratio(f"{ds}/dcmtk", f"{ds}/null", metric)
        lines.append(f"  {ds} dcmtk / null (storescp --ignore: DCMTK receiving without storing): {ceiling}")
        lines.append(f"  {ds} ferrodicom-none / null: {ratio(f'{ds}/ferrodicom-none', f'{ds}/null', metric)}")
        for mode in ("none", "full"):
            lines.append(
                f"  {ds} ferrodicom-{mode} / dcmtk: {ratio(f'{ds}/ferrodicom-{mode}', f'{ds}/dcmtk', metric)}"
                f"   / pynetdicom: {ratio(f'{ds}/ferrodicom-{mode}', f'{ds}/pynetdicom', metric)}"
            )
        lines.append(
            f"  {ds} ferrodicom-full with --metrics-port / without: "
            f"{ratio(f'{ds}/ferrodicom-full-metrics', f'{ds}/ferrodicom-full', metric)}"
        )
        cpu = {rx: RESULTS.get(f"{ds}/{rx}", {}).get("server_cpu_ms_per_instance") for rx in RECEIVERS}
        if cpu["dcmtk"]:
            lines.append(
                f"  {ds} server CPU per instance (ms): "
                + ", ".join(f"{rx} {v:.3f}" for rx, v in cpu.items() if v is not None)
                + "; ferrodicom / dcmtk: "
                + ", ".join(
                    f"{mode} {cpu[f'ferrodicom-{mode}'] / cpu['dcmtk']:.2f}x"
                    for mode in ("none", "full")
                    if cpu.get(f"ferrodicom-{mode}")
                )
            )
    nm_floor = RESULTS.get("nm/disk-floor (O_DIRECT write+fsync+rename+dir fsync)", {}).get("mb_per_s")
    if nm_floor and "nm/dcmtk" in RESULTS and "nm/pynetdicom" in RESULTS:
        lines.append(
            f"  nm full-durability bound (the device alone): {nm_floor:,.0f} MB/s = "
            f"{nm_floor / RESULTS['nm/dcmtk']['mb_per_s']:.2f}x dcmtk, "
            f"{nm_floor / RESULTS['nm/pynetdicom']['mb_per_s']:.2f}x pynetdicom"
        )
    for rx in ("ferrodicom-none", "ferrodicom-full"):
        par = f"ct/8-parallel/storescu->{rx}"
        lines.append(
            f"  ct 8 parallel storescu -> {rx} / dcmtk --fork: "
            f"{ratio(par, 'ct/8-parallel/storescu->dcmtk-fork', 'instances_per_s')}"
            f"   / pynetdicom: {ratio(par, 'ct/8-parallel/storescu->pynetdicom', 'instances_per_s')}"
        )
    for mode in ("none", "full"):
        one_dcmtk, one_scu = f"ct/ferrodicom-{mode}", f"ct/ferrodicom-scu->ferrodicom-{mode}"
        par_dcmtk = f"ct/8-parallel/storescu->ferrodicom-{mode}"
        par_scu = f"ct/8-parallel/ferrodicom-scu->ferrodicom-{mode}"
        lines.append(
            f"  ct 8 parallel / one association, {mode}: storescu senders "
            f"{ratio(par_dcmtk, one_dcmtk, 'instances_per_s')}, ferrodicom-scu senders "
            f"{ratio(par_scu, one_scu, 'instances_per_s')}"
        )
    print("\n".join(lines))
    benchmark.extra_info["summary"] = RESULTS
