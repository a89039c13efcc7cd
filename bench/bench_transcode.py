"""Transfer-syntax conversion speed: a generated 256 MiB multi-frame NM object, Explicit VR Big
Endian -> Explicit VR Little Endian, ferrodicom vs pydicom (vs DCMTK dcmconv when installed); and
the Deflated path: a mammography-sized image (issue 20) streamed in PDV-sized chunks through the
codec (validated as received, inflated, deflated) against Python's zlib in one go.

Run: python -m pytest bench/bench_transcode.py --benchmark-only -s
(-s shows the summary with GB/s, ratios and the streaming form's peak memory.)
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset

import ferrodicom
from ferrodicom import _core

EBE = "1.2.840.10008.1.2.2"
ELE = "1.2.840.10008.1.2.1"
FRAMES, ROWS, COLS = 8192, 128, 128  # 8192 x 128 x 128 x 2 bytes = 256 MiB
RESULTS: dict = {}


def _nm_dataset() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = EBE
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"  # NM Image Storage
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.999.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.999.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.999.3"
    ds.Modality = "NM"
    ds.PatientID = "BENCH"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "DYNAMIC", "EMISSION"]
    ds.NumberOfFrames = FRAMES
    ds.FrameIncrementPointer = [0x00540010, 0x00540100]
    ds.NumberOfEnergyWindows = 1
    ds.EnergyWindowVector = [1] * FRAMES
    ds.NumberOfTimeSlices = FRAMES
    ds.TimeSliceVector = list(range(1, FRAMES + 1))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ROWS, COLS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    counts = np.arange(FRAMES * ROWS * COLS, dtype=np.uint32) % 65521
    ds.PixelData = counts.astype(">u2").tobytes()
    return ds


@pytest.fixture(scope="module")
def nm_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "nm_ebe.dcm"
    pydicom.dcmwrite(path, _nm_dataset(), enforce_file_format=True)
    yield path
    _summary(path.stat().st_size)


@pytest.fixture(scope="module")
def nm_bytes(nm_file):
    return nm_file.read_bytes()


def _summary(size: int) -> None:
    if not RESULTS:
        return
    print(f"\n\nEBE -> ELE, {size / 2**20:.0f} MiB NM object (GB/s = 1e9 bytes/s, median of rounds)")
    base = RESULTS.get("pydicom")
    for name, seconds in RESULTS.items():
        if name.startswith("_"):
            continue
        ratio = f"{base / seconds:6.1f}x pydicom" if base else ""
        print(f"  {name:28s} {seconds * 1000:9.1f} ms  {size / seconds / 1e9:6.2f} GB/s  {ratio}")
    if "_peak_mb" in RESULTS:
        print(f"  streaming peak RSS above baseline: {RESULTS['_peak_mb']:.1f} MB")


def _record(name: str, benchmark) -> None:
    RESULTS[name] = benchmark.stats.stats.median
    benchmark.extra_info["GB/s"] = round(RESULTS["_size"] / RESULTS[name] / 1e9, 3)


def _pydicom_path(path) -> bytes:
    """The pydicom way: read, decode pixels (pydicom's writer does not swap OW), set the
    transfer syntax, write."""
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.pixel_array.astype("<u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ELE
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def test_pydicom(benchmark, nm_file) -> None:
    RESULTS["_size"] = nm_file.stat().st_size
    out = benchmark.pedantic(_pydicom_path, args=(nm_file,), rounds=3, iterations=1)
    _record("pydicom", benchmark)
    ours = pydicom.dcmread(io.BytesIO(ferrodicom.transcode(nm_file, ELE)))
    assert pydicom.dcmread(io.BytesIO(out)).PixelData == ours.PixelData


def test_ferrodicom_bytes(benchmark, nm_bytes) -> None:
    RESULTS["_size"] = len(nm_bytes)
    out = benchmark.pedantic(ferrodicom.transcode, args=(nm_bytes, ELE), rounds=10, iterations=1)
    _record("ferrodicom transcode(bytes)", benchmark)
    assert len(out) == len(nm_bytes)


def test_ferrodicom_streaming(benchmark, nm_file, tmp_path) -> None:
    RESULTS["_size"] = nm_file.stat().st_size
    dst = tmp_path / "out.dcm"
    benchmark.pedantic(ferrodicom.transcode_file, args=(nm_file, dst, ELE), rounds=10, iterations=1)
    _record("ferrodicom transcode_file", benchmark)
    assert dst.read_bytes() == ferrodicom.transcode(nm_file, ELE)
    peak = _streaming_peak_mb(nm_file, tmp_path / "peak.dcm")
    RESULTS["_peak_mb"] = peak
    benchmark.extra_info["peak_MB_above_baseline"] = round(peak, 1)
    assert peak < 64, f"streaming peak {peak:.1f} MB above baseline"


def test_copyfile_floor(benchmark, nm_file, tmp_path) -> None:
    """Reference, not a converter: shutil.copyfile of the same file to the same file system
    (in-kernel copy) is the floor for any file-to-file form."""
    RESULTS["_size"] = nm_file.stat().st_size
    dst = tmp_path / "copy.dcm"
    benchmark.pedantic(shutil.copyfile, args=(nm_file, dst), rounds=10, iterations=1)
    _record("(shutil.copyfile, I/O floor)", benchmark)


def _stream_in_memory(data: bytes, start: int) -> int:
    conv = _core.StreamConverter(EBE, ELE)
    n = 0
    step = 1 << 20
    for i in range(start, len(data), step):
        n += len(conv.feed(data[i : i + step]))
    rest, _ = conv.finish()
    return n + len(rest)


def test_ferrodicom_stream_converter_in_memory(benchmark, nm_bytes) -> None:
    """The streaming converter itself (1 MiB chunks, as PDVs would arrive), no file system."""
    RESULTS["_size"] = len(nm_bytes)
    start = _meta_end(nm_bytes)
    n = benchmark.pedantic(_stream_in_memory, args=(nm_bytes, start), rounds=10, iterations=1)
    _record("ferrodicom StreamConverter", benchmark)
    assert n == len(nm_bytes) - start


def test_ferrodicom_validate_and_extract(benchmark, nm_file) -> None:
    """Storage fast path: same syntax in and out, parse headers and extract index keys."""
    RESULTS["_size"] = nm_file.stat().st_size
    keys = [0x00100020, 0x0020000D, 0x0020000E, 0x00080018, 0x00080060, 0x00280008]
    found = benchmark.pedantic(_core.extract, args=(str(nm_file), keys), rounds=10, iterations=1)
    _record("ferrodicom extract (EBE->EBE)", benchmark)
    assert found[0x00280008][1].strip() == str(FRAMES).encode()


def _meta_end(data: bytes) -> int:
    fp = io.BytesIO(data)
    pydicom.filereader.read_preamble(fp, False)
    pydicom.filereader._read_file_meta_info(fp)
    return fp.tell()


def _streaming_peak_mb(src, dst) -> float:
    """Peak RSS growth (VmHWM) of a fresh interpreter running transcode_file: Rust allocations
    are invisible to tracemalloc, so read the kernel's high-water mark."""
    script = textwrap.dedent(
        f"""
        import ferrodicom
        def hwm():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        base = hwm()
        ferrodicom.transcode_file({str(src)!r}, {str(dst)!r}, {ELE!r})
        print(hwm() - base)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


@pytest.mark.skipif(shutil.which("dcmconv") is None, reason="DCMTK dcmconv not installed")
def test_dcmtk_dcmconv(benchmark, nm_file, tmp_path) -> None:
    RESULTS["_size"] = nm_file.stat().st_size
    dst = tmp_path / "dcmtk.dcm"
    cmd = ["dcmconv", "+te", str(nm_file), str(dst)]
    benchmark.pedantic(subprocess.run, args=(cmd,), kwargs={"check": True}, rounds=3, iterations=1)
    _record("DCMTK dcmconv +te", benchmark)
    ours = pydicom.dcmread(io.BytesIO(ferrodicom.transcode(nm_file, ELE)))
    assert pydicom.dcmread(dst).PixelData == ours.PixelData
    os.remove(dst)


# --- Deflated Explicit VR Little Endian (PS3.5 A.5), streamed in PDVs ------------------------------------------------

DEFL = "1.2.840.10008.1.2.1.99"
PDV = 16372  # DCMTK storescu's PDVs (maximum PDU 16384)
DEFL_RESULTS: dict = {}


@pytest.fixture(scope="module")
def mg_streams():
    """(Explicit VR LE data set, its raw deflate at zlib's default level 6): the issue's image, MG 4096 x 3328
    16-bit, 500 rows of zeros then 12-bit noise (~27 MB; deflates to ~73%)."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.999.20"
    ds.Modality = "MG"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = 3328, 4096
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    px = np.zeros((3328, 4096), np.uint16)
    px[500:] = np.random.default_rng(20).integers(0, 4096, (3328 - 500, 4096), dtype=np.uint16)
    ds.PixelData = px.tobytes()
    buf = pydicom.filebase.DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = False, True
    pydicom.filewriter.write_dataset(buf, ds)
    plain = buf.getvalue()
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    yield plain, z.compress(plain) + z.flush()
    if DEFL_RESULTS:
        print(f"\n\nDeflated, {len(plain) / 1e6:.1f} MB MG data set in {PDV}-byte chunks (MB/s of the inflated size)")
        for name, seconds in DEFL_RESULTS.items():
            print(f"  {name:44s} {seconds * 1000:9.1f} ms  {len(plain) / seconds / 1e6:8.1f} MB/s")


def _stream(src: str, dst: str, data: bytes) -> bytes:
    conv = _core.StreamConverter(src, dst)
    out = [conv.feed(data[i : i + PDV]) for i in range(0, len(data), PDV)]
    rest, _ = conv.finish()
    return b"".join(out) + rest


def _record_defl(name: str, benchmark, size: int) -> None:
    DEFL_RESULTS[name] = benchmark.stats.stats.median
    benchmark.extra_info["MB/s"] = round(size / DEFL_RESULTS[name] / 1e6, 1)


def test_deflated_validate_as_received(benchmark, mg_streams) -> None:
    """The storage data path's default: the stream is kept as received, inflated only to validate it."""
    plain, defl = mg_streams
    out = benchmark.pedantic(_stream, args=(DEFL, DEFL, defl), rounds=5, iterations=1)
    _record_defl("ferrodicom Deflated -> Deflated (validate)", benchmark, len(plain))
    assert out == defl


def test_deflated_inflate(benchmark, mg_streams) -> None:
    plain, defl = mg_streams
    out = benchmark.pedantic(_stream, args=(DEFL, ELE, defl), rounds=5, iterations=1)
    _record_defl("ferrodicom Deflated -> ELE (inflate)", benchmark, len(plain))
    assert out == plain


def test_deflated_deflate(benchmark, mg_streams) -> None:
    plain, _ = mg_streams
    out = benchmark.pedantic(_stream, args=(ELE, DEFL, plain), rounds=3, iterations=1)
    _record_defl("ferrodicom ELE -> Deflated (deflate)", benchmark, len(plain))
    assert zlib.decompress(out, -15) == plain


def test_zlib_inflate_one_go(benchmark, mg_streams) -> None:
    """Reference: Python's zlib (C) inflating the whole stream in one call, no parsing."""
    plain, defl = mg_streams
    out = benchmark.pedantic(zlib.decompress, args=(defl, -15), rounds=5, iterations=1)
    _record_defl("(zlib.decompress, one go)", benchmark, len(plain))
    assert out == plain


def test_zlib_deflate_one_go(benchmark, mg_streams) -> None:
    """Reference: Python's zlib (C) at level 6, as pydicom and pynetdicom deflate."""
    plain, defl = mg_streams

    def deflate() -> bytes:
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        return z.compress(plain) + z.flush()

    out = benchmark.pedantic(deflate, rounds=3, iterations=1)
    _record_defl("(zlib level 6, one go)", benchmark, len(plain))
    assert out == defl
