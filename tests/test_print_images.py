"""Preformatting for print (PS3.3 C.11 before the Presentation LUT): the VOI functions agree with pydicom's
``apply_windowing``; colour images in a grayscale job become their luminance, grayscale images in a colour
job three equal channels; palette colour goes through its palette; what cannot be printed says why."""

from __future__ import annotations

import numpy as np
import pytest
from print_factory import ct, expected_gray, rgb
from pydicom.dataset import Dataset
from pydicom.pixels import apply_windowing

from ferrodicom.services.print import ImageError, PrintImage, frames, window


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(("center", "width"), [(40, 400), (100.5, 1), (0, 2), (1000, 3001), (-600.25, 1500.5)])
@pytest.mark.parametrize("bits", [8, 12])
def test_window_agrees_with_pydicom(function, center, width, bits):
    x = np.arange(-1200, 3200, 0.37)
    voi = Dataset()
    voi.PhotometricInterpretation, voi.BitsStored, voi.PixelRepresentation = "MONOCHROME2", bits, 0
    voi.WindowCenter, voi.WindowWidth, voi.VOILUTFunction = center, width, function
    with np.errstate(over="ignore"):
        expected = np.floor(apply_windowing(x.copy(), voi) + 0.5)
    assert np.array_equal(window(x, center, width, function, bits), expected)


def test_frames_of_each_kind(tmp_path):
    a, b = tmp_path / "ct.dcm", tmp_path / "rgb.dcm"
    gray, colour = ct(a, monochrome1=True), rgb(b)
    (g,) = frames(a)
    assert g.pixels.dtype == np.uint8 and np.array_equal(g.pixels, expected_gray(gray)[0])
    (g12,) = frames(a, bits=12)
    assert g12.bits == 12 and np.array_equal(g12.pixels, expected_gray(gray, 12)[0])
    item = g12.item()
    assert (item.BitsAllocated, item.BitsStored, item.HighBit, item["PixelData"].VR) == (16, 12, 11, "OW")
    (c,) = frames(a, color=True)
    assert c.is_color and np.array_equal(c.pixels[..., 1], expected_gray(gray)[0])
    (y,) = frames(b)
    r, gg, bb = (colour.pixel_array[..., i].astype(float) for i in range(3))
    assert np.array_equal(y.pixels, np.floor(0.299 * r + 0.587 * gg + 0.114 * bb + 0.5).astype(np.uint8))
    (rgb_out,) = frames(b, color=True)
    assert np.array_equal(rgb_out.pixels, colour.pixel_array)
    assert rgb_out.item().PhotometricInterpretation == "RGB" and rgb_out.item().PlanarConfiguration == 0


def test_palette_colour_and_images_that_cannot_be_printed(tmp_path):
    ds = Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 2, 3, 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    for colour, lut in (("Red", [0, 255, 10]), ("Green", [0, 0, 20]), ("Blue", [255, 0, 30])):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [3, 0, 8])
        setattr(ds, f"{colour}PaletteColorLookupTableData", bytes(lut))
    ds.PixelData = bytes([0, 1, 2, 2, 1, 0])
    (img,) = frames(ds, color=True, name="palette")
    assert img.pixels[0].tolist() == [[0, 0, 255], [255, 0, 0], [10, 20, 30]]
    no_pixels = Dataset()
    no_pixels.SOPInstanceUID = "1.2.3"
    with pytest.raises(ImageError, match="1.2.3: no pixel data"):
        list(frames(no_pixels))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ImageError) as raised:
        list(frames(tmp_path / "x.txt"))
    assert raised.value.source == str(tmp_path / "x.txt") and raised.value.reason.startswith("not a DICOM file")
    with pytest.raises(ImageError, match="12-bit P-values above 4095"):
        PrintImage(np.full((2, 2), 5000, np.uint16))
