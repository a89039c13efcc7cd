"""Where the CPU goes when eight DCMTK ``storescu`` processes send at once, against one.

Usage: ``python bench/probes/parallel_cpu.py CT_DIR RECEIVER [PAIRS]`` with RECEIVER one of bench_ingest's
receiver kinds (``ferrodicom-none``, ``ferrodicom-full``, ``dcmtk``, ``dcmtk-fork``...). For each of PAIRS
(default 3) pairs of rounds it sends CT_DIR once with one ``storescu`` and once with eight (1/8 of the files
each, as ``test_parallel_associations``), each into a freshly started receiver, and prints the rate, the
receiver's and the senders' CPU per instance, and the whole machine's busy cores (``/proc/stat``). A
receiver that forks (``dcmtk-fork``) shows ~0 receiver CPU: its children are not counted until reaped.
Not collected by pytest; see bench/README.md, "Design probes".
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_ingest as B  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy_s() -> float:
    v = list(map(int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]))
    return (sum(v) - v[3] - v[4]) / TICK  # all but idle and iowait


def main(src: Path, kind: str, pairs: int) -> None:
    files = sorted(src.iterdir())
    work = Path(tempfile.mkdtemp(prefix="parallel_cpu-"))
    try:
        _rounds(src, files, kind, pairs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _rounds(src: Path, files: list[Path], kind: str, pairs: int, work: Path) -> None:
    n = len(files)
    parts = B._split_into_folders(files, work, 8)
    for _ in range(pairs):
        for mode in ("one", "eight"):
            rx = B.Receiver(kind, work / "out", src)
            rx.start()
            try:
                b0, c0, s0, t = machine_busy_s(), process_cpu_s(rx.proc.pid), B._children_cpu_s(), time.perf_counter()
                if mode == "one":
                    B._storescu(rx.port, src)
                else:
                    B._storescu_parallel(rx.port, parts)
                t = time.perf_counter() - t
                rcv = process_cpu_s(rx.proc.pid) - c0
                snd, busy = B._children_cpu_s() - s0, machine_busy_s() - b0
            finally:
                rx.stop()
            print(
                f"{kind} {mode:5s} {n / t:6.0f}/s  receiver {rcv / n * 1e3:.3f} ms/inst  senders "
                f"{snd / n * 1e3:.3f} ms/inst  machine {busy / t:.2f} cores, {busy / n * 1e3:.3f} ms/inst",
                flush=True,
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)
