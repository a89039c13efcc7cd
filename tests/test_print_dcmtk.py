"""Print SCU -> DCMTK's dcmprscp (a Basic Grayscale Print Management SCP with Presentation LUT support,
configured here with a printer entry): what dcmprscp stores for each job, one Stored Print object per film
and one Hardcopy Grayscale image per image box, is what was sent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from print_factory import ct, expected_gray

from conftest import dcmtk, dcmtk_env, ferrodicom_cli, free_port, wait_for_port
from ferrodicom.services.print import FilmBox, FilmSession, ImageBox, print_images

CONFIG = """\
[[GENERAL]]
[DATABASE]
Directory = {db}
[PRINT]
Directory = {spool}
DetailedLog = false
BinaryLog = false
[[COMMUNICATION]]
[PRINTER1]
Aetitle = DCMPRSCP
Description = test printer
Hostname = localhost
Port = {port}
Type = LOCALPRINTER
BorderDensity = 150\\20\\BLACK\\WHITE
DisableNewVRs = false
DisplayFormat = 1,1\\1,2\\2,2\\2,3\\3,3\\4,4
EmptyImageDensity = 20\\BLACK\\WHITE
FilmDestination = MAGAZINE\\PROCESSOR
FilmSizeID = 8INX10IN\\11INX14IN\\14INX17IN
ImplicitOnly = false
MagnificationType = REPLICATE\\BILINEAR\\CUBIC\\NONE
MaxDensity = 320
MediumType = PAPER\\CLEAR FILM\\BLUE FILM
MinDensity = 20
SmoothingType = NONE
Supports12Bit = true
SupportsDecimateCrop = true
SupportsImageSize = true
SupportsPresentationLUT = true
SupportsTrim = true
"""

SP = "1.2.840.10008.5.1.1.27"  # Stored Print Storage (retired)
HG = "1.2.840.10008.5.1.1.29"  # Hardcopy Grayscale Image Storage (retired)


@pytest.fixture
def dcmprscp(tmp_path):
    """dcmprscp on a free port with one printer, PRINTER1 (AE DCMPRSCP); yields (port, database folder)."""
    port = free_port()
    db = tmp_path / "db"
    db.mkdir()
    (tmp_path / "spool").mkdir()
    cfg = tmp_path / "dcmpstat.cfg"
    cfg.write_text(CONFIG.format(db=db, spool=tmp_path / "spool", port=port))
    proc = subprocess.Popen(
        [dcmtk("dcmprscp"), "-c", str(cfg), "-p", "PRINTER1"],
        env=dcmtk_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        yield port, db
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stored(db: Path) -> tuple[list[pydicom.Dataset], dict[str, pydicom.Dataset]]:
    """(Stored Print objects in creation order, Hardcopy Grayscale images by SOP Instance UID)."""
    files = [pydicom.dcmread(p) for p in sorted(db.glob("*.dcm"))]
    # DCMTK's UIDs end with the creation time and a counter: their components order the films
    prints = [f for f in files if f.SOPClassUID == SP]
    prints.sort(key=lambda f: [int(c) for c in f.SOPInstanceUID.split(".")])
    images = {str(f.SOPInstanceUID): f for f in files if f.SOPClassUID == HG}
    return prints, images


def test_grayscale_12_bit_job_with_a_presentation_lut_is_stored_as_sent(dcmprscp, tmp_path):
    """Five CT images in STANDARD\\2,2 on 8INX10IN: two films; every image box's Hardcopy Grayscale image holds
    the 12-bit P-values of the image's window, in its position; the Presentation LUT (LIN OD) and the film
    box attributes are in each Stored Print object. dcmprscp answers the Printer N-GET of five attributes
    with 0105 (it knows two): the SCU asks again for the status alone."""
    port, db = dcmprscp
    files = [tmp_path / f"ct{i}.dcm" for i in range(5)]
    sent = [ct(f, seed=i) for i, f in enumerate(files)]
    report = print_images(
        "127.0.0.1",
        port,
        files,
        called_ae="DCMPRSCP",
        bits=12,
        presentation_lut="LIN OD",
        session=FilmSession(copies=2, medium="PAPER", destination="MAGAZINE", label="ferrodicom"),
        film=FilmBox(
            "STANDARD\\2,2",
            orientation="PORTRAIT",
            film_size="8INX10IN",
            magnification="BILINEAR",
            border_density="WHITE",
            trim="YES",
        ),  # fmt: skip
        image=ImageBox(polarity="NORMAL"),
    )
    assert report.ok, report.failed
    assert report.responses == []
    assert report.printer is not None and report.printer.PrinterStatus == "NORMAL"
    assert [len(f.images) for f in report.printed_films] == [4, 1]
    prints, images = stored(db)
    assert len(prints) == 2 and len(images) == 5
    for film, sp in zip(report.printed_films, prints):
        box = sp.FilmBoxContentSequence[0]
        assert (box.ImageDisplayFormat, box.FilmSizeID, box.FilmOrientation) == (
            "STANDARD\\2,2",
            "8INX10IN",
            "PORTRAIT",
        )
        assert (box.MagnificationType, box.BorderDensity, box.Trim) == ("BILINEAR", "WHITE", "YES")
        assert sp.PresentationLUTContentSequence[0].PresentationLUTShape == "LIN OD"
        assert sp.PrinterCharacteristicsSequence[0].Originator == "FERRODICOM"
        boxes = sorted(sp.ImageBoxContentSequence, key=lambda b: int(b.ImageBoxPosition))
        assert [int(b.ImageBoxPosition) for b in boxes] == list(range(1, len(film.images) + 1))
        for b, source in zip(boxes, film.images):
            hg = images[str(b.ReferencedImageSequence[0].ReferencedSOPInstanceUID)]
            assert (hg.BitsAllocated, hg.BitsStored, hg.PhotometricInterpretation) == (16, 12, "MONOCHROME2")
            expected = expected_gray(sent[files.index(Path(source))], bits=12)[0]
            assert np.array_equal(hg.pixel_array, expected), source


def test_grayscale_job_from_the_command_line(dcmprscp, tmp_path):
    """``ferrodicom print`` with 8-bit images, LANDSCAPE and a window given: dcmprscp stores one film with
    the three images windowed as asked, REVERSE polarity recorded per image box."""
    port, db = dcmprscp
    files = [tmp_path / f"ct{i}.dcm" for i in range(3)]
    sent = [ct(f, seed=10 + i) for i, f in enumerate(files)]
    r = subprocess.run(
        [*ferrodicom_cli(), "print", "--aec", "DCMPRSCP", "--format", "STANDARD\\2,2", "--orientation",
         "LANDSCAPE", "--film-size", "14INX17IN", "--window", "100,300", "--polarity", "REVERSE",
         "127.0.0.1", str(port), *map(str, files)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["film 1: 3 image(s) printed", "1 film(s) printed (3 image(s)), 0 file(s) skipped"]
    prints, images = stored(db)
    assert len(prints) == 1 and len(images) == 3
    assert prints[0].FilmBoxContentSequence[0].FilmOrientation == "LANDSCAPE"
    boxes = sorted(prints[0].ImageBoxContentSequence, key=lambda b: int(b.ImageBoxPosition))
    for b, ds in zip(boxes, sent):
        assert b.Polarity == "REVERSE"
        hg = images[str(b.ReferencedImageSequence[0].ReferencedSOPInstanceUID)]
        assert hg.BitsStored == 8
        assert np.array_equal(hg.pixel_array, expected_gray(ds, 8, window=(100, 300))[0])


def test_a_color_job_to_the_grayscale_only_dcmprscp_says_so_and_stores_nothing(dcmprscp, tmp_path):
    """dcmprscp supports Basic Grayscale Print Management only: it rejects the Basic Color context, and the
    job fails before anything is created, naming what the printer accepted."""
    port, db = dcmprscp
    f = tmp_path / "ct.dcm"
    ct(f)
    report = print_images("127.0.0.1", port, [f], called_ae="DCMPRSCP", color=True)
    assert not report.ok
    assert report.failed.startswith(
        "the printer does not accept Basic Color Print Management (1.2.840.10008.5.1.1.18): it accepted"
    )
    assert report.films == [] and report.session_uid is None
    r = subprocess.run([*ferrodicom_cli(), "print", "--color", "--aec", "DCMPRSCP", "127.0.0.1", str(port), str(f)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1].startswith("Error: print job failed: the printer does not accept Basic Color")
    assert stored(db) == ([], {})
