"""The archive's Python work per received instance, without the network or the data path: ``Archive.prepare``
then ``Archive.complete`` for CT-like keys, each file an empty one renamed into place (issue 26).

Usage: TMPDIR=<a settled folder> python bench/probes/archive_python.py none|full [N]
(the archive is made in a temporary folder; on this machine's journal-less ext4, creating files where many
were just deleted, as in /tmp after a test run, costs ~0.2 ms each instead of ~0.03 ms: bench/README.md,
"Method").
Prints the thread CPU time per instance (the index committer's thread not included) and cProfile's top
entries of a second, profiled pass.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import tempfile
import time

from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ferrodicom.archive import Archive, Plan, StoredInstance


def main() -> None:
    durability = sys.argv[1] if len(sys.argv) > 1 else "none"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    with tempfile.TemporaryDirectory() as root:
        archive = Archive(root, durability=durability)
        study, series = generate_uid(), generate_uid()

        def ingest(count: int) -> float:
            uids = [generate_uid() for _ in range(count)]  # made beforehand: pydicom's generate_uid is slow
            started = time.thread_time()
            for i, uid in enumerate(uids):
                keys = {
                    "SOPClassUID": CTImageStorage,
                    "SOPInstanceUID": uid,
                    "StudyInstanceUID": study,
                    "SeriesInstanceUID": series,
                    "PatientName": "Bench^Ingest",
                    "PatientID": "BENCH",
                    "StudyDate": "20260101",
                    "Modality": "CT",
                    "InstanceNumber": str(i + 1),
                    "Rows": "512",
                    "Columns": "512",
                }
                plan = archive.prepare(CTImageStorage, uid, keys)
                assert isinstance(plan, Plan), plan
                part = archive.new_part_path()
                open(part, "wb").close()
                os.rename(part, plan.final)
                inst = StoredInstance(plan.final, 525_000, CTImageStorage, uid, ExplicitVRLittleEndian, keys=keys)
                archive.complete(plan, inst)
            return time.thread_time() - started

        ingest(200)  # warm up
        spent = ingest(n)
        print(f"{durability}: {1e3 * spent / n:.3f} ms of thread CPU per instance "
              "(prepare + empty file + rename + complete)")  # fmt: skip
        profiler = cProfile.Profile()
        profiler.enable()
        ingest(n)
        profiler.disable()
        archive.close()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
