"""The archive's Python work per received instance, without the network or the data path: ``Archive.prepare``
then ``Archive.complete`` for CT-like keys, each file an empty one made beforehand and renamed into place
(issue 26).

Usage: python bench/probes/archive_python.py none|full [N]
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
            # Made beforehand, as the data path's part pool makes its files: UIDs (pydicom's generate_uid is
            # slow) and the empty part files (creating files is slow where many were just deleted).
            uids = [generate_uid() for _ in range(count)]
            parts = [archive.new_part_path() for _ in range(count)]
            for part in parts:
                open(part, "wb").close()
            started = time.thread_time()
            for i, (uid, part) in enumerate(zip(uids, parts)):
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
                os.rename(part, plan.final)
                inst = StoredInstance(plan.final, 525_000, CTImageStorage, uid, ExplicitVRLittleEndian, keys=keys)
                archive.complete(plan, inst)
            return time.thread_time() - started

        ingest(200)  # warm up
        spent = ingest(n)
        print(f"{durability}: {1e3 * spent / n:.3f} ms of thread CPU per instance "
              "(prepare + rename + complete)")  # fmt: skip
        profiler = cProfile.Profile()
        profiler.enable()
        ingest(n)
        profiler.disable()
        archive.close()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
