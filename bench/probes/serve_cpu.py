"""Where serve's CPU per received instance goes: DCMTK storescu sends the 400 CT of bench_ingest to a
receiver started fresh (as bench_ingest does), and the receiver's CPU is read from /proc, in total and
per thread (issue 26).

Usage: python bench/probes/serve_cpu.py none|full|dcmtk|null ROUNDS [--threads] [--perf]
(``--perf`` records each round with ``perf record -g`` at $PERF_FREQ samples per second, 2000 by default,
into ./perf-MODE-ROUND.data; at 20,000 the CPU per instance doubled). The ferrodicom receiver is the
``ferrodicom`` beside this Python, so two builds compare by running two interpreters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_ingest as b  # noqa: E402  (the corpus, the receivers and their settling)


def _corpus(root: Path) -> Path:
    ct = root / "ct"
    if not ct.exists():
        import numpy as np
        from pydicom.uid import CTImageStorage, generate_uid

        ct.mkdir(parents=True)
        rng = np.random.default_rng(42)
        study, series = generate_uid(), generate_uid()
        px = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
        for i in range(b.CT_COUNT):
            b._instance(ct / f"ct{i:04d}.dcm", CTImageStorage, 512, 1, px, study, series, i + 1)
    return ct


def _threads(pid: int) -> dict[tuple[str, str], float]:
    """CPU seconds by (thread id, thread name) of process ``pid`` (schedstat: nanoseconds, where stat counts
    clock ticks of 10 ms)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
            on_cpu_ns = int((task / "schedstat").read_text().split()[0])
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        out[(task.name, name)] = on_cpu_ns / 1e9
    return out


def main() -> None:
    mode, rounds = sys.argv[1], int(sys.argv[2])
    per_thread, perf = "--threads" in sys.argv, "--perf" in sys.argv
    root = Path(os.environ.get("PROBE_DIR", Path(tempfile.gettempdir()) / "ferrodicom-serve-cpu"))
    ct = _corpus(root)
    kind = {"none": "ferrodicom-none", "full": "ferrodicom-full"}.get(mode, mode)
    rx = b.Receiver(kind, root / "out", ct)
    try:
        for r in range(rounds):
            rx.start()
            assert rx.proc is not None
            pid = rx.proc.pid
            recorder = None
            if perf:
                recorder = subprocess.Popen(
                    [
                        "perf",
                        "record",
                        "-F",
                        os.environ.get("PERF_FREQ", "2000"),
                        "-g",
                        "-o",
                        f"perf-{mode}-{r}.data",
                        "-p",
                        str(pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(0.5)
            cpu0, threads0, t0 = b._process_cpu_s(pid), _threads(pid), time.monotonic()
            b._storescu(rx.port, ct)
            elapsed = time.monotonic() - t0
            cpu1, threads1 = b._process_cpu_s(pid), _threads(pid)
            if recorder is not None:
                recorder.send_signal(signal.SIGINT)
                recorder.wait()
            n = b.CT_COUNT
            print(
                f"{mode} round {r}: {n / elapsed:,.0f}/s server cpu {1e3 * (cpu1 - cpu0) / n:.3f} ms/instance",
                flush=True,
            )
            if per_thread:
                by_name: dict[str, float] = {}
                for key, seconds in threads1.items():
                    by_name[key[1]] = by_name.get(key[1], 0.0) + seconds - threads0.get(key, 0.0)
                busy = sorted(((v, k) for k, v in by_name.items() if v > 0), reverse=True)
                print("   ", ", ".join(f"{k} {1e3 * v / n:.3f}" for v, k in busy))
    finally:
        rx.stop()


if __name__ == "__main__":
    main()
