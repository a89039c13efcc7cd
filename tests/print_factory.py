"""Images to print and what a printer should make of them, for the print tests and benchmark: CT-like
files with a known window, MONOCHROME1 and RGB images, an NM multi-frame; and the expected P-values computed
with pydicom's own Modality LUT and windowing (PS3.3 C.11), independently of ferrodicom's."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_windowing
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT = "1.2.840.10008.5.1.4.1.1.2"
NM = "1.2.840.10008.5.1.4.1.1.20"
SC = "1.2.840.10008.5.1.4.1.1.7"


def _base(sop_class: str, rows: int, cols: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = "PRINT1"
    ds.PatientName = "Print^Test"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows, ds.Columns = rows, cols
    return ds


def ct(
    path: Path,
    seed: int = 0,
    rows: int = 64,
    cols: int = 48,
    window: Optional[tuple[float, float]] = (40, 400),
    monochrome1: bool = False,
) -> Dataset:
    """A CT image (12 bits stored, rescale -1024) with a soft-tissue window, saved to ``path``."""
    ds = _base(CT, rows, cols)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.random.default_rng(seed).integers(700, 1400, (rows, cols)).astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def rgb(path: Path, seed: int = 0, rows: int = 40, cols: int = 50) -> Dataset:
    ds = _base(SC, rows, cols)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.random.default_rng(seed).integers(0, 256, (rows, cols, 3)).astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def nm(path: Path, frames: int = 20, rows: int = 32, cols: int = 32) -> Dataset:
    """An NM multi-frame without a window (printed with the range of all its frames)."""
    ds = _base(NM, rows, cols)
    ds.Modality = "NM"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00540080  # Slice Vector
    ds.SliceVector = list(range(1, frames + 1))
    ds.NumberOfSlices = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    arr = np.random.default_rng(7).integers(0, 300, (frames, rows, cols)).astype("<u2")
    arr[3] += 200  # one hot frame: the window is the file's, not each frame's
    ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def expected_gray(ds: Dataset, bits: int = 8, window: Optional[tuple[float, float]] = None) -> np.ndarray:
    """P-values a print SCU should send: pydicom's Modality LUT then windowing (the image's window, else the
    given one, else the full range of all frames) into 0..2**bits-1, rounded half up; MONOCHROME1 inverted.
    Shape (frames, rows, cols)."""
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames") or 1) == 1:
        arr = arr[None]
    values = apply_modality_lut(arr, ds).astype(np.float64)
    if window is None and "WindowCenter" in ds:
        window = (float(ds.WindowCenter), float(ds.WindowWidth))
    if window is None:
        lo, hi = values.min(), values.max()
        window = ((lo + hi) / 2, hi - lo + 1)
    voi = Dataset()
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.BitsStored, voi.PixelRepresentation = bits, 0
    voi.WindowCenter, voi.WindowWidth = window
    out = np.clip(np.floor(apply_windowing(values, voi) + 0.5), 0, (1 << bits) - 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = (1 << bits) - 1 - out
    return out.astype(np.uint8 if bits == 8 else np.uint16)


def shown(p_values: np.ndarray, bits: int = 8, reverse: bool = False) -> np.ndarray:
    """What the print server's PNG shows for P-values: 8 bits as they are, 12 bits scaled to 0..255."""
    g = p_values if bits == 8 else np.floor(p_values.astype(np.float64) * 255 / 4095 + 0.5)
    g = g.astype(np.uint8)
    return 255 - g if reverse else g
