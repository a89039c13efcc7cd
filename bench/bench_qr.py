"""Query/Retrieve: ferrodicom ``serve`` vs DCMTK ``dcmqrscp`` vs pynetdicom's ``qrscp`` app, one run.

* C-MOVE of 400 CT 512x512 16-bit instances (512 KiB each) to DCMTK ``storescp --ignore`` (it receives, stores
  nothing), requested by DCMTK ``movescu``: instances/s of each SCP holding the same 400 files. C-GET of the
  same by DCMTK ``getscu --ignore``. Each with the receiver's maximum PDU at DCMTK's default (16 KiB) and at
  128 KiB: the receiver's work per PDU is a large part of each sub-operation, for every SCP.
* C-FIND latency on one association (ferrodicom's SCU, 200 queries of each kind): study level by PatientID,
  by a PatientName wild card, by a StudyDate range (a week), series level within one study; p50 and p99.
  ferrodicom holds 1,000,000 instances (20,000 patients, 50,000 studies, 2 series of 10 instances each),
  bulk-loaded through the index interface; dcmqrscp the largest archive it holds: 4,000 instances (200
  studies of 20, files indexed with dcmqridx; its index.dat stops at 32 MiB, 8,032 bytes per instance, so
  4,172 instances per storage area at most); pynetdicom's qrscp the same 1,000,000 rows written into its
  database with its own SQLAlchemy model (``BENCH_PYN_ROWS`` for fewer), 20 queries of each kind there.
* Peak RSS of ``serve`` (VmHWM) while a C-FIND matching 100,000 instances streams its responses.

Run: ``python -m pytest bench/bench_qr.py --benchmark-only -s`` (about 10 minutes; the 1,000,000-row index
is built once, ~25 s). Figures and ratios are printed at the end and in ``extra_info``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from qr_corpus import synthetic_rows  # noqa: E402
from qr_peers import dcmqrscp, fill, free_port, pynetdicom_qrscp, serve, wait_for_port  # noqa: E402

CT_COUNT = 400
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PYN_ROWS = int(os.environ.get("BENCH_PYN_ROWS", "1000000"))
QUERIES = 200
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
RESULTS: dict[str, dict] = {}
pytestmark = pytest.mark.timeout(3600)
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
BULK_ROOT = "1.2.826.0.1.3680043.8.498.21.9"


def _ct(path: Path, n: int, study: str, series: str, pixels: bytes) -> None:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"{series}.{n + 1}"
    ds.PatientName, ds.PatientID = "Bench^QR", "BENCHQR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyDate, ds.StudyTime, ds.Modality = "20260101", "120000", "CT"
    ds.SeriesNumber, ds.InstanceNumber = 1, n + 1
    ds.Rows = ds.Columns = 512
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = pixels
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("qr-ct")
    rng = np.random.default_rng(21)
    study = "1.2.826.0.1.3680043.8.498.21.8.1"
    files = []
    for n in range(CT_COUNT):
        path = folder / f"ct{n:04d}.dcm"
        _ct(path, n, study, study + ".1", rng.integers(0, 4096, 512 * 512, dtype=np.uint16).tobytes())
        files.append(path)
    return files


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    """DCMTK storescp --ignore as the move destination, twice: BENCHDEST with DCMTK's default maximum PDU
    (16 KiB), BENCHDEST128 with 128 KiB. Yields {AE title: port}."""
    procs, ports = [], {}
    for aet, pdu in (("BENCHDEST", "16384"), ("BENCHDEST128", "131072")):
        port = free_port()
        out = tmp_path_factory.mktemp("dest")
        argv = ["/usr/bin/storescp", "--ignore", "-pdu", pdu, "-aet", aet, "-od", str(out), str(port)]
        proc = subprocess.Popen(argv, env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port, proc)
        procs.append(proc)
        ports[aet] = port
    yield ports
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def retrieve_scps(tmp_path_factory, ct_files, dest):
    """The three SCPs, each holding the 400 CT, both destinations in their address books."""
    root = tmp_path_factory.mktemp("qr-scps")
    with (
        serve(root / "ferro", "FERRO", dest, "--durability", "none", "--max-pdu", "0") as fport,
        dcmqrscp(root / "dcmqr", ct_files, "DCMQR", dest) as dport,
        pynetdicom_qrscp(root / "pyn", "PYNQR", dest) as pport,
    ):
        fill(fport, "FERRO", ct_files)
        fill(pport, "PYNQR", ct_files)
        yield {"ferrodicom": ("FERRO", fport), "dcmqrscp": ("DCMQR", dport), "pynetdicom": ("PYNQR", pport)}


def _retrieve(tool: str, aet: str, port: int, pdu: int) -> float:
    """One movescu (to BENCHDEST, or BENCHDEST128 for a 128 KiB PDU) or getscu --ignore run; seconds."""
    args = [f"/usr/bin/{tool}", "-S", "-aec", aet, "-k", "QueryRetrieveLevel=STUDY",
            "-k", "StudyInstanceUID=1.2.826.0.1.3680043.8.498.21.8.1"]  # fmt: skip
    if tool == "movescu":
        args += ["-aem", "BENCHDEST" if pdu == 16384 else "BENCHDEST128"]
    else:
        args += ["--ignore", "-pdu", str(pdu)]
    started = time.perf_counter()
    r = subprocess.run([*args, "127.0.0.1", str(port)], env=DCMTK_ENV, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    assert r.returncode == 0 and "E:" not in r.stderr and "W:" not in r.stderr, r.stderr[-2000:]
    return elapsed


@pytest.mark.parametrize("pdu", [16384, 131072])
@pytest.mark.parametrize("tool", ["movescu", "getscu"])
@pytest.mark.parametrize("scp", ["ferrodicom", "dcmqrscp", "pynetdicom"])
def test_retrieve_400_ct(benchmark, retrieve_scps, tool, scp, pdu):
    """The receiver's maximum PDU: DCMTK's default 16 KiB, and 128 KiB (pynetdicom only at the default)."""
    if scp == "pynetdicom" and pdu != 16384:
        pytest.skip("pynetdicom: one PDU size (it takes ~12 s a round)")
    aet, port = retrieve_scps[scp]
    _retrieve(tool, aet, port, pdu)  # warm-up: every SCP reads its files from the page cache
    rounds = ROUNDS if scp != "pynetdicom" else max(1, ROUNDS - 2)
    times: list[float] = []
    benchmark.pedantic(lambda: times.append(_retrieve(tool, aet, port, pdu)), rounds=rounds, iterations=1)
    rate = CT_COUNT / statistics.median(times)
    best = CT_COUNT / min(times)
    op = "C-MOVE" if tool == "movescu" else "C-GET"
    RESULTS[f"{op} pdu {pdu // 1024} KiB/{scp}"] = {"per_s": rate, "best": best}
    benchmark.extra_info.update({"instances_per_s": rate, "best_per_s": best, "rounds": rounds})


# --- C-FIND latency ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def million(tmp_path_factory) -> Path:
    """An archive folder whose index holds 1,000,000 instances, bulk-loaded through the index interface."""
    from ferrodicom import Archive

    folder = tmp_path_factory.mktemp("million") / "archive"
    started = time.perf_counter()
    with Archive(folder, durability="none") as archive:
        n = archive.index.bulk_load(synthetic_rows(archive.schema, 20_000, 50_000, 2, 10))
    RESULTS["index/bulk-load"] = {"rows": n, "seconds": time.perf_counter() - started}
    return folder


def _pyn_rows(limit: int):
    """The same rows as the million's, as pynetdicom qrscp's Instance table holds them."""
    from ferrodicom.archive.index import DEFAULT_SCHEMA

    for n, (_p, study, series, inst) in enumerate(synthetic_rows(DEFAULT_SCHEMA, 20_000, 50_000, 2, 10)):
        if n >= limit:
            return
        yield {
            "patient_id": study[1], "patient_name": study[3], "study_instance_uid": study[0],
            "study_date": study[4], "study_time": study[5], "accession_number": study[6], "study_id": study[7],
            "series_instance_uid": series[0], "modality": series[2], "series_number": int(series[3]),
            "sop_instance_uid": inst[0], "instance_number": int(inst[4]), "sop_class_uid": inst[1],
            "transfer_syntax_uid": "1.2.840.10008.1.2.1", "filename": inst[-4],
        }  # fmt: skip


def _small_files(folder: Path, studies: int, per_study: int) -> list[Path]:
    """Instances of the same shape (no pixel data) for dcmqrscp: ``studies`` of the million's first."""
    from ferrodicom.archive.index import DEFAULT_SCHEMA

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for n, (_p, study, series, inst) in enumerate(synthetic_rows(DEFAULT_SCHEMA, 20_000, 50_000, 2, 10)):
        if n >= studies * per_study:
            break
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = inst[1], inst[0]
        ds.PatientID, ds.PatientName = study[1], study[3]
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study[0], study[4], study[5], study[6]
        ds.StudyID = study[7]
        ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber = series[0], series[2], series[3]
        ds.InstanceNumber = inst[4]
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = inst[1], inst[0]
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{inst[0]}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def _queries(patients: int, studies: int) -> dict[str, list[Dataset]]:
    """200 identifiers of each kind, on patients and studies that exist in an archive of that size."""
    names = ["SMITH", "JONES", "MÜLLER", "GARCIA", "NGUYEN", "BROWN", "DUBOIS", "ROSSI", "SILVA", "KOWALSKI"]
    out: dict[str, list[Dataset]] = {"by PatientID": [], "PatientName wild card": [], "StudyDate range": [],
                                     "series of one study": []}  # fmt: skip
    for i in range(QUERIES):
        p = (i * 7919) % patients
        for kind in out:
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.StudyInstanceUID = ""
            ds.PatientName = ds.PatientID = ds.StudyDate = ""
            if kind == "by PatientID":
                ds.PatientID = f"PID{p:07d}"
            elif kind == "PatientName wild card":
                # SMITH123*: SMITH123^.. and SMITH1230-1239^..: at most 11 patients (~28 studies)
                name = names[p % 10]
                if not name.isascii():
                    ds.SpecificCharacterSet = "ISO_IR 192"
                ds.PatientName = f"{name}{p // 10}*"
            elif kind == "StudyDate range":
                year = 2000 + i % 25
                ds.StudyDate = f"{year}0301-{year}0307"
            else:
                ds.QueryRetrieveLevel = "SERIES"
                ds.StudyInstanceUID = f"{BULK_ROOT}.{1 + (i * 101) % studies}"
                ds.SeriesInstanceUID = ds.Modality = ds.SeriesNumber = ""
                del ds.PatientName, ds.PatientID, ds.StudyDate
            out[kind].append(ds)
    return out


def _latencies(aet: str, port: int, queries: dict[str, list[Dataset]]) -> dict[str, tuple[float, float, float]]:
    """(p50 ms, p99 ms, mean matches) of each kind, every query on one association (ferrodicom's SCU)."""
    from ferrodicom import AE

    ae = AE("BENCHSCU")
    ae.dimse_timeout = 600
    ae.add_requested_context(STUDY_ROOT_FIND)
    out = {}
    with ae.associate("127.0.0.1", port, ae_title=aet) as assoc:
        for kind, items in queries.items():
            times, matches = [], []
            for ds in items:
                started = time.perf_counter()
                results = list(assoc.send_c_find(ds, STUDY_ROOT_FIND))
                times.append((time.perf_counter() - started) * 1e3)
                assert int(results[-1][0].Status) == 0, hex(int(results[-1][0].Status))
                matches.append(len(results) - 1)
            times.sort()
            out[kind] = (times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))],
                         statistics.mean(matches))  # fmt: skip
    return out


@pytest.mark.parametrize("scp", ["ferrodicom", "dcmqrscp", "pynetdicom"])
def test_find_latency(benchmark, million, tmp_path, scp):
    if scp == "ferrodicom":
        patients, studies, label = 20_000, 50_000, "1,000,000 instances (20,000 patients, 50,000 studies)"
        ctx = serve(million, "FERRO")
        aet = "FERRO"
    elif scp == "dcmqrscp":
        patients, studies = 200, 200
        label = ("4,000 instances (200 studies of 20; its index file stops at 32 MiB, 8,032 bytes per instance: "
                 "4,172 at most per storage area)")  # fmt: skip
        files = _small_files(tmp_path / "files", 200, 20)
        ctx = dcmqrscp(tmp_path / "area", files, "DCMQR", max_studies=500)
        aet = "DCMQR"
    else:
        rows = min(PYN_ROWS, 1_000_000)
        studies = rows // 20
        patients = min(20_000, studies)
        label = f"{rows:,} instances ({patients:,} patients, {studies:,} studies) written into its database"
        ctx = pynetdicom_qrscp(tmp_path / "pyn", "PYNQR")
        aet = "PYNQR"
    with ctx as port:
        if scp == "pynetdicom":
            _fill_pynetdicom(tmp_path / "pyn" / "instances.sqlite", rows)
        queries = _queries(patients, studies)
        if scp == "pynetdicom" and rows > 100_000:
            queries = {k: v[:20] for k, v in queries.items()}  # seconds per query: 20 of each kind
        result: dict = {}
        benchmark.pedantic(lambda: result.update(_latencies(aet, port, queries)), rounds=1, iterations=1)
    for kind, (p50, p99, n) in result.items():
        RESULTS[f"C-FIND/{scp}/{kind}"] = {"p50_ms": p50, "p99_ms": p99, "matches": n}
    RESULTS[f"C-FIND/{scp}/archive"] = {"label": label, "queries": len(next(iter(queries.values())))}
    benchmark.extra_info.update({k: v for k, v in result.items()})


def _fill_pynetdicom(db: Path, rows: int) -> None:
    """Writes ``rows`` instances into pynetdicom qrscp's database with its own model (what its C-STORE does)."""
    from pynetdicom.apps.qrscp import db as pyn_db
    from sqlalchemy.orm import sessionmaker

    engine = pyn_db.create(f"sqlite:///{db}")
    session = sessionmaker(bind=engine)()
    batch: list[dict] = []
    for row in _pyn_rows(rows):
        batch.append(row)
        if len(batch) == 20_000:
            session.execute(pyn_db.Instance.__table__.insert(), batch)
            batch.clear()
    if batch:
        session.execute(pyn_db.Instance.__table__.insert(), batch)
    session.commit()
    session.close()


def _rss_peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def test_find_100k_matches_rss(benchmark, million):
    """IMAGE-level C-FIND matching 100,000 instances (5,000 studies of 20) streams; serve's peak RSS."""
    from ferrodicom import AE

    procs: list = []
    with serve(million, "FERRO", None, procs=procs) as port:
        pid = procs[0].pid
        before = _rss_peak(pid)
        q = Dataset()
        q.QueryRetrieveLevel = "IMAGE"
        # studies 0-4,999 (ACC00000000-ACC00004999): 100,000 instances
        q.AccessionNumber = "\\".join(f"ACC0000{d}*" for d in range(5))
        q.StudyInstanceUID = q.SeriesInstanceUID = q.SOPInstanceUID = q.InstanceNumber = q.SOPClassUID = ""
        ae = AE("BENCHSCU")
        ae.add_requested_context(STUDY_ROOT_FIND)
        ae.dimse_timeout = 600
        count = {"n": 0}

        def run() -> None:
            with ae.associate("127.0.0.1", port, ae_title="FERRO") as assoc:
                for _status, _ in assoc.send_c_find(q, STUDY_ROOT_FIND):
                    count["n"] += 1

        started = time.perf_counter()
        benchmark.pedantic(run, rounds=1, iterations=1)
        elapsed = time.perf_counter() - started
        peak = _rss_peak(pid)
    RESULTS["C-FIND 100k/ferrodicom"] = {"matches": count["n"] - 1, "rss_peak_mb": peak / 1e6,
                                         "rss_before_mb": before / 1e6, "seconds": elapsed}  # fmt: skip
    benchmark.extra_info.update(RESULTS["C-FIND 100k/ferrodicom"])
    assert count["n"] - 1 == 100_000


def test_zz_summary(benchmark):
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    lines = ["", "=== Q/R benchmark (bench/bench_qr.py) ==="]
    load = Path("/proc/loadavg").read_text().split()[:3]
    lines.append(f"load average {' '.join(load)}")
    for op in ("C-MOVE pdu 16 KiB", "C-GET pdu 16 KiB", "C-MOVE pdu 128 KiB", "C-GET pdu 128 KiB"):
        f = RESULTS.get(f"{op}/ferrodicom")
        if not f:
            continue
        parts = [f"{op} of {CT_COUNT} CT: ferrodicom {f['per_s']:,.0f}/s (best {f['best']:,.0f})"]
        for other in ("dcmqrscp", "pynetdicom"):
            o = RESULTS.get(f"{op}/{other}")
            if o:
                parts.append(f"{other} {o['per_s']:,.0f}/s (best {o['best']:,.0f}): {f['per_s'] / o['per_s']:.2f}x "
                             f"(best {f['best'] / o['best']:.2f}x)")  # fmt: skip
        lines.append("; ".join(parts))
    for scp in ("ferrodicom", "dcmqrscp", "pynetdicom"):
        info = RESULTS.get(f"C-FIND/{scp}/archive")
        if not info:
            continue
        lines.append(f"C-FIND on {scp}, {info['label']}, {info['queries']} queries of each kind, one association:")
        for k, v in RESULTS.items():
            if k.startswith(f"C-FIND/{scp}/") and "p50_ms" in v:
                lines.append(f"  {k.split('/')[-1]:<24} p50 {v['p50_ms']:8.2f} ms  p99 {v['p99_ms']:8.2f} ms  "
                             f"{v['matches']:.1f} matches")  # fmt: skip
    if "C-FIND 100k/ferrodicom" in RESULTS:
        r = RESULTS["C-FIND 100k/ferrodicom"]
        lines.append(f"C-FIND matching {r['matches']:,} instances: {r['seconds']:.1f} s, serve's peak RSS "
                     f"{r['rss_peak_mb']:.0f} MB (before the query {r['rss_before_mb']:.0f} MB)")  # fmt: skip
    if "index/bulk-load" in RESULTS:
        r = RESULTS["index/bulk-load"]
        lines.append(f"index bulk load: {r['rows']:,} rows in {r['seconds']:.1f} s")
    print("\n".join(lines))
