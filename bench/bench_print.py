"""Print Management (issue 23): 100 CT images (512 x 512, 12 bits stored) printed in ``STANDARD\\4,4`` on
14INX17IN films (7 films) by ferrodicom's print SCU to ``ferrodicom print-server`` (its own process, 150 dpi:
every film is rendered and written as a PNG before its N-ACTION is answered).

1. ``test_print_100_ct_4x4``: the SCU in a fresh process per round, ``print_images`` timed inside it (the
   job: association, N-GET, Film Session, 7 x (Film Box, 16 N-SETs, N-ACTION, N-DELETE), release): films
   per second of the job, and the SCU process's peak RSS (VmHWM) and its RSS once everything is imported.
2. ``test_print_cli_100_ct_4x4``: ``ferrodicom print`` once, wall time including the interpreter's start-up,
   and its peak RSS (``wait4``).

Run: ``python -m pytest bench/bench_print.py --benchmark-only -s``. The load average is printed with the
figures (this is a shared 2-core machine).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HOST = "127.0.0.1"
IMAGES = int(os.environ.get("BENCH_PRINT_IMAGES", "100"))
FORMAT = "STANDARD\\4,4"
FILMS = -(-IMAGES // 16)

#: The SCU: argv port, called AE, folder. Prints one JSON line.
SCU_SCRIPT = r"""
import json, sys, time
from pathlib import Path

def vm(name):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name):
            return int(line.split()[1]) / 1024

from ferrodicom.services.print import FilmBox, print_images
files = sorted(Path(sys.argv[3]).glob("*.dcm"))
before = vm("VmRSS:")
t = time.perf_counter()
report = print_images("127.0.0.1", int(sys.argv[1]), files, called_ae=sys.argv[2],
                      film=FilmBox("STANDARD\\4,4", film_size="14INX17IN"))
seconds = time.perf_counter() - t
print(json.dumps({"ok": report.ok, "failed": report.failed, "films": len(report.printed_films),
                  "images": report.images_printed, "warnings": len(report.warnings), "seconds": seconds,
                  "rss_before_job_mb": before, "peak_rss_mb": vm("VmHWM:")}))
"""


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


@pytest.fixture(scope="module")
def ct_folder(tmp_path_factory) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = tmp_path_factory.mktemp("ct")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512]
    body = ((yy - 256) ** 2 + (xx - 256) ** 2 < 230**2).astype(np.int32)
    for i in range(IMAGES):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Modality, ds.PatientID, ds.InstanceNumber = "CT", "BENCH", i + 1
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = 40, 400
        pixels = 24 + body * (1024 + rng.integers(-60, 60, (512, 512)))
        ds.PixelData = pixels.astype("<u2").tobytes()
        ds.save_as(folder / f"ct{i:03d}.dcm", enforce_file_format=True)
    return folder


@pytest.fixture(scope="module")
def print_server(tmp_path_factory):
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        port = int(s.getsockname()[1])
    out = tmp_path_factory.mktemp("films")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferrodicom.cli.main", "print-server", "--aet", "PRINTER", "--bind", HOST,
         "--port", str(port), str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("print-server did not start") from None
            time.sleep(0.05)
    yield port, out
    proc.terminate()
    proc.wait(timeout=10)


def test_print_100_ct_4x4(benchmark, ct_folder, print_server):
    port, _out = print_server
    runs: list[dict] = []

    def job() -> None:
        r = subprocess.run([sys.executable, "-c", SCU_SCRIPT, str(port), "PRINTER", str(ct_folder)],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout.splitlines()[-1])
        assert data["ok"], data["failed"]
        assert (data["films"], data["images"], data["warnings"]) == (FILMS, IMAGES, 0)
        runs.append(data)

    load_before = loadavg()
    benchmark.pedantic(job, rounds=3, warmup_rounds=1, iterations=1)
    timed = runs[1:]  # the warm-up round first
    seconds = [r["seconds"] for r in timed]
    rates = [FILMS / s for s in seconds]
    peak = max(r["peak_rss_mb"] for r in timed)
    before = statistics.median(r["rss_before_job_mb"] for r in timed)
    median = statistics.median(rates)
    line = (
        f"print {IMAGES} CT 512x512 in {FORMAT} ({FILMS} films, 14INX17IN at 150 dpi) to print-server: "
        f"{median:.2f} films/s median (best {max(rates):.2f}, job {statistics.median(seconds):.2f} s), "
        f"SCU peak RSS {peak:.0f} MB ({before:.0f} MB once imported); loadavg before: {load_before}, "
        f"after: {loadavg()}"
    )
    print("\n" + line)
    benchmark.extra_info.update({"films_per_s": median, "best_films_per_s": max(rates),
                                 "scu_peak_rss_mb": peak, "scu_rss_imported_mb": before,
                                 "loadavg_before": load_before, "loadavg_after": loadavg()})  # fmt: skip


def test_print_cli_100_ct_4x4(benchmark, ct_folder, print_server):
    port, _out = print_server
    measured: list[tuple[float, float]] = []

    def cli() -> None:
        t = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ferrodicom.cli.main", "print", "--aec", "PRINTER", "--format", FORMAT,
             "--film-size", "14INX17IN", HOST, str(port), str(ct_folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0
        measured.append((time.perf_counter() - t, usage.ru_maxrss / 1024))

    load_before = loadavg()
    benchmark.pedantic(cli, rounds=1, warmup_rounds=0, iterations=1)
    wall, peak = measured[-1]
    print(f"\nferrodicom print (CLI, start-up included): {wall:.2f} s for {FILMS} films = {FILMS / wall:.2f} films/s, "
          f"peak RSS {peak:.0f} MB; loadavg before: {load_before}, after: {loadavg()}")  # fmt: skip
    benchmark.extra_info.update({"cli_seconds": wall, "cli_peak_rss_mb": peak, "loadavg_before": load_before})
