"""Storage Commitment of 10,000 stored instances in one request (issue 22): time from sending the N-ACTION to
receiving the N-EVENT-REPORT, and the peak RSS of ``ferrodicom serve``. Targets: < 2 s and < 150 MB.

``ferrodicom serve`` (durability full, its own process) first receives the instances (small CT data sets, sent
by ferrodicom's storage SCU; not timed); then ferrodicom's commitment SCU asks for all of them in one
N-ACTION, the report coming on the requesting association, ``BENCH_COMMIT_ROUNDS`` times (default 3, each a
new Transaction UID). Each round's figure is the SCU's own measurement (``CommitResult.seconds``): N-ACTION
sent to report received, which covers the SCP parsing the request, recording it durably, answering, checking
every instance against the index and its file, and sending the report, and the SCU reading it. Peak RSS is
``VmHWM`` of the serve process at the end (storing included). The load average is printed before and after.

    python -m pytest bench/bench_commit.py --benchmark-only -s -q
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import HOST

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from processes import free_port, stop, wait_for_port  # noqa: E402

N = int(os.environ.get("BENCH_COMMIT_INSTANCES", "10000"))
ROUNDS = int(os.environ.get("BENCH_COMMIT_ROUNDS", "3"))


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _instances(n: int) -> list[Any]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    study, series = generate_uid(), generate_uid()
    out = []
    for i in range(n):
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName, ds.Modality, ds.InstanceNumber = "BENCH", "Bench^Commit", "CT", i + 1
        ds.Rows = ds.Columns = 16
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = bytes(512)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        out.append(ds)
    return out


@pytest.fixture(scope="module")
def serve_with_instances(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from ferrodicom.services.storage import store

    port = free_port()
    archive = tmp_path_factory.mktemp("bench-commit") / "archive"
    log = open(archive.parent / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferrodicom.cli.main", "serve", "--aet", "FERRO", "--bind", HOST, "--port", str(port),
         "--stats-interval", "0", str(archive)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port(port, proc, timeout=30.0)
        datasets = _instances(N)
        started = time.monotonic()
        report = store(HOST, port, datasets, called_ae="FERRO")
        assert len(report.succeeded) == N, (report.failed[:3], report.skipped[:3])
        print(f"\nstored {N} instances in {time.monotonic() - started:.1f} s")
        refs = [(str(d.SOPClassUID), str(d.SOPInstanceUID)) for d in datasets]
        yield port, proc, refs
    finally:
        stop(proc)
        log.close()


def test_commit_10000_instances(benchmark: Any, serve_with_instances: Any) -> None:
    from ferrodicom.services.commitment import commit

    port, proc, refs = serve_with_instances
    before = _loadavg()
    seconds: list[float] = []

    def one() -> None:
        result = commit(HOST, port, refs, calling_ae="BENCH", called_ae="FERRO", wait=120, timeout=120)
        assert result.state == "committed" and len(result.committed) == len(refs), result.error
        assert result.seconds is not None
        seconds.append(result.seconds)

    benchmark.pedantic(one, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    rss = _peak_rss_mb(proc.pid)
    after = _loadavg()
    benchmark.extra_info.update({"n_action_to_report_s": seconds, "serve_peak_rss_mb": rss})
    print(
        f"\nStorage Commitment of {len(refs)} instances, N-ACTION to report received: "
        + ", ".join(f"{s:.3f} s" for s in seconds)
        + f" (best {min(seconds):.3f} s, median {sorted(seconds)[len(seconds) // 2]:.3f} s); "
        f"serve peak RSS {rss:.1f} MB\nload average before: {before}\nload average after:  {after}"
    )
    Path(os.environ.get("BENCH_COMMIT_OUT", "/dev/null")).write_text(f"{seconds} {rss}\n")
