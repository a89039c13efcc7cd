"""NM reorganisation benchmark: 512 shuffled frames of 256x256 16-bit (64 MiB), TOMO with two
detectors x 256 angular views (PS3.3 C.8.4.8), ferrodicom vs the straightforward numpy gather
``frames[np.lexsort(vectors[::-1])].reshape(...)`` on the same data, in the same run.

Also measures where the time goes: touching a fresh 64 MiB allocation (page faults) and copying
into memory already touched. Run: ``python -m pytest bench/bench_nm.py --benchmark-only``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from ferrodicom import nm  # noqa: E402
from ferrodicom._core import NmPlan  # noqa: E402
from nm_factory import make_nm  # noqa: E402

FLEN = 256 * 256 * 2


@pytest.fixture(scope="module")
def data():
    ds, expected = make_nm("TOMO", n_ew=1, n_det=2, n_views=256, rows=256, cols=256, seed=11)
    assert int(ds.NumberOfFrames) == 512
    axes = ("energy_window", "detector", "rotation", "angular_view")
    vectors = np.array(
        [
            list(ds.EnergyWindowVector),
            list(ds.DetectorVector),
            list(ds.RotationVector),
            list(ds.AngularViewVector),
        ]
    )
    frames = np.frombuffer(ds.PixelData, np.uint16).reshape(512, 256, 256)
    return {"ds": ds, "expected": expected, "vectors": vectors, "frames": frames, "axes": axes}


def _record(name, benchmark):
    benchmark.extra_info["label"] = name


def test_numpy_gather(benchmark, data):
    frames, vectors = data["frames"], data["vectors"]

    def run():
        return frames[np.lexsort(vectors[::-1])].reshape(1, 2, 1, 256, 256, 256)

    out = benchmark(run)
    np.testing.assert_array_equal(out, data["expected"])
    _record("numpy_gather", benchmark)


def test_ferrodicom_volume_fresh(benchmark, data):
    """nm.volume(ds): header parsing, plan, validation, gather into a fresh array."""
    vol = benchmark(nm.volume, data["ds"])
    np.testing.assert_array_equal(vol.array, data["expected"])
    _record("ferrodicom_volume_fresh", benchmark)


def test_ferrodicom_volume_out(benchmark, data):
    """nm.volume(ds, out=buf): the same into a reused (already touched) array."""
    buf = np.zeros_like(data["expected"])
    vol = benchmark(nm.volume, data["ds"], out=buf)
    np.testing.assert_array_equal(vol.array, data["expected"])
    _record("ferrodicom_volume_out", benchmark)


def _plan(data):
    v = data["vectors"]
    return NmPlan(list(data["axes"]), [r.tolist() for r in v], [1, 2, 1, 256], 512)


@pytest.mark.parametrize("threads", [1, None])
def test_kernel_gather_fresh(benchmark, data, threads):
    """Plan + gather into np.empty (huge-page backed), cached stores."""
    pix = data["ds"].PixelData

    def run():
        p = _plan(data)
        a = np.empty((1, 2, 1, 256, 256, 256), np.uint16)
        p.gather(pix, FLEN, 2, False, (a.ctypes.data, a.nbytes), stream=False, threads=threads)
        return a

    np.testing.assert_array_equal(benchmark(run), data["expected"])
    _record(f"kernel_fresh_threads={threads or 'auto'}", benchmark)


@pytest.mark.parametrize("threads", [1, None])
def test_kernel_gather_out(benchmark, data, threads):
    """Plan + gather into a touched buffer, streaming stores."""
    pix = data["ds"].PixelData
    a = np.zeros((1, 2, 1, 256, 256, 256), np.uint16)

    def run():
        _plan(data).gather(pix, FLEN, 2, False, (a.ctypes.data, a.nbytes), stream=True, threads=threads)
        return a

    np.testing.assert_array_equal(benchmark(run), data["expected"])
    _record(f"kernel_out_threads={threads or 'auto'}", benchmark)


def test_kernel_gather_bytearray(benchmark, data):
    """Plan + gather into a bytearray allocated by Rust (4 KiB pages, no huge pages)."""
    pix = data["ds"].PixelData
    out = benchmark(lambda: _plan(data).gather(pix, FLEN, 2, False))
    assert np.array_equal(np.frombuffer(out, np.uint16).reshape(data["expected"].shape), data["expected"])
    _record("kernel_fresh_bytearray", benchmark)


def test_where_time_goes_fresh_touch(benchmark, data):
    """Page-fault cost alone: allocate 64 MiB with numpy and write every page once."""
    benchmark(lambda: np.empty(512 * 256 * 256, np.uint16).fill(1))
    _record("fresh_64MiB_alloc+touch", benchmark)


def test_where_time_goes_copy_touched(benchmark, data):
    """Copy cost alone: 64 MiB into memory already touched (one contiguous memcpy)."""
    dst = np.zeros_like(data["frames"])
    benchmark(np.copyto, dst, data["frames"])
    _record("copy_64MiB_into_touched", benchmark)


def test_view_when_in_order(benchmark):
    """Frames already in vector order: the volume is a view of Pixel Data (no copy)."""
    ds, expected = make_nm("TOMO", n_ew=1, n_det=2, n_views=256, rows=256, cols=256, seed=12, shuffle=False)
    vol = benchmark(nm.volume, ds)
    assert vol.is_view and np.shares_memory(vol.array, np.frombuffer(ds.PixelData, np.uint8))
    _record("ferrodicom_volume_in_order_view", benchmark)
