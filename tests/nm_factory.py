"""Builds valid NM multi-frame objects (PS3.3 A.5, C.8.4.8-C.8.4.14) with shuffled frames for the
NM tests and benchmark, and checks their structure (a dciodvfy-like check, DCMTK has none)."""

from __future__ import annotations

import io
import math
from typing import Optional, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from ferrodicom.nm import _COUNT, _ITEMS, _TAG_OF, _VECTOR, FIP_BY_IMAGE_TYPE, GE_CREATOR, NM_IMAGE_STORAGE

IMAGE_TYPES = tuple(FIP_BY_IMAGE_TYPE)


def make_nm(
    image_type: str,
    *,
    n_ew: int = 1,
    n_det: int = 2,
    n_views: int = 6,
    n_rr: int = 2,
    n_ts: int = 3,
    n_slices: int = 5,
    phases: Sequence[int] = (3, 3),
    bits: int = 16,
    signed: bool = False,
    transfer_syntax: str = ExplicitVRLittleEndian,
    ge_byte_order: Optional[int] = None,
    rows: int = 4,
    cols: int = 3,
    seed: int = 0,
    shuffle: bool = True,
) -> tuple[Dataset, np.ndarray]:
    """Returns (data set read back from its encoded bytes, expected volume). Pixel bytes are big
    endian when the transfer syntax is EBE or ``ge_byte_order`` is 66 (GE (0011,xx38))."""
    rng = np.random.default_rng(seed)
    axes = FIP_BY_IMAGE_TYPE[image_type]
    ext = {
        "energy_window": n_ew,
        "detector": n_det,
        "rotation": 1,
        "angular_view": n_views,
        "rr_interval": n_rr,
        "time_slot": n_ts,
        "slice": n_slices,
        "phase": len(phases),
        "time_slice": max(phases),
    }
    dtype = np.dtype(("i" if signed else "u") + str(bits // 8))
    info = np.iinfo(dtype)
    ragged = "time_slice" in axes and len(set(phases)) > 1
    # Positions in C order (skipping time slices beyond a phase's length when ragged).
    grid = [tuple(int(x) for x in p) for p in np.ndindex(*[ext[a] for a in axes])]
    if "time_slice" in axes:
        ip, it = axes.index("phase"), axes.index("time_slice")
        grid = [p for p in grid if p[it] < phases[p[ip]]]
    n = len(grid)
    frames = rng.integers(info.min, info.max, (n, rows, cols), dtype=dtype, endpoint=True)
    if ragged:
        expected = [
            np.stack([frames[k] for k, p in enumerate(grid) if p[ip] == ph]).reshape(
                *[ext[a] for a in axes if a not in ("phase", "time_slice")], phases[ph], rows, cols
            )
            for ph in range(len(phases))
        ]
    else:
        expected = frames.reshape(*[ext[a] for a in axes], rows, cols)
    order = rng.permutation(n) if shuffle else np.arange(n)

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = NM_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^NM", "NM1", "", "O"
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = (
        "20240101",
        "120000",
        "",
        "1",
        "",
    )
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "NM", 1, 1
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.PatientOrientationCodeSequence = DicomSequence()
    ds.PatientGantryRelationshipCodeSequence = DicomSequence()
    ds.ImageType = ["ORIGINAL", "PRIMARY", image_type, "EMISSION"]
    if image_type.startswith("RECON"):
        ds.ImageType = ["DERIVED", "PRIMARY", image_type, "EMISSION"]
        ds.FrameOfReferenceUID = generate_uid()
        ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelSpacing = [3.3, 3.3]
    ds.CountsAccumulated = ""
    ds.NumberOfFrames = n
    ds.FrameIncrementPointer = [Tag(_TAG_OF[a]) for a in axes] if len(axes) > 1 else Tag(_TAG_OF[axes[0]])
    for k, a in enumerate(axes):
        vals = [grid[i][k] + 1 for i in order]
        ds[_VECTOR[a]] = pydicom.DataElement(_TAG_OF[a], "US", vals)
    # Number of X: Type 1 for energy windows and detectors, 1C for the rest (PS3.3 Table C.8-7).
    ds.NumberOfEnergyWindows = n_ew if "energy_window" in axes else 1
    ds.NumberOfDetectors = n_det if "detector" in axes else 1
    for a in ("phase", "rr_interval", "time_slot", "slice"):
        if a in axes:
            setattr(ds, _COUNT[a], ext[a])
    if image_type in ("TOMO", "GATED TOMO", "RECON TOMO", "RECON GATED TOMO"):
        ds.NumberOfRotations = 1
    # NM Isotope (C.8.4.10): one Energy Window Information item per window.
    ew = DicomSequence()
    for w in range(ds.NumberOfEnergyWindows):
        it = Dataset()
        it.EnergyWindowName = f"EM{w + 1}"
        r = Dataset()
        r.EnergyWindowLowerLimit, r.EnergyWindowUpperLimit = 126.0 + 20 * w, 154.0 + 20 * w
        it.EnergyWindowRangeSequence = DicomSequence([r])
        ew.append(it)
    ds.EnergyWindowInformationSequence = ew
    ds.RadiopharmaceuticalInformationSequence = DicomSequence()
    # NM Detector (C.8.4.11): one item per detector, each with its own start angle.
    dets = DicomSequence()
    for d in range(ds.NumberOfDetectors):
        it = Dataset()
        it.CollimatorType = "PARA"
        it.FocalDistance = ""
        it.ImagePositionPatient = [-100.0, -100.0, 50.0]
        it.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        if "angular_view" in axes:
            it.StartAngle = 180.0 * d
        dets.append(it)
    ds.DetectorInformationSequence = dets
    if "NumberOfRotations" in ds:
        rot = Dataset()
        rot.StartAngle, rot.AngularStep, rot.RotationDirection, rot.ScanArc = 0.0, 6.0, "CW", 180.0
        rot.ActualFrameDuration = 20000
        rot.NumberOfFramesInRotation = n_views
        ds.RotationInformationSequence = DicomSequence([rot])
        ds.TypeOfDetectorMotion = "STEP AND SHOOT"
    if "phase" in axes:
        ph = DicomSequence()
        for k, nf in enumerate(phases):
            it = Dataset()
            it.PhaseDelay, it.ActualFrameDuration, it.PauseBetweenFrames = 1000 * k, 5000 + 1000 * k, 0
            it.NumberOfFramesInPhase = nf
            ph.append(it)
        ds.PhaseInformationSequence = ph
    if "rr_interval" in axes:
        ds.BeatRejectionFlag = "N"
        gates = DicomSequence()
        for _ in range(n_rr):
            g = Dataset()
            g.TriggerTime, g.LowRRValue, g.HighRRValue, g.IntervalsAcquired, g.IntervalsRejected = (
                0,
                800,
                1200,
                100,
                2,
            )
            di = Dataset()
            di.FrameTime = 50.0
            di.NominalInterval = 1000
            slots = DicomSequence()
            for s in range(n_ts):
                t = Dataset()
                t.TimeSlotTime = 50.0 * s
                slots.append(t)
            di.TimeSlotInformationSequence = slots
            g.DataInformationSequence = DicomSequence([di])
            gates.append(g)
        ds.GatedInformationSequence = gates
    if "slice" in axes:
        ds.SpacingBetweenSlices, ds.SliceThickness = 4.4, 4.4
    if image_type in ("STATIC", "WHOLE BODY"):
        ds.ActualFrameDuration = 60000
    if image_type == "WHOLE BODY":
        ds.WholeBodyTechnique, ds.ScanVelocity, ds.ScanLength = "1PS", 10.0, 1800
    # Pixel bytes in frame order.
    big = transfer_syntax == ExplicitVRBigEndian if ge_byte_order is None else ge_byte_order == 66
    raw = frames[order]
    pixel = raw.astype(raw.dtype.newbyteorder(">" if big else "<")).tobytes()
    if len(pixel) % 2:
        pixel += b"\x00"
    ds.PixelData = pixel
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    if ge_byte_order is not None:
        blk = ds.private_block(0x0011, GE_CREATOR, create=True)
        blk.add_new(0x38, "SL", ge_byte_order)
        blk.add_new(0x3B, "FD", 1.0)
        blk.add_new(0x3C, "FD", 0.0)
    return encode(ds, transfer_syntax), expected


def encode(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> Dataset:
    """Writes ``ds`` as a Part 10 file in ``transfer_syntax`` and reads it back."""
    return pydicom.dcmread(io.BytesIO(to_bytes(ds, transfer_syntax)))


def to_bytes(ds: Dataset, transfer_syntax: Optional[str] = None) -> bytes:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ds.SOPClassUID
    fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ts = transfer_syntax or (ds.file_meta.TransferSyntaxUID if "file_meta" in ds.__dict__ else ExplicitVRLittleEndian)
    fm.TransferSyntaxUID = ts
    ds.file_meta = fm
    bio = io.BytesIO()
    # Pixel bytes are already in the target byte order: declare the encoding as the original
    # one so that pydicom writes it without refusing an endianness change.
    ds.set_original_encoding(ts == ImplicitVRLittleEndian, ts != ExplicitVRBigEndian, ds.original_character_set)
    pydicom.dcmwrite(
        bio,
        ds,
        implicit_vr=ts == ImplicitVRLittleEndian,
        little_endian=ts != ExplicitVRBigEndian,
        enforce_file_format=True,
    )
    return bio.getvalue()


def check_nm_structure(ds: Dataset) -> list[str]:
    """The NM IOD rules the tests rely on (PS3.3 A.5.4, C.8.4.7-C.8.4.14): returns problems."""
    p: list[str] = []
    if ds.get("SOPClassUID") != NM_IMAGE_STORAGE:
        p.append("SOP Class UID")
    it = list(ds.get("ImageType", []))
    if len(it) < 4 or it[2] not in FIP_BY_IMAGE_TYPE:
        p.append(f"Image Type {it}")
        return p
    axes = FIP_BY_IMAGE_TYPE[it[2]]
    fip = ds.FrameIncrementPointer
    fip = [int(t) for t in (fip if isinstance(fip, (list, pydicom.multival.MultiValue)) else [fip])]
    if fip != [_TAG_OF[a] for a in axes]:
        p.append(f"Frame Increment Pointer {fip}")
    n = int(ds.NumberOfFrames)
    for a in axes:
        v = ds.get(_VECTOR[a])
        v = [v] if isinstance(v, int) else list(v or [])
        if len(v) != n:
            p.append(f"{_VECTOR[a]} has {len(v)} values for {n} frames")
    for a in _VECTOR:
        if a not in axes and _VECTOR[a] in ds:
            p.append(f"{_VECTOR[a]} present but not in the FIP")
    for kw in ("NumberOfEnergyWindows", "NumberOfDetectors", "Rows", "Columns", "SamplesPerPixel"):
        if kw not in ds:
            p.append(f"{kw} missing")
    for a in ("phase", "rr_interval", "time_slot", "slice"):
        if a in axes and _COUNT[a] not in ds:
            p.append(f"{_COUNT[a]} missing")
    if it[2] in ("TOMO", "GATED TOMO", "RECON TOMO", "RECON GATED TOMO") and "NumberOfRotations" not in ds:
        p.append("NumberOfRotations missing")
    for a, kw in _ITEMS.items():
        count = {"energy_window": "NumberOfEnergyWindows", "detector": "NumberOfDetectors"}.get(a, _COUNT[a])
        if kw in ds and count in ds and a in axes and len(ds[kw].value) != int(ds[count].value):
            p.append(f"{kw} has {len(ds[kw].value)} items, {count} is {ds[count].value}")
    if "time_slice" in axes:
        per = [int(x.NumberOfFramesInPhase) for x in ds.PhaseInformationSequence]
        if sum(per) * ds.NumberOfEnergyWindows * ds.NumberOfDetectors != n:
            p.append("Number of Frames != NEW x ND x sum(Number of Frames in Phase)")
    else:
        counts = {
            "energy_window": ds.get("NumberOfEnergyWindows"),
            "detector": ds.get("NumberOfDetectors"),
            "rotation": ds.get("NumberOfRotations"),
            "rr_interval": ds.get("NumberOfRRIntervals"),
            "time_slot": ds.get("NumberOfTimeSlots"),
            "slice": ds.get("NumberOfSlices"),
            "angular_view": ds.RotationInformationSequence[0].NumberOfFramesInRotation
            if "angular_view" in axes
            else None,
        }
        if math.prod(int(counts[a]) for a in axes) != n:
            p.append("Number of Frames != product of the Number of X")
    if ds.get("PhotometricInterpretation") != "MONOCHROME2" or ds.get("SamplesPerPixel") != 1:
        p.append("NM Image Pixel: MONOCHROME2, one sample")
    if ds.get("BitsAllocated") not in (8, 16) or ds.get("BitsStored") != ds.get("BitsAllocated"):
        p.append("Bits Allocated 8/16 with Bits Stored equal")
    if ds.get("HighBit") != ds.get("BitsAllocated", 0) - 1:
        p.append("High Bit")
    need = n * ds.Rows * ds.Columns * ds.BitsAllocated // 8
    if len(ds.PixelData) not in (need, need + 1):
        p.append(f"Pixel Data {len(ds.PixelData)} bytes, {need} expected")
    for kw in (
        "PatientName",
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "Modality",
    ):
        if kw not in ds:
            p.append(f"{kw} missing")
    return p
