"""What writing one received data set into the page cache costs, alone: 400 files of 525,000 bytes (the CT
of bench_ingest) written in pieces of 16 KiB to 1 MiB, thread CPU per file (issue 26). This is the floor
any receiver that stores through the page cache pays on top of DCMTK's ``storescp --ignore``.

Usage: python bench/probes/page_cache_write.py DIR [ROUNDS]
Each round's files are truncated afterwards (their pages freed and recycled by the next round, as
bench_ingest does between rounds); the first round also pays this VM's first touch of fresh memory.
"""

from __future__ import annotations

import os
import sys
import time

SIZE, COUNT = 525_000, 400
PIECES = (16 << 10, 64 << 10, 256 << 10, 1 << 20)


def write_round(folder: str, piece: int, data: bytes) -> float:
    """Thread CPU milliseconds per file."""
    paths = [os.path.join(folder, f"f{i}.part") for i in range(COUNT)]
    for p in paths:
        open(p, "wb").close()  # made beforehand, as the data path's part pool does
    view = memoryview(data)
    started = time.thread_time()
    for p in paths:
        fd = os.open(p, os.O_WRONLY)
        try:
            for offset in range(0, SIZE, piece):
                os.write(fd, view[offset : offset + piece])
        finally:
            os.close(fd)
    spent = time.thread_time() - started
    for p in paths:
        os.truncate(p, 0)
    return 1e3 * spent / COUNT


def main() -> None:
    folder = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    os.makedirs(folder, exist_ok=True)
    data = os.urandom(SIZE)
    write_round(folder, 1 << 20, data)  # first touch of the pages, not counted
    for r in range(rounds):
        print(f"round {r}: " + ", ".join(f"{p >> 10} KiB {write_round(folder, p, data):.3f} ms" for p in PIECES))


if __name__ == "__main__":
    main()
