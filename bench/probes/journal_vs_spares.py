"""Design probe (not a benchmark of ferrodicom, not collected by pytest): what one durable 512 KiB
instance costs with the journal as built, and with "written spare files", a design tried and dropped
(python/ferrodicom/archive/DESIGN.md, "Tried and dropped: written spare files": this probe favoured the
spares, the real server did not, and why).

Each mode stores 400 instances of 525,000 bytes, one after another, and prints the latency per
instance (p50, p90) and this process's CPU time per instance:

* ``journal``: what rust/node/src/journal.rs does today. The bytes go in whole pages into a slot of
  a preallocated journal file, with a write-out kick (``sync_file_range``) every 128 KiB; then the
  record header, one ``fdatasync`` of the journal, and meanwhile (a second thread)
  ``copy_file_range`` of the slot into a new ``.part`` file; then the rename into place.
* ``spare``: the ``.part`` is a spare file made beforehand (created, zero-filled with ``O_DIRECT``
  so that its blocks are allocated and written, and made durable). The bytes go in whole pages
  straight into it, kicks every 128 KiB; then the record header is written to the journal and its
  write-out started, both write-outs are waited for (``sync_file_range`` WAIT_BEFORE|WRITE|
  WAIT_AFTER: on the device, not yet flushed), and one ``fdatasync`` of the journal, which has
  nothing left to write, flushes the device cache for both; then ``ftruncate`` to the real length
  and ``link`` into place. Overwriting written blocks without changing the size needs no metadata,
  so the data is durable once the flush returns, on ext4 and XFS (not on copy-on-write
  filesystems such as btrfs).
* ``spare-serial``: as ``spare``, but the record is written only after the spare's write-out
  finished (two device round trips instead of one).

Both modes run on recycled ("hot") page cache: a scratch file is written and truncated first. On
this VM, page-cache pages never used before cost a host page fault each (bench/README.md), which
makes every mode several times slower and hides the difference.

Run from the repository (Linux only), alternating modes: ``python bench/probes/journal_vs_spares.py
DIR journal spare journal spare``. DIR must be on the filesystem under test; a fresh subfolder is
made for each mode and moved aside afterwards, never deleted (deletions slow down file creation on
a journal-less ext4 for minutes; bench/README.md, "Method").
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import mmap
import os
import sys
import time

N = 400
SIZE = 525_000
SLOT = 576 * 1024
KICK = 128 * 1024
PAGE = 4096
SFR_WAIT_BEFORE, SFR_WRITE, SFR_WAIT_AFTER = 1, 2, 4

libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]


def sync_file_range(fd: int, offset: int, length: int, flags: int) -> None:
    if libc.sync_file_range(fd, offset, length, flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def retire(folder: str) -> None:
    """Truncates every file in ``folder`` and moves it into ``.retired`` beside it (no inode freed)."""
    for root, _, files in os.walk(folder):
        for name in files:
            os.truncate(os.path.join(root, name), 0)
    graveyard = os.path.join(os.path.dirname(folder), ".retired")
    os.makedirs(graveyard, exist_ok=True)
    os.rename(folder, os.path.join(graveyard, f"{os.path.basename(folder)}-{time.monotonic_ns()}"))


def run(base: str, mode: str) -> None:
    data = os.urandom(SIZE)
    padded = data + b"\0" * (-SIZE % PAGE)
    work = os.path.join(base, f"{mode}-{time.time_ns()}")
    os.makedirs(os.path.join(work, "spare"))
    os.makedirs(os.path.join(work, "archive"))
    journal = os.open(os.path.join(work, "journal"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(journal, b"\0" * (SLOT + PAGE) * 64)
    os.fsync(journal)
    spare = mode.startswith("spare")
    if spare:
        zeros = mmap.mmap(-1, SLOT)  # page-aligned, as O_DIRECT requires
        for i in range(N):
            fd = os.open(os.path.join(work, "spare", str(i)), os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
            os.write(fd, zeros)
            os.close(fd)
    os.sync()
    time.sleep(6)
    scratch = os.open(os.path.join(work, "scratch"), os.O_RDWR | os.O_CREAT, 0o644)
    for _ in range(700):
        os.write(scratch, data)
    os.ftruncate(scratch, 0)
    os.close(scratch)
    copier = concurrent.futures.ThreadPoolExecutor(1)
    latencies = []
    before = os.times()
    for i in range(N):
        start = time.perf_counter()
        slot = (i % 64) * (SLOT + PAGE)
        target = os.path.join(work, "archive", f"{i}.dcm")
        if spare:
            path = os.path.join(work, "spare", str(i))
            fd = os.open(path, os.O_WRONLY)
            for k in range(0, len(padded), KICK):
                n = min(KICK, len(padded) - k)
                os.pwrite(fd, padded[k : k + n], k)
                sync_file_range(fd, k, n, SFR_WRITE)
            if mode == "spare":
                os.pwrite(journal, b"h" * PAGE, slot)
                sync_file_range(journal, slot, PAGE, SFR_WRITE)
                sync_file_range(fd, 0, 0, SFR_WAIT_BEFORE | SFR_WRITE | SFR_WAIT_AFTER)
                sync_file_range(journal, slot, PAGE, SFR_WAIT_BEFORE | SFR_WRITE | SFR_WAIT_AFTER)
            else:
                sync_file_range(fd, 0, 0, SFR_WAIT_BEFORE | SFR_WRITE | SFR_WAIT_AFTER)
                os.pwrite(journal, b"h" * PAGE, slot)
            os.fdatasync(journal)
            os.ftruncate(fd, SIZE)
            os.close(fd)
            os.link(path, target)
        else:
            for k in range(0, len(padded), KICK):
                n = min(KICK, len(padded) - k)
                os.pwrite(journal, padded[k : k + n], slot + PAGE + k)
                sync_file_range(journal, slot + PAGE + k, n, SFR_WRITE)
            os.pwrite(journal, b"h" * PAGE, slot)
            part = target + ".part"
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            copied = copier.submit(os.copy_file_range, journal, fd, SIZE, slot + PAGE, 0)
            os.fdatasync(journal)
            copied.result()
            os.close(fd)
            os.rename(part, target)
        latencies.append(time.perf_counter() - start)
    after = os.times()
    copier.shutdown()
    os.close(journal)
    for i in range(0, N, 40):
        with open(os.path.join(work, "archive", f"{i}.dcm"), "rb") as f:
            assert f.read() == data, f"instance {i} differs"
    latencies.sort()
    cpu = (after.user + after.system - before.user - before.system) / N
    print(
        f"{mode:13s} p50 {latencies[N // 2] * 1e3:.3f} ms  p90 {latencies[N * 9 // 10] * 1e3:.3f} ms  "
        f"cpu {cpu * 1e3:.3f} ms/instance",
        flush=True,
    )
    retire(work)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or any(m not in ("journal", "spare", "spare-serial") for m in argv[2:]):
        print(__doc__.split("\n\n")[-1], file=sys.stderr)
        return 2
    for mode in argv[2:]:
        run(argv[1], mode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
