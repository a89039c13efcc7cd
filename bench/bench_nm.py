"""NM reorganisation benchmark: 512 shuffled frames of 256x256 16-bit (64 MiB), TOMO with two
detectors x 256 angular views (PS3.3 C.8.4.8), ferrodicom vs the straightforward numpy gather
``frames[np.lexsort(vectors[::-1])].reshape(...)`` on the same data, in the same run.

``test_alternations_vs_numpy`` gives the comparison figures: ten alternations (``BENCH_NM_ALTERNATIONS``)
in which numpy and ferrodicom take turns call by call, best of 5 each, into fresh memory
(``nm.volume(ds)`` against numpy's gather) and into reused buffers (``nm.volume(ds, out=buf)``
against ``np.take(frames, order, axis=0, out=buf)``); it prints the ratios (numpy time /
ferrodicom time, > 1: ferrodicom faster), their minimum and median, and the load average.

The other tests measure where the time goes: touching a fresh 64 MiB allocation (page faults),
copying into memory already touched, the header work alone (frames already in order: a view),
and the kernel with each way of filling fresh memory.
Run: ``python -m pytest bench/bench_nm.py --benchmark-only -s``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
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


ALTERNATIONS = int(os.environ.get("BENCH_NM_ALTERNATIONS", "10"))
BEST_OF = 5


def _timed(fn):
    """Seconds taken by one call; the result is dropped (and its memory freed) after timing."""
    t0 = time.perf_counter()
    r = fn()
    t = time.perf_counter() - t0
    del r
    return t


def _steal_ticks():
    """The steal column of /proc/stat (time the host ran something else on our vCPUs)."""
    try:
        with open("/proc/stat") as f:
            return int(f.readline().split()[8])
    except (OSError, IndexError, ValueError):
        return -1


def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def test_alternations_vs_numpy(benchmark, data, capsys):
    """numpy vs ferrodicom, fresh memory and reused buffers, ALTERNATIONS times (one round each)."""
    ds, frames, vectors, expected = data["ds"], data["frames"], data["vectors"], data["expected"]
    order = np.lexsort(vectors[::-1])
    buf_np = np.zeros_like(frames)
    buf_fd = np.zeros_like(expected)

    def numpy_fresh():
        return frames[np.lexsort(vectors[::-1])].reshape(expected.shape)

    def fd_fresh():
        return nm.volume(ds).array

    def numpy_out():
        return np.take(frames, order, axis=0, out=buf_np)

    def fd_out():
        return nm.volume(ds, out=buf_fd).array

    # Untimed: every variant gives the expected volume.
    np.testing.assert_array_equal(numpy_fresh(), expected)
    np.testing.assert_array_equal(fd_fresh(), expected)
    np.testing.assert_array_equal(numpy_out().reshape(expected.shape), expected)
    np.testing.assert_array_equal(fd_out(), expected)

    rows = []

    def alternation():
        t = {"np": [], "fd": [], "np_out": [], "fd_out": []}
        for _ in range(BEST_OF):
            t["np"].append(_timed(numpy_fresh))
            t["fd"].append(_timed(fd_fresh))
        for _ in range(BEST_OF):
            t["np_out"].append(_timed(numpy_out))
            t["fd_out"].append(_timed(fd_out))
        rows.append({k: min(v) for k, v in t.items()})

    load0, steal0 = _loadavg(), _steal_ticks()
    benchmark.pedantic(alternation, rounds=ALTERNATIONS, iterations=1)
    load1, steal1 = _loadavg(), _steal_ticks()
    np.testing.assert_array_equal(buf_fd, expected)

    fresh = [r["np"] / r["fd"] for r in rows]
    reused = [r["np_out"] / r["fd_out"] for r in rows]
    benchmark.extra_info.update(
        label="alternations_vs_numpy",
        fresh_ratios=fresh,
        reused_ratios=reused,
        fresh_ratio_min=min(fresh),
        fresh_ratio_median=statistics.median(fresh),
        reused_ratio_min=min(reused),
        reused_ratio_median=statistics.median(reused),
        best_ms={k: [r[k] * 1e3 for r in rows] for k in rows[0]},
        loadavg_before=load0,
        loadavg_after=load1,
        steal_ticks=steal1 - steal0,
    )
    lines = [
        "",
        f"NM 64 MiB gather, {len(rows)} alternations, best of {BEST_OF} each (ms; ratio = numpy / ferrodicom)",
        f"{'#':>3} {'numpy':>8} {'volume':>8} {'fresh':>6}   {'np.take':>8} {'out=':>8} {'reused':>6}",
    ]
    for i, r in enumerate(rows, 1):
        lines.append(
            f"{i:>3} {r['np'] * 1e3:8.2f} {r['fd'] * 1e3:8.2f} {fresh[i - 1]:5.2f}x   "
            f"{r['np_out'] * 1e3:8.2f} {r['fd_out'] * 1e3:8.2f} {reused[i - 1]:5.2f}x"
        )
    lines += [
        f"fresh memory:  min {min(fresh):.2f}x  median {statistics.median(fresh):.2f}x",
        f"reused buffer: min {min(reused):.2f}x  median {statistics.median(reused):.2f}x",
        f"load average before {load0}, after {load1}; steal ticks during the test {steal1 - steal0}",
    ]
    with capsys.disabled():
        print("\n".join(lines))


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


@pytest.mark.parametrize("fresh", [False, True], ids=["faulting-copiers", "one-faulter"])
@pytest.mark.parametrize("threads", [1, None])
def test_kernel_gather_fresh(benchmark, data, threads, fresh):
    """Plan + gather into np.empty (huge-page backed), cached stores. fresh=False: every copier
    takes the page faults of its own part; fresh=True: the calling thread faults the pages in
    (MADV_POPULATE_WRITE), 2 MiB at a time, ahead of the copier(s)."""
    pix = data["ds"].PixelData

    def run():
        p = _plan(data)
        a = np.empty((1, 2, 1, 256, 256, 256), np.uint16)
        p.gather(pix, FLEN, 2, False, (a.ctypes.data, a.nbytes), stream=False, threads=threads, fresh=fresh)
        return a

    np.testing.assert_array_equal(benchmark(run), data["expected"])
    _record(f"kernel_fresh_threads={threads or 'auto'}_{'one-faulter' if fresh else 'faulting-copiers'}", benchmark)


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
