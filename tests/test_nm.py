"""NM multi-frame volumes (PS3.3 C.8.4.8): all eight image types, shuffled frames, two detectors,
both byte orders, 8 and 16 bits, errors, round trips, combine/split and DaTQUANT-style creation."""

from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

import ferrodicom
from ferrodicom import nm
from ferrodicom._core import NmPlan
from nm_factory import IMAGE_TYPES, check_nm_structure, encode, make_nm, to_bytes

ENCODINGS = [
    pytest.param(ExplicitVRLittleEndian, None, id="ELE"),
    pytest.param(ImplicitVRLittleEndian, None, id="ILE"),
    pytest.param(ExplicitVRBigEndian, None, id="EBE"),
    pytest.param(ExplicitVRLittleEndian, 66, id="ELE+GE66"),
    pytest.param(ExplicitVRLittleEndian, 76, id="ELE+GE76"),
]
EXPECTED_AXES = {
    "STATIC": ("energy_window", "detector"),
    "WHOLE BODY": ("energy_window", "detector"),
    "DYNAMIC": ("energy_window", "detector", "phase", "time_slice"),
    "GATED": ("energy_window", "detector", "rr_interval", "time_slot"),
    "TOMO": ("energy_window", "detector", "rotation", "angular_view"),
    "GATED TOMO": ("energy_window", "detector", "rotation", "rr_interval", "time_slot", "angular_view"),
    "RECON TOMO": ("slice",),
    "RECON GATED TOMO": ("rr_interval", "time_slot", "slice"),
}


def _volume(ds, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GE 66 under a little-endian syntax warns by design
        return nm.volume(ds, **kw)


@pytest.mark.parametrize("image_type", IMAGE_TYPES)
@pytest.mark.parametrize("ts,ge", ENCODINGS)
@pytest.mark.parametrize("bits,signed", [(8, False), (16, False), (16, True)])
def test_every_type_shuffled(image_type, ts, ge, bits, signed):
    ds, expected = make_nm(
        image_type, n_ew=2, bits=bits, signed=signed, transfer_syntax=ts, ge_byte_order=ge, seed=bits
    )
    assert check_nm_structure(ds) == []
    vol = _volume(ds)
    assert vol.axes == (*EXPECTED_AXES[image_type], "row", "column")
    assert vol.array.dtype == expected.dtype
    np.testing.assert_array_equal(vol.array, expected)
    assert vol.array.flags.c_contiguous
    assert not vol.is_view  # shuffled frames cannot be a view
    if "detector" in vol.axes:
        assert vol.array.shape[vol.axes.index("detector")] == 2


@pytest.mark.parametrize("image_type", IMAGE_TYPES)
@pytest.mark.parametrize("ts,ge", ENCODINGS)
def test_round_trip_volume_to_dataset_volume(image_type, ts, ge):
    ds, expected = make_nm(image_type, bits=16, signed=True, transfer_syntax=ts, ge_byte_order=ge)
    vol = _volume(ds)
    out = nm.to_dataset(vol, template=ds)
    assert check_nm_structure(out) == []
    if ge is None:
        # Same frame order and byte order as the template: the inverse scatter restores the bytes.
        assert out.PixelData == ds.PixelData
    again = _volume(encode(out, ts))
    np.testing.assert_array_equal(again.array, expected)
    assert again.axes == vol.axes
    canonical = encode(nm.to_dataset(vol, template=ds, keep_frame_order=False), ts)
    assert check_nm_structure(canonical) == []
    assert _volume(canonical).is_view == (ts != ExplicitVRBigEndian)
    np.testing.assert_array_equal(_volume(canonical).array, expected)


def test_template_is_not_modified():
    ds, _ = make_nm("TOMO", ge_byte_order=66)
    before = to_bytes(ds)
    nm.to_dataset(_volume(ds), template=ds)
    assert to_bytes(ds) == before


def test_ordered_frames_are_a_view_of_pixel_data():
    ds, expected = make_nm("GATED TOMO", shuffle=False)
    vol = nm.volume(ds)
    assert vol.is_view
    assert np.shares_memory(vol.array, np.frombuffer(ds.PixelData, np.uint8))
    np.testing.assert_array_equal(vol.array, expected)


def test_out_buffer_is_filled_in_place():
    ds, expected = make_nm("TOMO", n_views=8)
    out = np.full(expected.shape, 7, expected.dtype)
    vol = nm.volume(ds, out=out)
    assert vol.array is out
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ferrodicom.NmError, match="out="):
        nm.volume(ds, out=np.empty(expected.shape[1:], expected.dtype))


def test_large_volume_uses_streaming_and_threads():
    # Over the kernel's streaming/threading thresholds (8 MiB): same result as numpy.
    ds, expected = make_nm("TOMO", n_det=2, n_views=64, rows=128, cols=128, seed=3)
    vol = nm.volume(ds)
    np.testing.assert_array_equal(vol.array, expected)
    out = np.empty_like(expected)
    np.testing.assert_array_equal(nm.volume(ds, out=out).array, expected)


@pytest.mark.parametrize("threads", [None, 1, 2, 3])
@pytest.mark.parametrize("swap", [False, True])
def test_fresh_gather_and_scatter_give_numpys_gather(threads, swap):
    # 8 MiB (2 detectors x 64 views of 256x256 16-bit): several 2 MiB chunks for the faulter.
    # fresh=True only changes how the pages are faulted in: into a buffer that already holds
    # data (at an unaligned address), every byte is still the gather's.
    ds, expected = make_nm("TOMO", n_det=2, n_views=64, rows=256, cols=256, seed=5)
    frames = np.frombuffer(ds.PixelData, np.uint16)[: expected.size].reshape(-1, 256, 256)
    keywords = ("EnergyWindowVector", "DetectorVector", "RotationVector", "AngularViewVector")
    vectors = [list(ds[k].value) for k in keywords]
    want = frames[np.lexsort(np.array(vectors)[::-1])]
    if swap:
        want = want.byteswap()
    plan = NmPlan(["energy_window", "detector", "rotation", "angular_view"], vectors, [1, 2, 1, 64], len(frames))
    flen = 256 * 256 * 2
    raw = np.full(want.nbytes + 6, 0x5A, np.uint8)
    out = raw[6:]
    assert plan.gather(ds.PixelData, flen, 2, swap, (out.ctypes.data, out.nbytes), threads=threads, fresh=True) is None
    np.testing.assert_array_equal(out.view(np.uint16).reshape(want.shape), want)
    assert (raw[:6] == 0x5A).all()
    new = plan.gather(ds.PixelData, flen, 2, swap, threads=threads)  # a bytearray: fresh memory
    np.testing.assert_array_equal(np.frombuffer(new, np.uint16).reshape(want.shape), want)
    back = plan.scatter((out.ctypes.data, out.nbytes), flen, 2, swap, threads=threads)
    assert bytes(back) == ds.PixelData[: len(back)]
    again = np.full(len(back), 0xA5, np.uint8)
    plan.scatter(bytes(out), flen, 2, swap, (again.ctypes.data, again.nbytes), threads=threads, fresh=True)
    assert again.tobytes() == ds.PixelData[: len(back)]


def test_fresh_volume_is_an_ordinary_array():
    # The everyday call: a new, writable, C-contiguous array that owns its memory or is owned
    # by numpy, equal to numpy's gather; independent of the data set (a copy, not a view).
    ds, expected = make_nm("TOMO", n_det=2, n_views=64, rows=128, cols=128, seed=8)
    vol = nm.volume(ds)
    a = vol.array
    np.testing.assert_array_equal(a, expected)
    assert a.flags.c_contiguous and a.flags.writeable and not vol.is_view
    assert not np.shares_memory(a, np.frombuffer(ds.PixelData, np.uint8))
    a[...] = 0
    np.testing.assert_array_equal(nm.volume(ds).array, expected)


def test_big_endian_and_ge_byte_order():
    le, expected = make_nm("STATIC", transfer_syntax=ExplicitVRLittleEndian)
    be, _ = make_nm("STATIC", transfer_syntax=ExplicitVRBigEndian)
    ge, _ = make_nm("STATIC", ge_byte_order=66)
    assert be.PixelData != le.PixelData
    np.testing.assert_array_equal(nm.volume(be).array, expected)
    with pytest.warns(UserWarning, match="GE Byte Order"):
        np.testing.assert_array_equal(nm.volume(ge).array, expected)
    # Forcing the transfer syntax reads the GE-swapped bytes as little endian.
    swapped = nm.volume(ge, byte_order="transfer_syntax").array
    np.testing.assert_array_equal(swapped, expected.byteswap())
    assert nm.volume(ge, byte_order="big").ge["byte_order"] == "big"
    bad, _ = make_nm("STATIC", ge_byte_order=77)
    with pytest.raises(ferrodicom.NmError, match="Byte Order"):
        nm.volume(bad)


def test_inputs_path_and_bytes(tmp_path):
    ds, expected = make_nm("GATED")
    raw = to_bytes(ds)
    p = tmp_path / "gated.dcm"
    p.write_bytes(raw)
    np.testing.assert_array_equal(nm.volume(raw).array, expected)
    np.testing.assert_array_equal(nm.volume(str(p)).array, expected)
    np.testing.assert_array_equal(nm.volume(p).array, expected)


def test_coordinates():
    ds, _ = make_nm("TOMO", n_ew=2, n_views=6)
    c = nm.volume(ds).coords
    assert [w.name for w in c["energy_window"]] == ["EM1", "EM2"]
    assert c["energy_window"][1].ranges == ((146.0, 174.0),)
    assert c["detector"] == [1, 2]
    # CW rotation, 6 degree steps; detector 2 starts at 180 degrees.
    np.testing.assert_allclose(c["angular_view"][0, 0], [0, 354, 348, 342, 336, 330])
    np.testing.assert_allclose(c["angular_view"][1, 0], [180, 174, 168, 162, 156, 150])
    ds, _ = make_nm("RECON TOMO", n_slices=3)
    np.testing.assert_allclose(
        nm.volume(ds).coords["slice"], [[-100, -100, 50], [-100, -100, 54.4], [-100, -100, 58.8]]
    )
    ds, _ = make_nm("DYNAMIC", phases=(3, 3))
    c = nm.volume(ds).coords
    np.testing.assert_allclose(c["time_slice"][1], [1000, 7000, 13000])
    assert c["phase"][0]["frame_duration"] == 5000
    ds, _ = make_nm("GATED", n_ts=3)
    assert nm.volume(ds).coords["time_slot"][0] == [0.0, 50.0, 100.0]


def test_ragged_dynamic_gives_phases():
    ds, expected = make_nm("DYNAMIC", phases=(4, 2), n_ew=2)
    vol = nm.volume(ds)
    assert vol.ragged
    with pytest.raises(ferrodicom.NmError, match="ragged"):
        _ = vol.array
    assert len(vol.phases) == 2
    for ph, exp in zip(vol.phases, expected):
        assert ph.axes == ("energy_window", "detector", "time_slice", "row", "column")
        np.testing.assert_array_equal(ph.array, exp)
    np.testing.assert_allclose(vol.phases[1].coords["time_slice"], [1000, 7000])
    out = nm.to_dataset(vol)
    assert check_nm_structure(out) == []
    again = nm.volume(encode(out))
    for a, b in zip(again.phases, expected):
        np.testing.assert_array_equal(a.array, b)


def test_regular_dynamic_has_phases_too():
    ds, expected = make_nm("DYNAMIC", phases=(2, 2))
    vol = nm.volume(ds)
    assert not vol.ragged
    np.testing.assert_array_equal(vol.phases[1].array, expected[:, :, 1])


# ---------------------------------------------------------------------------------------------
# Errors


def _tamper(ds, keyword, value):
    ds = encode(ds)
    setattr(ds, keyword, value)
    return ds


def test_short_vector():
    ds, _ = make_nm("TOMO")
    v = list(ds.AngularViewVector)[:-1]
    with pytest.raises(ferrodicom.NmError, match=r"angular_view vector has 11 values, expected one per frame \(12\)"):
        nm.volume(_tamper(ds, "AngularViewVector", v))


def test_duplicate_position_named():
    ds, _ = make_nm("GATED", n_rr=1, n_ts=3, n_det=1, shuffle=False)
    with pytest.raises(
        ferrodicom.NmError,
        match=r"\(energy_window=1, detector=1, rr_interval=1, time_slot=1\) held by frames 1 and 2",
    ):
        nm.volume(_tamper(ds, "TimeSlotVector", [1, 1, 3]))


def test_value_out_of_range():
    ds, _ = make_nm("RECON TOMO", n_slices=4, shuffle=False)
    with pytest.raises(ferrodicom.NmError, match=r"slice vector value 5 at frame 2 is outside 1..=4"):
        nm.volume(_tamper(ds, "SliceVector", [1, 5, 3, 4]))
    with pytest.raises(ferrodicom.NmError, match=r"value 0 at frame 1"):
        nm.volume(_tamper(ds, "SliceVector", [0, 2, 3, 4]))


def test_missing_position_named():
    ds, _ = make_nm("RECON TOMO", n_slices=4, shuffle=False)
    ds = _tamper(ds, "NumberOfSlices", 5)
    with pytest.raises(ferrodicom.NmError, match=r"missing position\(s\).*\(slice=5\)"):
        nm.volume(ds)


def test_huge_count_is_a_clean_error():
    ds, _ = make_nm("RECON GATED TOMO", shuffle=False)
    ds = _tamper(ds, "NumberOfSlices", 65535)
    ds.NumberOfRRIntervals = 65535
    with pytest.raises(ferrodicom.NmError, match="missing"):
        nm.volume(ds)


def test_malformed_headers():
    ds, _ = make_nm("STATIC")
    with pytest.raises(ferrodicom.NmError, match="not an NM frame index vector"):
        nm.volume(_tamper(ds, "FrameIncrementPointer", pydicom.tag.Tag(0x00181063)))
    with pytest.raises(ferrodicom.NmError, match="Bits Allocated 32"):
        nm.volume(_tamper(ds, "BitsAllocated", 32))
    short = encode(ds)
    short.PixelData = short.PixelData[:-4]
    with pytest.raises(ferrodicom.NmError, match="Pixel Data holds"):
        nm.volume(short)
    with pytest.raises(ferrodicom.NmError, match="DetectorVector"):
        t = encode(ds)
        del t.DetectorVector
        nm.volume(t)
    sc = nm.secondary_capture(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ferrodicom.NmError, match="not NM Image Storage"):
        nm.volume(sc)


def test_nmplan_rejects_bad_arguments():
    with pytest.raises(ferrodicom.NmError):
        NmPlan(["a"], [[1], [1]], [1], 1)
    p = NmPlan(["slice"], [[2, 1]], [2], 2)
    assert p.shape == [2] and p.slot_frames == [1, 0] and p.frame_slots == [1, 0]
    with pytest.raises(ferrodicom.NmError, match="pixel buffer"):
        p.gather(b"\x00" * 3, 2, 1, False)
    with pytest.raises(TypeError):
        p.gather("not bytes", 2, 1, False)
    with pytest.raises(ferrodicom.NmError, match="8-bit"):
        p.gather(b"\x00" * 4, 2, 1, True)
    assert bytes(p.gather(b"abcd", 2, 1, False)) == b"cdab"
    assert bytes(p.gather(b"abcd", 2, 2, True)) == b"dcba"
    assert bytes(p.scatter(b"cdab", 2, 1, False)) == b"abcd"


# ---------------------------------------------------------------------------------------------
# combine / split (seed 000 L2292-2299)


@pytest.mark.parametrize(
    "image_type,along",
    [
        ("GATED TOMO", "rr_interval"),
        ("GATED", "rr_interval"),
        ("TOMO", "detector"),
        ("STATIC", "energy_window"),
        ("DYNAMIC", "phase"),
    ],
)
def test_split_then_combine(image_type, along):
    ds, expected = make_nm(image_type, n_ew=2, n_rr=3, phases=(3, 2) if along == "phase" else (2, 2))
    parts = nm.split(ds, along)
    assert len(parts) >= 2
    for p in parts:
        p2 = encode(p)
        assert check_nm_structure(p2) == []
        assert nm.volume(p2).array is not None if not nm.volume(p2).ragged else True
    assert len({p.SOPInstanceUID for p in parts}) == len(parts)
    back = nm.combine([encode(p) for p in parts], along=along)
    assert check_nm_structure(back) == []
    vol = nm.volume(back)
    if isinstance(expected, list):
        for a, b in zip(vol.phases, expected):
            np.testing.assert_array_equal(a.array, b)
    else:
        np.testing.assert_array_equal(vol.array, expected)


def test_combine_single_frame_instances_without_axis():
    ds, expected = make_nm("STATIC", n_ew=1, n_det=2)
    a, b = nm.split(ds, "detector")
    # Without `along`, vectors are concatenated as they are: both say detector 1 -> duplicate.
    with pytest.raises(ferrodicom.NmError, match="duplicated"):
        nm.combine([a, b])
    b2 = encode(b)
    b2.DetectorVector = [2]
    b2.NumberOfDetectors = 2
    with pytest.raises(ferrodicom.NmError):
        nm.combine([a, b2])  # b2 alone is incomplete (detector 1 missing)


def test_combine_rejects_mismatched_series():
    a, _ = make_nm("STATIC")
    b, _ = make_nm("STATIC")
    with pytest.raises(ferrodicom.NmError, match="SeriesInstanceUID"):
        nm.combine([a, b], along="detector")


# ---------------------------------------------------------------------------------------------
# Creation (DaTQUANT, seed 004)


def _dcmdump(tmp_path, ds, name):
    exe = shutil.which("dcmdump") or "/usr/bin/dcmdump"
    path = tmp_path / name
    path.write_bytes(to_bytes(ds))
    r = subprocess.run([exe, "-q", "+E", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "E:" not in r.stderr and "W:" not in r.stderr, r.stderr
    full = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return full.stdout


def test_recon_tomo_like_datquant(tmp_path):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 4000, (7, 16, 12), dtype=np.uint16)
    ds = nm.recon_tomo(
        data,
        pixel_spacing=(2.2, 2.2),
        spacing_between_slices=2.2,
        slice_thickness=2.2,
        image_position=(-10.0, -20.0, 30.0),
        energy_windows=[nm.EnergyWindow("I-123", ((143.0, 175.0),))],
    )
    back = encode(ds)
    assert check_nm_structure(back) == []
    assert list(back.ImageType) == ["DERIVED", "PRIMARY", "RECON TOMO", "EMISSION"]
    assert back.NumberOfSlices == 7 and list(back.SliceVector) == list(range(1, 8))
    assert back.FrameIncrementPointer == 0x00540080
    assert float(back.SpacingBetweenSlices) == 2.2 and float(back.SliceThickness) == 2.2
    det = back.DetectorInformationSequence[0]
    assert [float(x) for x in det.ImagePositionPatient] == [-10.0, -20.0, 30.0]
    blk = back.private_block(0x0009, "GEMS_GENIE_1")
    assert blk[0x01].value == "GEMS_GENIE"
    b11 = back.private_block(0x0011, "GEMS_GENIE_1")
    assert b11[0x0A].value == 15 and b11[0x13].value == 13 and b11[0x38].value == 76
    assert back.private_block(0x0013, "GEMS_GENIE_1")[0x11].value == 4
    vol = nm.volume(back)
    assert vol.is_view
    np.testing.assert_array_equal(vol.array, data)
    np.testing.assert_allclose(vol.coords["slice"][6], [-10, -20, 30 + 6 * 2.2])
    dump = _dcmdump(tmp_path, ds, "recon.dcm")
    assert "RECON TOMO" in dump and "(0054,0080)" in dump and "GEMS_GENIE" in dump
    # Big-endian copy of the same object decodes to the same volume.
    tpl = encode(ds)
    tpl.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    big = nm.to_dataset(vol, template=tpl)
    assert big.private_block(0x0011, "GEMS_GENIE_1")[0x38].value == 66
    np.testing.assert_array_equal(nm.volume(encode(big, ExplicitVRBigEndian)).array, data)


def test_secondary_capture_rgb(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (9, 11, 3), dtype=np.uint8)
    ds = encode(nm.secondary_capture(rgb))
    assert ds.SOPClassUID == nm.SC_IMAGE_STORAGE
    assert ds.PhotometricInterpretation == "RGB" and ds.PlanarConfiguration == 0
    assert ds.ConversionType == "WSD"
    np.testing.assert_array_equal(ds.pixel_array, rgb)
    assert "RGB" in _dcmdump(tmp_path, ds, "sc.dcm")


def test_multiframe_true_color_sc(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 255, (4, 6, 5, 3), dtype=np.uint8)
    ds = encode(nm.multiframe_true_color_sc(rgb, frame_time_ms=100.0))
    assert ds.SOPClassUID == nm.MF_TRUE_COLOR_SC_STORAGE
    assert ds.NumberOfFrames == 4 and ds.FrameIncrementPointer == 0x00181063
    assert float(ds.FrameTime) == 100.0 and ds.BurnedInAnnotation == "NO"
    np.testing.assert_array_equal(ds.pixel_array, rgb)
    _dcmdump(tmp_path, ds, "mfsc.dcm")
    with pytest.raises(ferrodicom.NmError):
        nm.multiframe_true_color_sc(rgb[..., :2], frame_time_ms=1.0)


@pytest.mark.parametrize("image_type", IMAGE_TYPES)
def test_factory_objects_pass_dcmdump(tmp_path, image_type):
    ds, _ = make_nm(image_type, ge_byte_order=76)
    out = _dcmdump(tmp_path, ds, "x.dcm")
    assert "FrameIncrementPointer" in out


def test_ge_scale_factor():
    ds, expected = make_nm("STATIC")
    ds = encode(ds)
    ds.private_block(0x0011, "GEMS_GENIE_1", create=True).add_new(0x3B, "FD", 2.0)
    ds.private_block(0x0013, "GEMS_GENIE_1", create=True).add_new(0x15, "FD", 0.5)
    vol = nm.volume(ds)
    assert vol.ge["pixel_scale"] == 2.0 and vol.ge["fscalar"] == 0.5
    np.testing.assert_allclose(vol.scaled(), expected.astype(float) * 2.0 * 0.5)
