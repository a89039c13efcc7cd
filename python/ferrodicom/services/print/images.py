"""Images made ready for a printer (PS3.4 H.4.3): the P-values of a Basic Grayscale Image Sequence, 8 or 12
bits, or the 8-bit RGB of a Basic Color Image Sequence, from any DICOM image, one per frame.

Grayscale, in the order of PS3.3 C.11 (the grayscale pipeline before the Presentation LUT):

1. Modality LUT: Rescale Slope/Intercept or the Modality LUT Sequence (pydicom's ``apply_modality_lut``).
2. VOI: the window given to the job, else the image's first Window Center/Width (with its VOI LUT Function:
   LINEAR, LINEAR_EXACT, SIGMOID), else its VOI LUT Sequence, else the range of the modality values of the
   whole file (all frames, so an NM multi-frame prints every frame with the same window). The window maps
   to the full output range, 0..255 or 0..4095 (:func:`window`), rounded to the nearest integer.
3. MONOCHROME1 images are inverted, so every image goes out MONOCHROME2 (0 black).

The Presentation LUT (IDENTITY or LIN OD) is the printer's, sent as a Presentation LUT SOP instance
(:mod:`.scu`); Polarity (NORMAL/REVERSE) is sent with each image box.

Colour: RGB images as they are (more than 8 bits stored: the top 8), YBR images converted to RGB by
pydicom, PALETTE COLOR through its palette; a grayscale image in a colour job goes through the grayscale
pipeline (8 bits) into three equal channels; a colour image in a grayscale job becomes its luminance
(ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

#: (center, width) of a VOI window.
Window = tuple[float, float]

#: Bits per P-value the grayscale image sequence may carry (PS3.4 H.4.3.1.2.1.1; seed 000 L7833-7839: 8
#: only; seed 001 L1283: 8 or 16 allocated).
GRAY_BITS = (8, 12)


class ImageError(ValueError):
    """An image that cannot be printed (no pixel data, a photometric interpretation or encoding that cannot
    be read): ``source`` names it, ``reason`` says why."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass
class PrintImage:
    """One preformatted image: ``pixels`` are P-values (rows, columns) in uint8 (8 bits) or uint16 (12
    bits), MONOCHROME2, or RGB (rows, columns, 3) uint8; ``source`` names where it came from."""

    pixels: np.ndarray
    source: str = ""
    #: (vertical, horizontal) when the pixels are not square (PS3.3 C.7.6.3.1.7), else None.
    aspect_ratio: Optional[tuple[int, int]] = None

    def __post_init__(self) -> None:
        a = self.pixels
        if a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8:
            return
        if a.ndim == 2 and a.dtype in (np.uint8, np.uint16):
            if a.dtype == np.uint16 and int(a.max(initial=0)) > 4095:
                raise ImageError(self.source or "image", "12-bit P-values above 4095")
            return
        raise ImageError(self.source or "image", "pixels must be uint8/uint16 (rows, cols) or uint8 RGB")

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 3

    @property
    def bits(self) -> int:
        return 12 if self.pixels.dtype == np.uint16 else 8

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def columns(self) -> int:
        return int(self.pixels.shape[1])

    def item(self) -> Dataset:
        """The item of the Basic Grayscale Image Sequence (2020,0110) or Basic Color Image Sequence (2020,0111)."""
        ds = Dataset()
        ds.SamplesPerPixel = 3 if self.is_color else 1
        ds.PhotometricInterpretation = "RGB" if self.is_color else "MONOCHROME2"
        if self.is_color:
            ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = self.rows, self.columns
        ds.PixelAspectRatio = list(self.aspect_ratio or (1, 1))
        bits = self.bits
        ds.BitsAllocated = 8 if bits == 8 else 16
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 0
        data = np.ascontiguousarray(self.pixels, dtype="<u2" if bits == 12 else np.uint8).tobytes()
        if len(data) % 2:
            data += b"\0"
        ds.add(DataElement(0x7FE00010, "OB" if bits == 8 else "OW", data))
        return ds


def to_gray(img: PrintImage, bits: int = 8) -> PrintImage:
    """A grayscale version (luminance of a colour image; 8 <-> 12 bits rescaled, rounded)."""
    a = img.pixels
    if img.is_color:
        y = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
        a = _round(y, 255)
        src_bits = 8
    else:
        src_bits = img.bits
    if src_bits != bits:
        a = _round(a.astype(np.float64) * ((1 << bits) - 1) / ((1 << src_bits) - 1), (1 << bits) - 1)
    dtype = np.uint8 if bits == 8 else np.uint16
    return PrintImage(a.astype(dtype), img.source, img.aspect_ratio)


def to_color(img: PrintImage) -> PrintImage:
    """An RGB version (a grayscale image in three equal channels, 12 bits reduced to 8)."""
    if img.is_color:
        return img
    g = to_gray(img, 8).pixels
    return PrintImage(np.repeat(g[..., None], 3, axis=2), img.source, img.aspect_ratio)


# --- VOI -------------------------------------------------------------------------------------------------


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR", bits: int = 8) -> np.ndarray:
    """The VOI window of PS3.3 C.11.2.1.2 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT) or C.11.2.1.3.1 (SIGMOID),
    mapped to 0..2**bits-1 and rounded to the nearest integer (half up)."""
    y_max = (1 << bits) - 1
    x = np.asarray(values, dtype=np.float64)
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        if width <= 0:
            raise ImageError("window", "SIGMOID needs a Window Width above 0")
        with np.errstate(over="ignore"):  # exp overflows to inf far below the window: y is then 0
            y = y_max / (1 + np.exp(-4 * (x - center) / width))
    elif function in ("LINEAR", "LINEAR_EXACT"):
        c, w = (center - 0.5, width - 1) if function == "LINEAR" else (center, width)
        if (function == "LINEAR" and width < 1) or (function == "LINEAR_EXACT" and width <= 0):
            raise ImageError("window", f"Window Width {width} is too small for {function}")
        if w <= 0:  # LINEAR with width 1: a threshold at c
            y = np.where(x <= c, 0.0, float(y_max))
        else:  # 0 at and below c - w/2, the maximum above c + w/2: the clip does both ends
            y = np.clip(((x - c) / w + 0.5) * y_max, 0, y_max)
    else:
        raise ImageError("window", f"VOI LUT Function {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID")
    return _round(y, y_max).astype(np.uint8 if bits == 8 else np.uint16)


def _round(y: np.ndarray, y_max: int) -> np.ndarray:
    return np.clip(np.floor(np.asarray(y, dtype=np.float64) + 0.5), 0, y_max)


def full_range_window(values: np.ndarray) -> Window:
    """The LINEAR window spanning the values' range (lowest -> 0, highest -> maximum)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    return (lo + hi) / 2, hi - lo + 1


# --- from DICOM images --------------------------------------------------------------------------------------

Source = Union[str, os.PathLike, Dataset]


def _pixels(ds: Dataset, source: str) -> np.ndarray:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageError(source, "no pixel data")
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        # a data set built in memory: its Pixel Data is native (little endian, uncompressed)
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian

        ds = Dataset(ds)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises many types for encodings it cannot decode
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(ts, "name", ts) or "unknown transfer syntax"
        raise ImageError(source, f"cannot decode the pixel data ({name}): {exc}") from exc


def _aspect(ds: Dataset) -> Optional[tuple[int, int]]:
    """(vertical, horizontal) from Pixel Aspect Ratio or unequal Pixel Spacing, when not 1:1."""
    par = ds.get("PixelAspectRatio")
    if par is not None and len(par) == 2 and int(par[0]) > 0 and int(par[1]) > 0 and int(par[0]) != int(par[1]):
        return int(par[0]), int(par[1])
    spacing = ds.get("PixelSpacing")
    if spacing is not None and len(spacing) == 2 and float(spacing[0]) > 0 and float(spacing[1]) > 0:
        v, h = round(float(spacing[0]) * 1000), round(float(spacing[1]) * 1000)
        if v != h:
            g = int(np.gcd(v, h))
            return v // g, h // g
    return None


def frames(
    src: Source,
    *,
    color: bool = False,
    bits: int = 8,
    voi: Optional[Window] = None,
    name: Optional[str] = None,
) -> Iterator[PrintImage]:
    """The images of one DICOM file or data set ready to print, one per frame (see the module documentation);
    ``voi`` (center, width) overrides the image's window. Raises :class:`ImageError` when nothing can be
    printed from it."""
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    if bits not in GRAY_BITS:
        raise ValueError(f"bits must be 8 or 12, not {bits}")
    if isinstance(src, Dataset):
        ds, source = src, name or str(getattr(src, "SOPInstanceUID", "data set"))
    else:
        source = name or str(src)
        try:
            ds = pydicom.dcmread(Path(src))
        except Exception as exc:
            raise ImageError(source, f"not a DICOM file ({exc})") from exc
    arr = _pixels(ds, source)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    n = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    if n == 1:
        arr = arr[None, ...]
    aspect = _aspect(ds)

    def label(i: int) -> str:
        return source if n == 1 else f"{source} frame {i + 1}/{n}"

    if samples == 3 or photometric == "PALETTE COLOR":
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(arr, ds)
            descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
            lut_bits = int(descriptor[2]) if descriptor else 8 * rgb.dtype.itemsize
        else:
            rgb, lut_bits = arr, int(ds.get("BitsStored", 8))
        if lut_bits > 8:
            rgb = np.right_shift(rgb, lut_bits - 8)
        rgb = rgb.astype(np.uint8)
        for i in range(n):
            img = PrintImage(np.ascontiguousarray(rgb[i]), label(i), aspect)
            yield img if color else to_gray(img, bits)
        return
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageError(source, f"cannot print Photometric Interpretation {photometric!r}")
    out_bits = 8 if color else bits
    try:
        out = _voi(ds, apply_modality_lut(arr, ds), out_bits, voi)
    except ImageError as exc:
        raise ImageError(source, exc.reason) from None
    if photometric == "MONOCHROME1":
        out = ((1 << out_bits) - 1 - out.astype(np.int32)).astype(out.dtype)
    for i in range(n):
        img = PrintImage(np.ascontiguousarray(out[i]), label(i), aspect)
        yield to_color(img) if color else img


def _voi(ds: Dataset, values: np.ndarray, out_bits: int, voi: Optional[Window]) -> np.ndarray:
    """The VOI step (see the module documentation): P-values of ``out_bits`` from modality values."""
    from pydicom.pixels import apply_voi

    if voi is not None:
        return window(values, voi[0], voi[1], "LINEAR", out_bits)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = ds["WindowCenter"].value, ds["WindowWidth"].value
        center = float(center[0] if ds["WindowCenter"].VM > 1 else center)
        width = float(width[0] if ds["WindowWidth"].VM > 1 else width)
        return window(values, center, width, str(ds.get("VOILUTFunction", "LINEAR")), out_bits)
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        lut_out = apply_voi(values, ds)
        lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = _round(lut_out * ((1 << out_bits) - 1) / ((1 << lut_bits) - 1), (1 << out_bits) - 1)
        return out.astype(np.uint8 if out_bits == 8 else np.uint16)
    c, w = full_range_window(values)
    return window(values, c, w, "LINEAR", out_bits)
