"""Print Management (PS3.4 Annex H) between ferrodicom's print SCU and its print server, and from pynetdicom's
documented print SCU: what lands on each film (the PNG's pixels, compared with the input after the same VOI
windowing computed by pydicom), the statuses for requests out of order or malformed, the seeds' status
behaviour, the printer's N-EVENT-REPORTs, and associations that end in the middle of a job."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from print_factory import ct, expected_gray, nm, rgb, shown
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

import ferrodicom
from conftest import ferrodicom_cli, free_port, wait_for_port
from ferrodicom import AE, evt
from ferrodicom.services.print import (
    PRINT_STATUSES,
    Behaviour,
    FilmBox,
    FilmSession,
    ImageBox,
    PrintImage,
    PrintSCP,
    meaning,
    print_images,
    rule,
)
from ferrodicom.services.print import classes as pc
from ferrodicom.services.print.render import density_gray

META = pc.GRAYSCALE_META


@pytest.fixture
def printer(tmp_path):
    """start(**PrintSCP options) -> (port, scp, output folder): ferrodicom's print server in-process."""
    servers = []

    def start(**options):
        out = tmp_path / f"films{len(servers)}"
        scp = PrintSCP(out, **options)
        ae = AE("PRINTSCP")
        ae.add_service(scp)
        server = ae.start_server(("127.0.0.1", 0), block=False)
        servers.append(server)
        return server.port, scp, out

    yield start
    for s in servers:
        s.shutdown()


def film(out: Path, session_uid: str, number: int) -> tuple[np.ndarray, dict]:
    """The PNG's pixels and the JSON sidecar of one film."""
    stem = out / f"{session_uid}-{number}"
    return np.asarray(Image.open(f"{stem}.png")), json.loads(Path(f"{stem}.json").read_text())


def placed(png: np.ndarray, box: dict) -> np.ndarray:
    x0, y0, x1, y1 = box["placed"]
    return png[y0:y1, x0:x1]


def replicated(values: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(values, factor, axis=0), factor, axis=1)


# --- what lands on the film ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 12])
def test_each_image_on_the_film_is_the_input_after_its_voi_window(printer, tmp_path, bits):
    """Six CT images (a soft-tissue window, MONOCHROME1 with a window, one without any: its full range) in
    STANDARD\\3,2 on a landscape 8INX10IN film: each image box's pixels in the PNG are the image's Modality LUT
    and window (pydicom's), replicated by the whole factor that fits the box, in position order."""
    port, _scp, out = printer()
    files = [tmp_path / f"ct{i}.dcm" for i in range(6)]
    sent = [ct(f, seed=i, window=None if i == 2 else (40 + i, 400), monochrome1=i == 4) for i, f in enumerate(files)]
    report = print_images("127.0.0.1", port, files, called_ae="PRINTSCP", bits=bits,
                          film=FilmBox("STANDARD\\3,2", orientation="LANDSCAPE", film_size="8INX10IN"))  # fmt: skip
    assert report.ok, report.failed
    assert report.responses == [] and len(report.printed_films) == 1
    png, sidecar = film(out, report.session_uid, 1)
    assert png.shape == (1200, 1500)  # 10 x 8 inches at 150 dpi, landscape
    assert sidecar["film_box"]["ImageDisplayFormat"] == "STANDARD\\3,2"
    boxes = sidecar["image_boxes"]
    assert [b["position"] for b in boxes] == [1, 2, 3, 4, 5, 6]
    assert [b["box"][0] < boxes[i + 1]["box"][0] for i, b in enumerate(boxes[:2])] == [True, True]  # row by row
    assert boxes[3]["box"][1] > boxes[0]["box"][3]
    for ds, box in zip(sent, boxes):
        assert (box["BitsStored"], box["PhotometricInterpretation"]) == (bits, "MONOCHROME2")
        x0, y0, x1, y1 = box["placed"]
        factor = (x1 - x0) // ds.Columns
        assert factor == 9 and y1 - y0 == factor * ds.Rows
        assert np.array_equal(placed(png, box), replicated(shown(expected_gray(ds, bits)[0], bits), factor))


def test_a_colour_job_prints_rgb_as_sent_and_grayscale_images_windowed(printer, tmp_path):
    port, _scp, out = printer()
    a, b = tmp_path / "rgb.dcm", tmp_path / "ct.dcm"
    colour, gray = rgb(a), ct(b)
    report = print_images("127.0.0.1", port, [a, b], called_ae="PRINTSCP", color=True,
                          film=FilmBox("STANDARD\\2,1", film_size="8INX10IN", magnification="NONE"))  # fmt: skip
    assert report.ok, report.failed
    png, sidecar = film(out, report.session_uid, 1)
    assert png.shape == (1500, 1200, 3) and sidecar["meta_sop_class"] == "color"
    first, second = sidecar["image_boxes"]
    assert np.array_equal(placed(png, first), colour.pixel_array)  # NONE: not magnified
    windowed = expected_gray(gray, 8)[0]
    assert np.array_equal(placed(png, second), np.repeat(windowed[..., None], 3, axis=2))


def test_layout_border_and_empty_densities_polarity_and_trim(printer):
    """ROW\\1,2 and COL\\2,1 place positions row by row and column by column; the border has its density (150
    hundredths of OD between Min 20 and Max 320), empty boxes theirs (BLACK), REVERSE inverts, TRIM draws."""
    port, _scp, out = printer()
    images = [PrintImage(np.full((10, 10), v, np.uint8), f"v{v}") for v in (10, 20, 30)]
    for fmt, order in (("ROW\\1,2", "row"), ("COL\\2,1", "col")):
        report = print_images("127.0.0.1", port, images, called_ae="PRINTSCP", image=ImageBox(polarity="REVERSE"),
                              film=FilmBox(fmt, film_size="8INX10IN", border_density="150",
                                           empty_image_density="BLACK", trim="YES"))  # fmt: skip
        assert report.ok, report.failed
        png, sidecar = film(out, report.session_uid, 1)
        b1, b2, b3 = (b["box"] for b in sidecar["image_boxes"])
        if order == "row":  # position 1 is the whole top row
            assert b1[2] - b1[0] > 2 * (b2[2] - b2[0]) - 10 and b2[1] == b3[1] > b1[3]
        else:  # positions 1 and 2 are the left column, top then bottom
            assert b1[0] == b2[0] and b2[1] > b1[3] and b3[0] > b1[2] and b3[3] - b3[1] > 2 * (b1[3] - b1[1]) - 10
        for box, v in zip(sidecar["image_boxes"], (10, 20, 30)):
            assert set(np.unique(placed(png, box))) == {255 - v}
            x0, y0, x1, y1 = box["box"]
            assert png[y0 - 1, x0 + 5] == 0  # the trim line just outside the box
            assert png[y0 + 1, x0 + 1] == 0  # EmptyImageDensity BLACK around the image
        assert png[1, 1] == density_gray("150", 20, 320, "BLACK") == 144  # 255 x 170/300, rounded half to even
    empty = print_images("127.0.0.1", port, images[:1], called_ae="PRINTSCP",
                         film=FilmBox("STANDARD\\2,1", film_size="8INX10IN", empty_image_density="WHITE"))  # fmt: skip
    png, sidecar = film(out, empty.session_uid, 1)
    x0, y0, x1, y1 = sidecar["image_boxes"][1]["box"]
    assert sidecar["image_boxes"][1]["empty"] and set(np.unique(png[y0:y1, x0:x1])) == {255}


def test_an_nm_multi_frame_prints_frame_by_frame_with_one_window(printer, tmp_path):
    """20 frames in STANDARD\\4,4: two films (16 + 4), each frame in its box, all with the window of the whole
    file (a hot frame does not change the others)."""
    port, _scp, out = printer()
    f = tmp_path / "nm.dcm"
    ds = nm(f)
    report = print_images(
        "127.0.0.1", port, [f], called_ae="PRINTSCP", film=FilmBox("STANDARD\\4,4", film_size="8INX10IN")
    )
    assert report.ok, report.failed
    assert [len(x.images) for x in report.printed_films] == [16, 4]
    assert report.printed_films[1].images[0] == f"{f} frame 17/20"
    expected = expected_gray(ds, 8)
    for n, first in ((1, 0), (2, 16)):
        png, sidecar = film(out, report.session_uid, n)
        for box in sidecar["image_boxes"]:
            if box["empty"]:
                continue
            frame = expected[first + box["position"] - 1]
            factor = (box["placed"][2] - box["placed"][0]) // 32
            assert np.array_equal(placed(png, box), replicated(frame, factor))


def test_print_and_print_server_commands(tmp_path):
    """``ferrodicom print-server`` in its own process, ``ferrodicom print`` with session and film options:
    one line per film on each side; the sidecar holds what was asked for. ``--dry-run`` lays out only."""
    files = [tmp_path / f"ct{i}.dcm" for i in range(5)]
    for i, f in enumerate(files):
        ct(f, seed=i)
    (tmp_path / "notes.txt").write_text("not DICOM")
    dry = subprocess.run([*ferrodicom_cli(), "print", "--dry-run", "--format", "STANDARD\\2,2", "127.0.0.1", "104",
                          str(tmp_path)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert (
        lines[0] == f"film 1 box 1: {files[0]} (48x64 8-bit)" and lines[4] == f"film 2 box 1: {files[4]} (48x64 8-bit)"
    )
    assert lines[-2].startswith(f"skip {tmp_path / 'notes.txt'}: not a DICOM file")
    assert lines[-1] == "5 image(s) on 2 film(s) of 4 (STANDARD\\2,2)"
    port = free_port()
    out = tmp_path / "films"
    server = subprocess.Popen([*ferrodicom_cli(), "print-server", "--aet", "PRINTER", "--port", str(port), "--bind",
                               "127.0.0.1", "--dpi", "100", str(out)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for_port(port, server)
        r = subprocess.run(
            [*ferrodicom_cli(), "print", "--aec", "PRINTER", "--format", "STANDARD\\2,2", "--copies", "2",
             "--medium", "PAPER", "--film-size", "11INX14IN", "--label", "issue 23", "--border-density", "WHITE",
             "--priority", "HIGH", "--magnification", "CUBIC", "127.0.0.1", str(port), *map(str, files)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["film 1: 4 image(s) printed", "film 2: 1 image(s) printed",
                                         "2 film(s) printed (5 image(s)), 0 file(s) skipped"]  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
    printed = server.stdout.read().splitlines()
    assert len(printed) == 2 and printed[0].startswith("film 1 of session ") and " from FERRODICOM: " in printed[0]
    sidecar = json.loads(next(out.glob("*-1.json")).read_text())
    assert sidecar["film_session"]["NumberOfCopies"] == 2 and sidecar["film_session"]["MediumType"] == "PAPER"
    assert (
        sidecar["film_session"]["FilmSessionLabel"] == "issue 23" and sidecar["film_session"]["PrintPriority"] == "HIGH"
    )
    assert sidecar["film_box"]["FilmSizeID"] == "11INX14IN" and sidecar["film_box"]["BorderDensity"] == "WHITE"
    assert sidecar["size_px"] == [1100, 1400] and sidecar["calling_ae"] == "FERRODICOM"
    assert Image.open(next(out.glob("*-1.png"))).getpixel((0, 0)) == 255


# --- pynetdicom's documented print SCU -> our print server ------------------------------------------------------


def pynetdicom_print(port: int, image: Dataset, display_format: str = r"STANDARD\1,1", documented: bool = False):
    """pynetdicom's Grayscale Print SCU example (docs/examples/print.rst), step by step. Unless ``documented``,
    with the example's bugs fixed: a NORMAL printer no longer ends the job, the Film Session and Film Box
    UIDs come from the requests (not the attribute lists, where no printer puts them: pynetdicom #777),
    the pixels go in Basic Grayscale Image Sequence (not Referenced Image Box Sequence), the display format
    is a raw string (``'STANDARD\\1,1'`` holds chr(1)) and the N-DELETE names the meta SOP class.
    Returns the statuses of each step."""
    from pynetdicom import AE as PynAE
    from pynetdicom.sop_class import (
        BasicFilmBox,
        BasicFilmSession,
        BasicGrayscalePrintManagementMeta,
        Printer,
        PrinterInstance,
    )

    meta = BasicGrayscalePrintManagementMeta
    ae = PynAE()
    ae.add_requested_context(meta)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="PRINTSCP", evt_handlers=[(evt_pyn().EVT_N_EVENT_REPORT, lambda e: 0)]
    )
    assert assoc.is_established
    seen: dict[str, object] = {}
    try:
        status, attrs = assoc.send_n_get([0x21100010, 0x21100020], Printer, PrinterInstance, meta_uid=meta)
        seen["n_get"] = (status.Status, attrs.PrinterStatus)
        session = Dataset()
        session.NumberOfCopies, session.PrintPriority, session.MediumType = "1", "LOW", "PAPER"
        session.FilmDestination, session.FilmSessionLabel, session.OwnerID = "MAGAZINE", "TEST JOB", "PYNETDICOM"
        session_uid = generate_uid()
        status, film_session = assoc.send_n_create(session, BasicFilmSession, session_uid, meta_uid=meta)
        seen["session"] = status.Status
        seen["session_attrs_have_uid"] = "SOPInstanceUID" in film_session
        box = Dataset()
        box.ImageDisplayFormat = "STANDARD\1,1" if documented else display_format
        box.FilmOrientation, box.FilmSizeID = "PORTRAIT", "A4"
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = BasicFilmSession, session_uid
        box.ReferencedFilmSessionSequence = [ref]
        film_box_uid = generate_uid()
        status, film_box = assoc.send_n_create(box, BasicFilmBox, film_box_uid, meta_uid=meta)
        seen["film_box"] = (status.Status, status.get("ErrorComment"))
        if status.Status != 0:
            return seen
        item = film_box.ReferencedImageBoxSequence[0]
        attrs = Dataset()
        attrs.ImageBoxPosition = 1
        pixels = Dataset()
        for keyword in ("SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
                        "BitsStored", "HighBit", "PixelRepresentation", "PixelData"):  # fmt: skip
            setattr(pixels, keyword, getattr(image, keyword))
        setattr(attrs, "ReferencedImageBoxSequence" if documented else "BasicGrayscaleImageSequence", [pixels])
        status, _ = assoc.send_n_set(attrs, item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID, meta_uid=meta)
        seen["image_box"] = (status.Status, status.get("ErrorComment"))
        status, _ = assoc.send_n_action(None, 1, BasicFilmBox, film_box_uid, meta_uid=meta)
        seen["print"] = status.Status
        seen["delete"] = assoc.send_n_delete(BasicFilmBox, film_box_uid, meta_uid=meta).Status
        seen["session_uid"] = session_uid
    finally:
        assoc.release()
    return seen


def evt_pyn():
    from pynetdicom import evt as pyn_evt

    return pyn_evt


def eight_bit(rows: int = 30, cols: int = 40) -> Dataset:
    ds = Dataset()
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = 1, "MONOCHROME2", rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = (np.arange(rows * cols) % 251).astype(np.uint8).tobytes()
    return ds


def test_pynetdicoms_documented_print_sequence_prints_on_our_server(printer):
    port, scp, out = printer()
    image = eight_bit()
    seen = pynetdicom_print(port, image)
    assert seen["n_get"] == (0, "NORMAL")
    assert (seen["session"], seen["film_box"], seen["image_box"], seen["print"], seen["delete"]) == (
        0, (0, None), (0, None), 0, 0,
    )  # fmt: skip
    assert seen["session_attrs_have_uid"] is False  # what the example builds its Film Box from (#777)
    png, sidecar = film(out, seen["session_uid"], 1)
    assert sidecar["calling_ae"] == "PYNETDICOM" and sidecar["film_box"]["FilmSizeID"] == "A4"
    box = sidecar["image_boxes"][0]
    factor = (box["placed"][2] - box["placed"][0]) // 40
    pixels = np.frombuffer(image.PixelData, np.uint8).reshape(30, 40)
    assert np.array_equal(placed(png, box), replicated(pixels, factor))
    deadline = time.monotonic() + 5
    while scp.associations and time.monotonic() < deadline:
        time.sleep(0.02)
    assert scp.associations == 0


def test_the_example_as_written_gets_statuses_that_say_what_is_wrong(printer):
    """As documented, 'STANDARD\\1,1' is 'STANDARD' + chr(1) + ',1': 0106 naming (2010,0010); and pixels
    put in Referenced Image Box Sequence leave the Basic Grayscale Image Sequence missing: 0120."""
    port, _scp, out = printer()
    seen = pynetdicom_print(port, eight_bit(), documented=True)
    assert seen["film_box"] == (0x0106, "'STANDARD\x01,1': not STANDARD, ROW, COL, SLIDE or SUPERSLIDE")
    assoc, _session, _film, boxes = open_film(port)
    attrs = Dataset()
    attrs.ImageBoxPosition = 1
    attrs.ReferencedImageBoxSequence = [eight_bit()]
    status, _ = assoc.send_n_set(attrs, pc.GRAYSCALE_IMAGE_BOX, boxes[0], meta_uid=META)
    assoc.release()
    assert (int(status), status.ErrorComment, status.OffendingElement) == (
        0x0120, "BasicGrayscaleImageSequence missing", [0x20200110],
    )  # fmt: skip
    assert list(out.glob("*.png")) == []


# --- bad input and the order of operations ------------------------------------------------------------------


def open_film(port: int, display_format: str = "STANDARD\\1,1", **attrs):
    """An association with a Film Session and a Film Box: (assoc, session UID, film box UID, image box UIDs)."""
    ae = AE("FERRO")
    ae.add_requested_context(META)
    assoc = ae.associate("127.0.0.1", port, ae_title="PRINTSCP")
    assert assoc.is_established
    session = generate_uid()
    status, _ = assoc.send_n_create(Dataset(), pc.FILM_SESSION, session, meta_uid=META)
    assert status == 0
    film_uid, boxes = new_film(assoc, session, display_format, **attrs)
    return assoc, session, film_uid, boxes


def new_film(assoc, session: str, display_format: str = "STANDARD\\1,1", expect: int = 0, **attrs):
    ds = FilmBox(display_format, film_size="8INX10IN", **attrs).dataset()
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = pc.FILM_SESSION, session
    ds.ReferencedFilmSessionSequence = [ref]
    uid = generate_uid()
    status, reply = assoc.send_n_create(ds, pc.FILM_BOX, uid, meta_uid=META)
    assert status == expect, status
    return uid, [str(i.ReferencedSOPInstanceUID) for i in (reply or Dataset()).get("ReferencedImageBoxSequence", [])]


def image_box(position: int = 1, rows: int = 20, cols: int = 20, allocated: int = 8, stored: int = 8,
              data: bytes | None = None, **attrs) -> Dataset:  # fmt: skip
    item = Dataset()
    item.SamplesPerPixel, item.PhotometricInterpretation = 1, attrs.pop("photometric", "MONOCHROME2")
    item.Rows, item.Columns = rows, cols
    item.BitsAllocated, item.BitsStored, item.HighBit = allocated, stored, stored - 1
    item.PixelRepresentation = attrs.pop("representation", 0)
    item.PixelData = data if data is not None else bytes(rows * cols * allocated // 8)
    ds = Dataset()
    ds.ImageBoxPosition = position
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.BasicGrayscaleImageSequence = [item]
    return ds


@pytest.mark.parametrize(
    ("box", "status", "offending"),
    [
        (image_box(rows=20, cols=20, data=bytes(398)), 0x0106, 0x7FE00010),  # Pixel Data shorter than 20 x 20
        (image_box(rows=21, cols=20, data=bytes(400)), 0x0106, 0x7FE00010),  # Rows that do not match
        (image_box(allocated=16, stored=10), 0x0106, 0x00280101),  # 10 bits: 8 or 12 only
        (image_box(allocated=8, stored=12), 0x0106, 0x00280101),
        (image_box(allocated=16, stored=16), 0x0106, 0x00280101),
        (image_box(representation=1), 0x0106, 0x00280103),  # signed
        (image_box(photometric="RGB"), 0x0106, 0x00280004),
        (image_box(position=2), 0x0106, 0x20200010),  # the box is position 1
        (image_box(rows=1600, cols=100, RequestedDecimateCropBehavior="FAIL"), 0xC603, None),
        (image_box(rows=1600, cols=100, MagnificationType="NONE"), 0xC603, None),
        (image_box(rows=1600, cols=100), 0xB604, None),  # demagnified
        (image_box(rows=1600, cols=100, RequestedDecimateCropBehavior="DECIMATE"), 0xB60A, None),
        (image_box(rows=1600, cols=100, RequestedDecimateCropBehavior="CROP"), 0xB609, None),
        (image_box(MaxDensity=400), 0xB605, None),
        (image_box(Polarity="INVERSE"), 0x0106, 0x20200020),
        (image_box(allocated=16, stored=12, data=bytes(800)), 0x0000, None),
    ],
)
def test_image_box_n_set_statuses(printer, box, status, offending):
    """Each malformed image the standard's status (0106 with the offending element; 0120 missing); an image
    taller than the 8INX10IN film's box (1188 x 1488 at 150 dpi) is demagnified (B604), decimated (B60A),
    cropped (B609) or refused (C603) as asked."""
    port, _scp, out = printer()
    assoc, _session, film_uid, boxes = open_film(port)
    got, _ = assoc.send_n_set(box, pc.GRAYSCALE_IMAGE_BOX, boxes[0], meta_uid=META)
    action, _ = assoc.send_n_action(None, 1, pc.FILM_BOX, film_uid, meta_uid=META)
    assoc.release()
    assert int(got) == status, got.ErrorComment
    assert got.OffendingElement == ([offending] if offending else None)
    assert int(action) == (0xB603 if got.category == "Failure" else 0x0000)  # a refused image leaves it empty
    assert len(list(out.glob("*.png"))) == 1


def test_unknown_image_display_formats_are_0106(printer):
    port, _scp, _out = printer()
    assoc, session, _film, _boxes = open_film(port)
    assoc.send_n_action(None, 1, pc.FILM_BOX, _film, meta_uid=META)
    for fmt in ("CUSTOM\\3", "STANDARD\\0,1", "STANDARD\\2", "GRID\\2,2", "STANDARD\\1,99", "ROW\\"):
        ds = FilmBox(fmt).dataset()
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = pc.FILM_SESSION, session
        ds.ReferencedFilmSessionSequence = [ref]
        status, _ = assoc.send_n_create(ds, pc.FILM_BOX, generate_uid(), meta_uid=META)
        assert (int(status), status.OffendingElement) == (0x0106, [0x20100010]), fmt
    missing = Dataset()
    missing.ReferencedFilmSessionSequence = ds.ReferencedFilmSessionSequence
    status, _ = assoc.send_n_create(missing, pc.FILM_BOX, generate_uid(), meta_uid=META)
    assoc.release()
    assert int(status) == 0x0120


def test_order_of_operations(printer):
    """N-ACTION before any image: B603 and an empty film; a second unprinted film box: C616; a second film
    session: 0111; a film box without a session: 0106; the image boxes and the N-DELETE of an earlier film
    box: refused; Film Session N-ACTION: C600 without film boxes, B602 with nothing in them."""
    port, _scp, out = printer()
    ae = AE("FERRO")
    ae.add_requested_context(META)
    with ae.associate("127.0.0.1", port, ae_title="PRINTSCP") as assoc:
        _uid, _ = new_film(assoc, generate_uid(), expect=0x0106)  # no film session yet
        session = generate_uid()
        assert assoc.send_n_create(Dataset(), pc.FILM_SESSION, session, meta_uid=META)[0] == 0
        assert assoc.send_n_create(Dataset(), pc.FILM_SESSION, generate_uid(), meta_uid=META)[0] == 0x0111
        assert assoc.send_n_action(None, 1, pc.FILM_SESSION, session, meta_uid=META)[0] == 0xC600
        first, first_boxes = new_film(assoc, session, "STANDARD\\2,1")
        new_film(assoc, session, expect=0xC616)
        assert assoc.send_n_action(None, 1, pc.FILM_SESSION, session, meta_uid=META)[0] == 0xB602
        status, _ = assoc.send_n_action(None, 1, pc.FILM_BOX, first, meta_uid=META)
        assert (int(status), status.ErrorComment) == (0xB603, PRINT_STATUSES[0xB603].meaning[:64])
        second, _ = new_film(assoc, session)
        assert assoc.send_n_set(image_box(), pc.GRAYSCALE_IMAGE_BOX, first_boxes[0], meta_uid=META)[0] == 0x0112
        assert assoc.send_n_action(None, 1, pc.FILM_BOX, first, meta_uid=META)[0] == 0x0112
        assert assoc.send_n_delete(pc.FILM_BOX, first, meta_uid=META) == 0x0110
        assert assoc.send_n_delete(pc.FILM_BOX, second, meta_uid=META) == 0
        assert assoc.send_n_action(None, 2, pc.FILM_SESSION, session, meta_uid=META)[0] == 0x0123
        assert assoc.send_n_delete(pc.FILM_SESSION, session, meta_uid=META) == 0
        assert assoc.send_n_delete(pc.FILM_SESSION, session, meta_uid=META) == 0x0112
    # the empty page, printed twice: by the session's N-ACTION (B602) and the film box's (B603)
    png, sidecar = film(out, session, 1)
    assert sidecar["film_box"]["times_printed"] == 2 and sidecar["status"] == "0xB603"
    assert set(np.unique(png)) == {0, 255}  # BLACK border, WHITE empty boxes
    assert len(list(out.glob("*.png"))) == 1


def test_collation_prints_several_film_boxes_with_one_film_session_n_action(printer):
    port, _scp, out = printer(collation=True)
    images = [PrintImage(np.full((8, 8), 50 * i, np.uint8), f"i{i}") for i in range(3)]
    report = print_images("127.0.0.1", port, images, called_ae="PRINTSCP", collate=True,
                          session=FilmSession(copies=2), film=FilmBox("STANDARD\\1,1"))  # fmt: skip
    assert report.ok, report.failed
    assert [f.printed for f in report.films] == [True] * 3
    assert len({f.print_job_uid for f in report.films}) == 1  # one print job for the session
    assert sorted(p.name for p in out.glob("*.png")) == [f"{report.session_uid}-{n}.png" for n in (1, 2, 3)]
    port, _scp, _out = printer()  # without collation: the second film box is refused, as GEMINI logs it
    report = print_images("127.0.0.1", port, images, called_ae="PRINTSCP", collate=True, product="gemini-tf")
    assert report.failed.startswith("film box N-CREATE of film 2: 0xC616 Failure: There is an existing Film Box")
    assert report.responses[0].rule.source == "001 L1237 (Table 49)"


def test_an_association_aborted_mid_job_leaves_no_state_behind(printer):
    """A film box with an image, then A-ABORT: the hierarchy is dropped (nothing printed) and the next
    association starts clean (no 0111 for its film session, no C616 for its film box)."""
    port, scp, out = printer()
    assoc, _session, _film, boxes = open_film(port)
    assert assoc.send_n_set(image_box(), pc.GRAYSCALE_IMAGE_BOX, boxes[0], meta_uid=META)[0] == 0
    assert scp.associations == 1
    assoc.abort()
    deadline = time.monotonic() + 5
    while scp.associations and time.monotonic() < deadline:
        time.sleep(0.02)
    assert scp.associations == 0
    assoc, session, film_uid, boxes = open_film(port)
    assert assoc.send_n_set(image_box(), pc.GRAYSCALE_IMAGE_BOX, boxes[0], meta_uid=META)[0] == 0
    assert assoc.send_n_action(None, 1, pc.FILM_BOX, film_uid, meta_uid=META)[0] == 0
    assoc.release()
    assert [p.name for p in out.glob("*.png")] == [f"{session}-1.png"]


def test_the_print_scu_reports_a_printer_that_aborts_mid_job(tmp_path):
    """A printer that aborts on the second image: the job fails naming the operation, with the typed error."""
    sets = []

    def n_create(event):
        reply = Dataset()
        if event.request.AffectedSOPClassUID == pc.FILM_BOX:
            items = []
            for _ in range(4):
                item = Dataset()
                item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = pc.GRAYSCALE_IMAGE_BOX, generate_uid()
                items.append(item)
            reply.ReferencedImageBoxSequence = items
        return 0, reply

    def n_set(event):
        sets.append(event.request.RequestedSOPInstanceUID)
        if len(sets) == 2:
            event.assoc.abort()
        return 0, None

    ae = AE("PRINTSCP")
    ae.add_supported_context(META)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
        (evt.EVT_N_GET, lambda e: (0x0110, None)), (evt.EVT_N_CREATE, n_create), (evt.EVT_N_SET, n_set)])  # fmt: skip
    try:
        images = [PrintImage(np.zeros((8, 8), np.uint8), f"i{i}") for i in range(4)]
        report = print_images("127.0.0.1", server.port, images, called_ae="PRINTSCP", film=FilmBox("STANDARD\\2,2"))
    finally:
        server.shutdown()
    assert report.failed.startswith("the association broke during the N-SET of film 1 image box 2 (i1): ")
    assert isinstance(report.association_error, ferrodicom.DicomError)
    assert report.printed_films == []
    # the Printer N-GET failed (twice: all five attributes, then the status alone): reported, the job went on
    assert [str(r) for r in report.responses] == ["printer N-GET of the printer: 0x0110 Failure: processing failure"]


# --- statuses, the seeds' behaviour, events -----------------------------------------------------------------


def test_every_print_status_has_a_meaning_and_a_source():
    assert sorted(PRINT_STATUSES) == [0xB600, 0xB601, 0xB602, 0xB603, 0xB604, 0xB605, 0xB609, 0xB60A,
                                      0xC600, 0xC601, 0xC602, 0xC603, 0xC604, 0xC605, 0xC613, 0xC616]  # fmt: skip
    assert meaning(0xB600) == "Warning: Memory Allocation not supported"
    assert meaning(0xC616).startswith("Failure: There is an existing Film Box that has not been printed")
    assert meaning(0xC610) == "Failure: 0xC610 (a print failure PS3.4 Annex H does not define)"
    assert meaning(0x0106) == "Failure: invalid attribute value"
    for code in (0xB604, 0xB605, 0xB609, 0xB60A, 0xC603, 0xC605, 0xC613):  # GEMINI's image box tables
        assert "001 L" in PRINT_STATUSES[code].source
    # GEMINI TF's documented behaviour (seed 001 Tables 45-55) and the standard's categories
    assert rule("film session N-CREATE", 0xB600, "gemini-tf") == rule("film session N-CREATE", 0xB600, "gemini-tf")
    assert rule("film session N-CREATE", 0xB600, "gemini-tf").behaviour is Behaviour.WARN
    assert rule("film box N-CREATE", 0xC616, "gemini-tf").source == "001 L1237 (Table 49)"
    assert rule("film box N-ACTION", 0xB60A, "gemini-tf").behaviour is Behaviour.REPORT
    assert rule("image box N-SET", 0xC605, "gemini-tf").source == "001 L1300, L1342 (Tables 53, 55)"
    assert rule("film box N-DELETE", 0xB000, "gemini-tf").behaviour is Behaviour.FAIL  # "<> 0000", L1263
    assert rule("film box N-DELETE", 0x0110, None).behaviour is Behaviour.REPORT
    assert rule("film box N-DELETE", 0x0110, "entegra").behaviour is Behaviour.REPORT
    assert rule("image box N-SET", 0xC605, "xeleris").behaviour is Behaviour.FAIL
    assert rule("printer N-GET", 0x0105, None).behaviour is Behaviour.REPORT
    with pytest.raises(ValueError):
        rule("image box N-GET", 0)


@pytest.fixture
def scripted_printer():
    """start(answers) -> port: a printer answering each operation ("film box N-CREATE", ...) with the status
    given (default Success), creating 2 image boxes per film box."""
    servers = []

    def start(answers):
        def op(event, kind):
            cls = event.request.AffectedSOPClassUID or event.request.RequestedSOPClassUID
            name = {pc.FILM_SESSION: "film session", pc.FILM_BOX: "film box", pc.PRINTER: "printer"}.get(
                cls, "image box"
            )
            return f"{name} {kind}"

        def n_create(event):
            reply = Dataset()
            if event.request.AffectedSOPClassUID == pc.FILM_BOX:
                items = []
                for _ in range(2):
                    item = Dataset()
                    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = pc.GRAYSCALE_IMAGE_BOX, generate_uid()
                    items.append(item)
                reply.ReferencedImageBoxSequence = items
            return answers.get(op(event, "N-CREATE"), 0), reply

        def n_get(event):
            ds = Dataset()
            ds.PrinterStatus, ds.PrinterStatusInfo = "NORMAL", "NORMAL"
            return 0, ds

        handlers = [
            (evt.EVT_N_GET, n_get),
            (evt.EVT_N_CREATE, n_create),
            (evt.EVT_N_SET, lambda e: (answers.get(op(e, "N-SET"), 0), None)),
            (evt.EVT_N_ACTION, lambda e: (answers.get(op(e, "N-ACTION"), 0), None)),
            (evt.EVT_N_DELETE, lambda e: answers.get(op(e, "N-DELETE"), 0)),
        ]
        ae = AE("PRINTSCP")
        ae.add_supported_context(META)
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        servers.append(server)
        return server.port

    yield start
    for s in servers:
        s.shutdown()


@pytest.mark.parametrize(
    ("answers", "product", "films", "failed"),
    [
        ({"film session N-CREATE": 0xB600}, "gemini-tf", 2, None),  # 001 L1194: continue, logged
        ({"film box N-CREATE": 0xB605}, "gemini-tf", 2, None),  # L1236
        ({"film box N-CREATE": 0xC616}, "gemini-tf", 0, "film box N-CREATE of film 1: 0xC616"),  # L1237
        ({"image box N-SET": 0xB609}, "gemini-tf", 2, None),  # L1297
        ({"image box N-SET": 0xC605}, "gemini-tf", 0, "image box N-SET of film 1 image box 1 (i0): 0xC605"),
        ({"film box N-ACTION": 0xB603}, "gemini-tf", 2, None),  # L1247
        ({"film box N-ACTION": 0xC602}, "gemini-tf", 0, "film box N-ACTION of film 1: 0xC602"),  # L1251
        ({"film box N-DELETE": 0x0110}, "gemini-tf", 1, "film box N-DELETE of film 1: 0x0110"),  # L1263
        ({"film box N-DELETE": 0x0110}, None, 2, None),  # the film was printed: reported, the job goes on
        ({"film session N-DELETE": 0x0110}, "gemini-tf", 2, "film session N-DELETE of the film session"),  # L1200
        ({"image box N-SET": 0xC605}, "entegra", 0, "image box N-SET of film 1 image box 1 (i0): 0xC605"),
        ({"image box N-SET": 0xB604}, None, 2, None),
    ],
)
def test_the_job_follows_the_documented_behaviour_of_each_status(scripted_printer, answers, product, films, failed):
    port = scripted_printer(answers)
    images = [PrintImage(np.zeros((4, 4), np.uint8), f"i{i}") for i in range(4)]
    report = print_images("127.0.0.1", port, images, called_ae="PRINTSCP", product=product, job_timeout=0.1)
    assert len(report.printed_films) == films
    if failed is None:
        assert report.ok, report.failed
        assert [int(r.status) for r in report.warnings] and all(r.rule.behaviour is not Behaviour.FAIL
                                                                 for r in report.responses)  # fmt: skip
    else:
        assert report.failed.startswith(failed), report.failed
        assert report.responses[-1].rule.behaviour is Behaviour.FAIL


def test_printer_and_print_job_events(printer):
    """The printer reports WARNING during film 1 and FAILURE during film 2 (N-EVENT-REPORTs on the job's
    association): the job keeps both, stops before film 3 and fails; each printed film's Print Job reported
    DONE. A printer whose status is FAILURE before the job prints nothing."""
    films: list[int] = []

    def on_film(printed):
        films.append(printed.number)
        scp.set_printer_status(*(("WARNING", "SUPPLY LOW") if printed.number == 1 else ("FAILURE", "FILM JAM")))

    port, scp, _out = printer(on_film=on_film)
    images = [PrintImage(np.zeros((4, 4), np.uint8), f"i{i}") for i in range(3)]
    report = print_images("127.0.0.1", port, images, called_ae="PRINTSCP")
    assert films == [1, 2]
    assert report.failed == "the printer reported FAILURE (FILM JAM)"
    printer_events = [(e.name, e.info) for e in report.events if e.kind == "Printer"]
    assert printer_events == [("WARNING", "SUPPLY LOW"), ("FAILURE", "FILM JAM")]
    jobs = {e.instance_uid: e.name for e in report.events if e.kind == "Print Job"}
    assert {f.print_job_uid for f in report.printed_films} <= set(jobs) and set(jobs.values()) == {"DONE"}
    report = print_images("127.0.0.1", port, images, called_ae="PRINTSCP")  # still FAILURE (FILM JAM)
    assert report.failed == "the printer's status is FAILURE (FILM JAM)" and report.session_uid is None


def test_print_command_errors_are_one_line(tmp_path):
    f = tmp_path / "ct.dcm"
    ct(f)
    (tmp_path / "notes.txt").write_text("x")
    cases = [
        (["--format", "GRID\\2", "127.0.0.1", "104", str(f)], 2, "'--format': 'GRID\\2': not STANDARD"),
        (["--window", "40", "127.0.0.1", "104", str(f)], 2, "'--window': '40': give CENTER,WIDTH"),
        (["--color", "--bits", "12", "127.0.0.1", "104", str(f)], 2, "--bits 12 is for grayscale"),
        (["127.0.0.1", str(free_port()), str(f)], 1, "cannot reach ANY-SCP at 127.0.0.1:"),
        (["127.0.0.1", "104", str(tmp_path / "notes.txt")], 1, "nothing to print: no image could be read"),
    ]
    for args, code, says in cases:
        r = subprocess.run([*ferrodicom_cli(), "print", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == code, (args, r.stderr)
        last = r.stderr.splitlines()[-1]
        assert last.startswith("Error: ") and says in last, (args, r.stderr)
        assert "Traceback" not in r.stderr
