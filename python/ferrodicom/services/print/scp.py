"""A print SCP for tests and previews (PS3.4 Annex H): Basic Grayscale and Basic Color Print Management (both
meta SOP classes), the Printer SOP class, and the Print Job SOP class when the SCU proposes it. Nothing is
printed: each film becomes ``OUTPUT_DIR/<film session UID>-<film number>.png``, drawn as the film would look
(:mod:`.render`), with a JSON sidecar of the same name holding the film's attributes.

Each association has its own film session hierarchy (one session at a time, PS3.4 H.4.1.2.1.3), checked in
the order the standard requires, with its statuses:

- Film Session N-CREATE: 0111 when one exists already on the association (as DCMTK's dcmprscp); B600 when
  Memory Allocation is given (not supported); 0116 (value out of range, default used) for an unsupported
  Number of Copies, Print Priority, Medium Type or Film Destination.
- Film Box N-CREATE: 0106 without a film session or for another session's UID, or for an Image Display
  Format this printer cannot lay out (offending element (2010,0010)); 0120 when it is missing; C616 when the
  last film box was not printed (unless ``collation`` allows films to wait for a Film Session N-ACTION);
  B605 for a Min/Max Density outside the printer's 20..320; 0116 for other unsupported values.
- Image Box N-SET: only the last film box's image boxes (0112 otherwise); 0120 without the Basic Grayscale
  (Color) Image Sequence; 0106 for a wrong Image Box Position, samples, photometric interpretation, bit
  depth (8 bits, or 12 stored in 16), pixel representation, or Pixel Data whose length is not Rows x
  Columns; then the fit: B604 demagnified, B609 cropped, B60A decimated, C603 too large (see
  :func:`.render.fit`); B605 for densities outside the range.
- Film Box N-ACTION: 0112 for anything but the last film box; B603 when it holds no image (an empty film is
  still produced); C602 when the film cannot be written because the disk is full.
- Film Session N-ACTION: C600 without film boxes; B602 when none holds an image; B601 with several copies
  of several films (copies are not collated).
- N-DELETE: of the session (the hierarchy with it) or of the last film box only.

Aborting or releasing the association discards its hierarchy (PS3.4 H.4.1.2.1.3: like an N-DELETE of the
session). The printer's status (N-GET, and N-EVENT-REPORTs to every association with
:meth:`PrintSCP.set_printer_status`) is NORMAL unless told otherwise.
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid

from ferrodicom import evt
from ferrodicom.ae import ContextSpec
from ferrodicom.services.print import classes as pc
from ferrodicom.services.print.layout import (
    FILM_SIZES,
    DisplayFormat,
    Rect,
    film_pixels,
    gap_pixels,
    parse_display_format,
)
from ferrodicom.services.print.render import (
    PRINTER_MAX_DENSITY,
    PRINTER_MIN_DENSITY,
    Fit,
    Placement,
    density_gray,
    display_values,
    fit,
    render,
    save_png,
)
from ferrodicom.services.print.statuses import PRINT_STATUSES

log = logging.getLogger("ferrodicom.print.scp")

#: Defaults of this printer (PS3.4 H.2.4: the SCP applies them to what the SCU leaves out).
SESSION_DEFAULTS = {"NumberOfCopies": "1", "PrintPriority": "MED", "MediumType": "BLUE FILM",
                    "FilmDestination": "PROCESSOR"}  # fmt: skip
FILM_BOX_DEFAULTS = {
    "FilmOrientation": "PORTRAIT",
    "FilmSizeID": "14INX17IN",
    "MagnificationType": "REPLICATE",
    "SmoothingType": "NONE",
    "BorderDensity": "BLACK",
    "EmptyImageDensity": "WHITE",
    "MinDensity": PRINTER_MIN_DENSITY,
    "MaxDensity": PRINTER_MAX_DENSITY,
    "Trim": "NO",
    "ConfigurationInformation": "",
}
MAX_COPIES = 99
#: Film Box attributes an SCU may give (PS3.4 Table H.4-6), and the Image Box ones (Tables H.4-10, H.4-11).
FILM_BOX_ATTRIBUTES = (
    "ImageDisplayFormat", "FilmOrientation", "FilmSizeID", "MagnificationType", "SmoothingType", "BorderDensity",
    "EmptyImageDensity", "MinDensity", "MaxDensity", "Trim", "ConfigurationInformation", "Illumination",
    "ReflectedAmbientLight", "RequestedResolutionID", "AnnotationDisplayFormatID",
)  # fmt: skip
SESSION_ATTRIBUTES = ("NumberOfCopies", "PrintPriority", "MediumType", "FilmDestination", "FilmSessionLabel",
                      "MemoryAllocation", "OwnerID", "SpecificCharacterSet")  # fmt: skip
#: Printer N-GET attributes (PS3.4 Table H.4-17).
PRINTER_ATTRIBUTES = (0x21100010, 0x21100020, 0x21100030, 0x00080070, 0x00081090, 0x00181000, 0x00181020,
                      0x00181200, 0x00181201)  # fmt: skip


def _status(code: int, comment: str, offending: Optional[int] = None) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment.replace("\\", "/")[:64]  # one LO value: a backslash would split it
    if offending is not None:
        ds.OffendingElement = [offending]
    return ds


class Refusal(Exception):
    """A request this printer answers with a failure status."""

    def __init__(self, code: int, comment: str, offending: Optional[int] = None) -> None:
        super().__init__(comment)
        self.status = _status(code, comment, offending)


@dataclass
class ImageBox:
    uid: str
    sop_class: str
    position: int
    box: Rect
    pixels: Optional[np.ndarray] = None  # MONOCHROME2 P-values (uint8 / uint16) or RGB uint8
    bits: int = 8
    fit: Optional[Fit] = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def color(self) -> bool:
        return self.sop_class == pc.COLOR_IMAGE_BOX


@dataclass
class FilmBox:
    uid: str
    number: int
    attrs: Dataset
    layout: DisplayFormat
    size: tuple[int, int]
    image_boxes: list[ImageBox]
    printed: int = 0

    @property
    def has_images(self) -> bool:
        return any(b.pixels is not None for b in self.image_boxes)


@dataclass
class Session:
    uid: str
    attrs: Dataset
    film_boxes: list[FilmBox] = field(default_factory=list)
    films_created: int = 0


@dataclass
class _Association:
    """One association's print state."""

    assoc: Any
    session: Optional[Session] = None
    #: N-EVENT-REPORTs waiting to go out after the response that caused them: (class, instance, type, info).
    outbox: list[tuple[str, str, int, Optional[Dataset]]] = field(default_factory=list)
    #: Reentrant: a thread waiting for an event's response may serve the peer's next request, whose handler
    #: flushes the outbox too.
    lock: threading.RLock = field(default_factory=threading.RLock)


@dataclass(frozen=True)
class PrintedFilm:
    """A film the SCP produced: its PNG and JSON sidecar."""

    png: Path
    sidecar: Path
    session_uid: str
    film_box_uid: str
    number: int
    calling_ae: str
    status: int


class PrintSCP:
    """The print service (see the module documentation). ``dpi``: the film's resolution in the preview;
    ``collation``: support Film Session N-ACTION over several unprinted film boxes (else C616 keeps one
    unprinted film box at a time); ``on_film`` is called with each :class:`PrintedFilm`."""

    def __init__(
        self,
        output_dir: Path,
        *,
        dpi: float = 150.0,
        collation: bool = False,
        printer_name: str = "FERRODICOM",
        on_film: Optional[Callable[[PrintedFilm], None]] = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.dpi = float(dpi)
        self.collation = collation
        self.printer_name = printer_name
        self.on_film = on_film
        self.printer_status = ("NORMAL", "NORMAL")
        self._lock = threading.Lock()
        self._states: dict[int, _Association] = {}

    # --- the service ---------------------------------------------------------------------------------------
    def contexts(self) -> list[ContextSpec]:
        return [ContextSpec(uid) for uid in (pc.GRAYSCALE_META, pc.COLOR_META, pc.PRINTER, pc.PRINT_JOB)]

    def handlers(self) -> list[tuple[evt.EventType, Callable[..., Any]]]:
        return [
            (evt.EVT_N_CREATE, self._guard(self.n_create)),
            (evt.EVT_N_SET, self._guard(self.n_set)),
            (evt.EVT_N_GET, self._guard(self.n_get)),
            (evt.EVT_N_ACTION, self._guard(self.n_action)),
            (evt.EVT_N_DELETE, self._guard(self.n_delete, single=True)),
            (evt.EVT_RELEASED, self._closed),
            (evt.EVT_ABORTED, self._closed),
        ]

    def close(self) -> None:
        with self._lock:
            self._states.clear()

    @property
    def associations(self) -> int:
        """Associations holding print state (a session, or events to send)."""
        with self._lock:
            return len(self._states)

    def _state(self, event: Any) -> _Association:
        with self._lock:
            state = self._states.get(event.assoc.id)
            if state is None:
                state = self._states[event.assoc.id] = _Association(event.assoc)
            return state

    def _closed(self, event: Any) -> None:
        if event.assoc is None:
            return
        with self._lock:
            state = self._states.pop(event.assoc.id, None)
        if state is not None and state.session is not None:
            unprinted = sum(1 for f in state.session.film_boxes if not f.printed)
            log.info("association %s ended (%s): film session %s discarded, %d unprinted film box(es)",
                     event.assoc.id, event.event.name, state.session.uid, unprinted)  # fmt: skip

    def _guard(self, handler: Callable[[Any, _Association], Any], single: bool = False) -> Callable[[Any], Any]:
        """Runs a handler with the association's state; a :class:`Refusal` becomes its status. Events waiting
        from an earlier response go out first."""

        def run(event: Any) -> Any:
            state = self._state(event)
            self._flush(state)
            try:
                return handler(event, state)
            except Refusal as refusal:
                log.info("%s refused: 0x%04X %s", event.event.name, refusal.status.Status, refusal.status.ErrorComment)
                return refusal.status if single else (refusal.status, None)

        return run

    # --- N-GET ---------------------------------------------------------------------------------------------
    def n_get(self, event: Any, state: _Association) -> tuple[Any, Optional[Dataset]]:
        sop_class = str(event.request.RequestedSOPClassUID)
        uid = str(event.request.RequestedSOPInstanceUID)
        self._check_class(event, sop_class, (pc.PRINTER,))
        if uid != pc.PRINTER_INSTANCE:
            raise Refusal(0x0112, f"the Printer is {pc.PRINTER_INSTANCE}")
        everything = self._printer_attributes()
        wanted = [int(t) for t in event.attribute_identifiers]
        if not wanted:
            return 0x0000, everything
        out = Dataset()
        unknown = []
        for tag in wanted:
            if tag in everything:
                out[tag] = everything[tag]
            elif tag & 0xFFFF != 0:  # group lengths ask for nothing
                unknown.append(tag)
        if unknown:
            return _status(0x0107, f"not a Printer attribute: {', '.join(f'{t:08X}' for t in unknown)}"), out
        return 0x0000, out

    def _printer_attributes(self) -> Dataset:
        from ferrodicom import __version__

        ds = Dataset()
        ds.PrinterStatus, ds.PrinterStatusInfo = self.printer_status
        ds.PrinterName = self.printer_name
        ds.Manufacturer = "ferrodicom"
        ds.ManufacturerModelName = "print-server (PNG preview)"
        ds.DeviceSerialNumber = "0"
        ds.SoftwareVersions = __version__
        ds.DateOfLastCalibration = "20000101"
        ds.TimeOfLastCalibration = "000000"
        return ds

    # --- N-CREATE --------------------------------------------------------------------------------------------
    def n_create(self, event: Any, state: _Association) -> tuple[Any, Optional[Dataset]]:
        sop_class = str(event.request.AffectedSOPClassUID)
        self._check_class(event, sop_class, (pc.FILM_SESSION, pc.FILM_BOX))
        attrs = event.attribute_list
        uid = event.request.AffectedSOPInstanceUID
        if sop_class == pc.FILM_SESSION:
            return self._create_session(state, attrs, uid)
        return self._create_film_box(event, state, attrs, uid)

    def _create_session(self, state: _Association, attrs: Dataset, uid: Optional[str]) -> tuple[Any, Dataset]:
        if state.session is not None:
            raise Refusal(0x0111, "a Film Session exists: one per association (H.4.1.2.1.3)")
        out = Dataset()
        warnings = []
        for keyword in SESSION_ATTRIBUTES:
            if keyword in attrs and attrs[keyword].value not in (None, ""):
                out[keyword] = attrs[keyword]
        for keyword, why in _session_problems(out):
            warnings.append((0x0116, why))
            del out[keyword]
        for keyword, value in SESSION_DEFAULTS.items():
            if keyword not in out:
                setattr(out, keyword, value)
        if "MemoryAllocation" in out:
            warnings.insert(0, (0xB600, "Memory Allocation not supported"))
            del out.MemoryAllocation
        session = Session(str(uid or generate_uid()), out)
        state.session = session
        log.info("film session %s created: %s copies, %s", session.uid, out.NumberOfCopies, out.MediumType)
        return _answer(_copy(out), session.uid if uid is None else None, warnings)

    def _create_film_box(
        self, event: Any, state: _Association, attrs: Dataset, uid: Optional[str]
    ) -> tuple[Any, Dataset]:
        session = state.session
        if session is None:
            raise Refusal(0x0106, "no Film Session on this association", 0x20100500)
        refs = attrs.get("ReferencedFilmSessionSequence")
        if not refs:
            raise Refusal(0x0120, "Referenced Film Session Sequence missing", 0x20100500)
        if str(refs[0].get("ReferencedSOPInstanceUID", "")) != session.uid:
            raise Refusal(0x0106, "not this association's Film Session", 0x20100500)
        if "ImageDisplayFormat" not in attrs or not str(attrs.ImageDisplayFormat).strip():
            raise Refusal(0x0120, "Image Display Format missing", 0x20100010)
        try:
            layout = parse_display_format(str(attrs.ImageDisplayFormat))
        except ValueError as exc:
            raise Refusal(0x0106, str(exc), 0x20100010) from None
        unprinted = [f for f in session.film_boxes if not f.printed]
        if unprinted and not self.collation:
            raise Refusal(0xC616, "the last Film Box has not been printed")
        out = Dataset()
        for keyword in FILM_BOX_ATTRIBUTES:
            if keyword in attrs and attrs[keyword].value not in (None, ""):
                out[keyword] = attrs[keyword]
        warnings: list[tuple[int, str]] = []
        for keyword, why in _film_box_problems(out):
            warnings.append((0x0116, why))
            del out[keyword]
        for keyword in ("MinDensity", "MaxDensity"):
            if keyword in out and not PRINTER_MIN_DENSITY <= int(out[keyword].value) <= PRINTER_MAX_DENSITY:
                value = int(out[keyword].value)
                setattr(out, keyword, min(max(value, PRINTER_MIN_DENSITY), PRINTER_MAX_DENSITY))
                warnings.insert(0, (0xB605, f"{keyword} {value} outside {PRINTER_MIN_DENSITY}..{PRINTER_MAX_DENSITY}"))
        for keyword, default in FILM_BOX_DEFAULTS.items():
            if keyword not in out:
                setattr(out, keyword, default)
        out.ReferencedFilmSessionSequence = attrs.ReferencedFilmSessionSequence
        size = film_pixels(str(out.FilmSizeID), str(out.FilmOrientation), self.dpi)
        meta = event.context.abstract_syntax
        box_class = pc.IMAGE_BOX_OF[meta]
        session.films_created += 1
        film = FilmBox(str(uid or generate_uid()), session.films_created, out, layout, size, [])
        for position, rect in enumerate(layout.boxes(size[0], size[1], gap_pixels(self.dpi)), start=1):
            film.image_boxes.append(ImageBox(generate_uid(), box_class, position, rect))
        session.film_boxes.append(film)
        reply = _copy(out)
        items = []
        for b in film.image_boxes:
            item = Dataset()
            item.ReferencedSOPClassUID = b.sop_class
            item.ReferencedSOPInstanceUID = b.uid
            items.append(item)
        reply.ReferencedImageBoxSequence = items
        log.info("film box %s created: %s, %s %s", film.uid, layout.text, out.FilmSizeID, out.FilmOrientation)
        return _answer(reply, film.uid if uid is None else None, warnings)

    # --- N-SET -----------------------------------------------------------------------------------------------
    def n_set(self, event: Any, state: _Association) -> tuple[Any, Optional[Dataset]]:
        sop_class = str(event.request.RequestedSOPClassUID)
        uid = str(event.request.RequestedSOPInstanceUID)
        allowed = (pc.FILM_SESSION, pc.FILM_BOX, pc.IMAGE_BOX_OF.get(event.context.abstract_syntax, ""))
        self._check_class(event, sop_class, allowed)
        session = state.session
        if session is None:
            raise Refusal(0x0112, "no Film Session on this association")
        mods = event.modification_list
        if sop_class == pc.FILM_SESSION:
            if uid != session.uid:
                raise Refusal(0x0112, "not this association's Film Session")
            changed = Dataset()
            for keyword in SESSION_ATTRIBUTES:
                if keyword in mods:
                    changed[keyword] = mods[keyword]
            problems = _session_problems(changed)
            if problems:
                raise Refusal(0x0106, problems[0][1], _tag(problems[0][0]))
            if "MemoryAllocation" in changed:
                del changed.MemoryAllocation
                session.attrs.update(changed)
                return _status(0xB600, "Memory Allocation not supported"), _copy(changed)
            session.attrs.update(changed)
            return 0x0000, _copy(changed)
        film = session.film_boxes[-1] if session.film_boxes else None
        if sop_class == pc.FILM_BOX:
            if film is None or film.uid != uid:
                raise Refusal(0x0112, "only the last created Film Box can be set (H.4.2.2.2)")
            changed = Dataset()
            for keyword in FILM_BOX_ATTRIBUTES[3:]:  # not the format, orientation or size (Table H.4-7)
                if keyword in mods:
                    changed[keyword] = mods[keyword]
            problems = list(_film_box_problems(changed))
            if problems:
                raise Refusal(0x0106, problems[0][1], _tag(problems[0][0]))
            film.attrs.update(changed)
            return 0x0000, _copy(changed)
        return self._set_image_box(film, uid, sop_class, mods)

    def _set_image_box(
        self, film: Optional[FilmBox], uid: str, sop_class: str, mods: Dataset
    ) -> tuple[Any, Optional[Dataset]]:
        box = next((b for b in film.image_boxes if b.uid == uid), None) if film is not None else None
        if box is None:
            raise Refusal(0x0112, "not an image box of the last created Film Box")
        if box.sop_class != sop_class:
            raise Refusal(0x0119, "image box of the other meta SOP class")
        keyword = pc.IMAGE_SEQUENCE_OF[sop_class]
        if "ImageBoxPosition" not in mods:
            raise Refusal(0x0120, "Image Box Position missing", 0x20200010)
        if int(mods.ImageBoxPosition) != box.position:
            raise Refusal(0x0106, f"Image Box Position {mods.ImageBoxPosition} is not {box.position}", 0x20200010)
        if keyword not in mods:
            raise Refusal(0x0120, f"{keyword} missing", 0x20200111 if box.color else 0x20200110)
        attrs: dict[str, Any] = {}
        for name, terms in (("Polarity", pc.POLARITIES), ("MagnificationType", pc.MAGNIFICATION_TYPES),
                            ("RequestedDecimateCropBehavior", pc.DECIMATE_CROP)):  # fmt: skip
            if name in mods and mods[name].value:
                value = str(mods[name].value).strip().upper()
                if value not in terms:
                    raise Refusal(0x0106, f"{name} {value!r} not one of {', '.join(terms)}", _tag(name))
                attrs[name] = value
        for name in ("SmoothingType", "ConfigurationInformation", "RequestedImageSize"):
            if name in mods and mods[name].value not in (None, ""):
                attrs[name] = str(mods[name].value)
        warning: Optional[tuple[int, str]] = None
        for name in ("MinDensity", "MaxDensity"):
            if name in mods and mods[name].value is not None:
                density = int(mods[name].value)
                if not PRINTER_MIN_DENSITY <= density <= PRINTER_MAX_DENSITY:
                    warning = (0xB605, f"{name} {density} outside {PRINTER_MIN_DENSITY}..{PRINTER_MAX_DENSITY}")
                attrs[name] = min(max(density, PRINTER_MIN_DENSITY), PRINTER_MAX_DENSITY)
        items = mods[keyword].value
        if not items:  # an empty sequence erases the image (H.4.3.1.2.1.3)
            box.pixels, box.fit, box.attrs = None, None, attrs
            return 0x0000, None
        pixels, bits, aspect, described = _read_image(items[0], box.color)
        magnification = attrs.get("MagnificationType", str(film.attrs.MagnificationType) if film else "REPLICATE")
        x0, y0, x1, y1 = box.box
        placed = fit(pixels.shape[0], pixels.shape[1], x1 - x0, y1 - y0, magnification,
                     attrs.get("RequestedDecimateCropBehavior"), aspect)  # fmt: skip
        if placed.status == 0xC603:
            raise Refusal(0xC603, f"{pixels.shape[1]}x{pixels.shape[0]} image, {x1 - x0}x{y1 - y0} box")
        box.pixels, box.bits, box.fit = pixels, bits, placed
        box.attrs = {**attrs, **described, "MagnificationType": magnification}
        if placed.status:
            return _status(placed.status, f"{pixels.shape[1]}x{pixels.shape[0]} image, {x1 - x0}x{y1 - y0} box"), None
        if warning is not None:
            return _status(*warning), None
        return 0x0000, None

    # --- N-ACTION ---------------------------------------------------------------------------------------------
    def n_action(self, event: Any, state: _Association) -> tuple[Any, Optional[Dataset]]:
        sop_class = str(event.request.RequestedSOPClassUID)
        uid = str(event.request.RequestedSOPInstanceUID)
        self._check_class(event, sop_class, (pc.FILM_SESSION, pc.FILM_BOX))
        if event.action_type != pc.ACTION_PRINT:
            raise Refusal(0x0123, f"action type {event.action_type}: only 1 (print)")
        session = state.session
        if session is None:
            raise Refusal(0x0112, "no Film Session on this association")
        if sop_class == pc.FILM_BOX:
            film = session.film_boxes[-1] if session.film_boxes else None
            if film is None or film.uid != uid:
                raise Refusal(0x0112, "only the last created Film Box can be printed (H.4.2.2.4.3)")
            films = [film]
            status = 0x0000 if film.has_images else 0xB603
        else:
            if uid != session.uid:
                raise Refusal(0x0112, "not this association's Film Session")
            films = list(session.film_boxes)
            if not films:
                raise Refusal(0xC600, "the Film Session has no Film Box")
            status = 0x0000 if any(f.has_images for f in films) else 0xB602
            if status == 0 and len(films) > 1 and int(session.attrs.NumberOfCopies) > 1 and not self.collation:
                status = 0xB601
        try:
            for film in films:
                self._print(event, session, film, status)
        except OSError as exc:
            code = 0xC602 if sop_class == pc.FILM_BOX else 0xC601
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                code = 0x0110
            log.error("cannot write the film of %s: %s", uid, exc)
            raise Refusal(code, f"cannot write the film: {exc.strerror or exc}") from None
        reply = None
        if _accepted(event.assoc, pc.PRINT_JOB):
            job = generate_uid()
            item = Dataset()
            item.ReferencedSOPClassUID = pc.PRINT_JOB
            item.ReferencedSOPInstanceUID = job
            reply = Dataset()
            reply.ReferencedPrintJobSequencePullStoredPrint = [item]
            info = Dataset()
            info.ExecutionStatusInfo = "NORMAL"
            info.FilmSessionLabel = str(session.attrs.get("FilmSessionLabel", ""))
            info.PrinterName = self.printer_name
            with state.lock:
                state.outbox.append((pc.PRINT_JOB, job, 3, info))  # Done
            timer = threading.Timer(0.2, self._flush, (state,))
            timer.daemon = True
            timer.start()
        if status:
            return _status(status, PRINT_STATUSES[status].meaning), reply
        return 0x0000, reply

    def _print(self, event: Any, session: Session, film: FilmBox, status: int) -> PrintedFilm:
        a = film.attrs
        lo, hi = int(a.MinDensity), int(a.MaxDensity)
        placements = [
            Placement(
                display_values(b.pixels, b.bits, b.attrs.get("Polarity", "NORMAL")),
                b.box,
                b.fit,
                b.attrs.get("MagnificationType", str(a.MagnificationType)),
            )  # fmt: skip
            for b in film.image_boxes
            if b.pixels is not None and b.fit is not None
        ]
        color = any(b.color for b in film.image_boxes)
        image = render(
            film.size,
            [b.box for b in film.image_boxes],
            placements,
            color=color,
            border=density_gray(str(a.BorderDensity), lo, hi, "BLACK"),
            empty=density_gray(str(a.EmptyImageDensity), lo, hi, "WHITE"),
            trim=str(a.Trim) == "YES",
        )
        stem = f"{session.uid}-{film.number}"
        png = self.output_dir / f"{stem}.png"
        sidecar = self.output_dir / f"{stem}.json"
        save_png(image, png)
        film.printed += 1
        info = event.assoc.info
        record = {
            "png": png.name,
            "printed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "calling_ae": info.calling_ae if info else None,
            "called_ae": info.called_ae if info else None,
            "printer": self.printer_name,
            "meta_sop_class": "color" if color else "grayscale",
            "status": f"0x{status:04X}",
            "dpi": self.dpi,
            "size_px": list(film.size),
            "film_session": {"uid": session.uid, **_json(session.attrs)},
            "film_box": {
                "uid": film.uid,
                "number": film.number,
                "times_printed": film.printed,
                **_json(film.attrs, skip=("ReferencedFilmSessionSequence",)),
            },  # fmt: skip
            "image_boxes": [_box_json(b) for b in film.image_boxes],
        }
        tmp = sidecar.with_name(f".{sidecar.name}.part")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(sidecar)
        calling_ae = info.calling_ae if info else ""
        printed = PrintedFilm(png, sidecar, session.uid, film.uid, film.number, calling_ae, status)
        log.info("printed film %d of session %s from %s: %s", film.number, session.uid, printed.calling_ae, png)
        if self.on_film is not None:
            self.on_film(printed)
        return printed

    # --- N-DELETE ---------------------------------------------------------------------------------------------
    def n_delete(self, event: Any, state: _Association) -> Any:
        sop_class = str(event.request.RequestedSOPClassUID)
        uid = str(event.request.RequestedSOPInstanceUID)
        self._check_class(event, sop_class, (pc.FILM_SESSION, pc.FILM_BOX))
        session = state.session
        if session is None:
            raise Refusal(0x0112, "no Film Session on this association")
        if sop_class == pc.FILM_SESSION:
            if uid != session.uid:
                raise Refusal(0x0112, "not this association's Film Session")
            state.session = None
            return 0x0000
        if not session.film_boxes or session.film_boxes[-1].uid != uid:
            if any(f.uid == uid for f in session.film_boxes):
                raise Refusal(0x0110, "only the last created Film Box can be deleted")
            raise Refusal(0x0112, "no such Film Box")
        session.film_boxes.pop()
        return 0x0000

    # --- events ---------------------------------------------------------------------------------------------
    def set_printer_status(self, status: str, info: str = "") -> None:
        """Changes the printer's status (NORMAL, WARNING, FAILURE; ``info`` as PS3.3 C.13.9.1) and reports it
        with an N-EVENT-REPORT to every association that uses the printer (PS3.4 H.4.6.2.1.2)."""
        event_type = {v: k for k, v in pc.PRINTER_EVENTS.items()}[status]
        self.printer_status = (status, info or status)
        report: Optional[Dataset] = None
        if event_type != 1:
            report = Dataset()
            report.PrinterStatusInfo = info or status
            report.PrinterName = self.printer_name
        with self._lock:
            states = list(self._states.values())
        for state in states:
            meta = next((m for m in (pc.GRAYSCALE_META, pc.COLOR_META) if _accepted(state.assoc, m)), None)
            if meta is None:
                continue
            try:
                state.assoc.send_n_event_report(report, event_type, pc.PRINTER, pc.PRINTER_INSTANCE, meta_uid=meta)
            except Exception as exc:  # the association may be ending
                log.info("printer event to association %s not sent: %s", state.assoc.id, exc)

    def _flush(self, state: _Association) -> None:
        """Sends the events an earlier response left (the Print Job's Done after its N-ACTION response)."""
        with state.lock:
            pending, state.outbox = state.outbox, []
            for sop_class, uid, event_type, info in pending:
                try:
                    state.assoc.send_n_event_report(info, event_type, sop_class, uid, meta_uid=sop_class)
                except Exception as exc:
                    log.info("%s event to association %s not sent: %s", sop_class, state.assoc.id, exc)

    # --- checks ----------------------------------------------------------------------------------------------
    @staticmethod
    def _check_class(event: Any, sop_class: str, allowed: tuple[str, ...]) -> None:
        """The request's SOP class must be one this printer serves here, under the context's meta SOP class."""
        context = event.context.abstract_syntax
        in_context = sop_class == context or (
            context in pc.IMAGE_BOX_OF
            and sop_class in (pc.FILM_SESSION, pc.FILM_BOX, pc.PRINTER, pc.IMAGE_BOX_OF[context])
        )
        if sop_class not in allowed or not in_context:
            raise Refusal(0x0118, f"{pc.CLASS_NAMES.get(sop_class, sop_class)} not served here")


def _answer(reply: Dataset, created_uid: Optional[str], warnings: list[tuple[int, str]]) -> tuple[Any, Dataset]:
    """An N-CREATE response: the first warning, if any, with the attribute list. When the SCU left the
    instance UID to us (``created_uid``) the answer must be Success: the platform puts a created UID into
    the response only with Success (ferrodicom/dispatch.py, ``Dispatcher.with_dataset``), and a warning
    without it would leave the SCU unable to address the instance; the warning is logged instead."""
    if created_uid is not None:
        reply.AffectedSOPInstanceUID = created_uid
        for code, why in warnings:
            log.warning(
                "N-CREATE of %s: 0x%04X %s (answered Success: the UID was ours to give)", created_uid, code, why
            )
        return 0x0000, reply
    if warnings:
        code, why = warnings[0]
        return _status(code, why), reply
    return 0x0000, reply


def _accepted(assoc: Any, abstract_syntax: str) -> bool:
    try:
        return any(c.abstract_syntax == abstract_syntax for c in assoc.accepted_contexts)
    except Exception:
        return False


def _tag(keyword: str) -> Optional[int]:
    from pydicom.datadict import tag_for_keyword

    return tag_for_keyword(keyword)


def _copy(ds: Dataset) -> Dataset:
    out = Dataset()
    out.update(ds)
    return out


def _session_problems(ds: Dataset) -> list[tuple[str, str]]:
    """Unsupported Film Session values: (keyword, why) each."""
    problems = []
    if "NumberOfCopies" in ds:
        try:
            copies = int(ds.NumberOfCopies)
        except (TypeError, ValueError):
            copies = 0
        if not 1 <= copies <= MAX_COPIES:
            problems.append(("NumberOfCopies", f"Number of Copies {ds.NumberOfCopies} not 1..{MAX_COPIES}"))
    checks = (("PrintPriority", pc.PRINT_PRIORITIES), ("MediumType", pc.MEDIUM_TYPES))
    for keyword, terms in checks:
        if keyword in ds and str(ds[keyword].value).strip() not in terms:
            problems.append((keyword, f"{keyword} {ds[keyword].value!r} not supported"))
    if "FilmDestination" in ds and not pc.valid_destination(str(ds.FilmDestination).strip()):
        problems.append(("FilmDestination", f"Film Destination {ds.FilmDestination!r} not supported"))
    return problems


def _film_box_problems(ds: Dataset) -> list[tuple[str, str]]:
    """Unsupported Film Box values: (keyword, why) each."""
    problems = []
    checks = (("FilmOrientation", pc.ORIENTATIONS), ("FilmSizeID", tuple(FILM_SIZES)),
              ("MagnificationType", pc.MAGNIFICATION_TYPES), ("Trim", pc.TRIM),
              ("RequestedResolutionID", pc.RESOLUTIONS))  # fmt: skip
    for keyword, terms in checks:
        if keyword in ds and str(ds[keyword].value).strip() not in terms:
            problems.append((keyword, f"{keyword} {ds[keyword].value!r} not supported"))
    for keyword in ("BorderDensity", "EmptyImageDensity"):
        if keyword in ds and not pc.valid_density(str(ds[keyword].value).strip()):
            problems.append((keyword, f"{keyword} {ds[keyword].value!r} not BLACK, WHITE or a density"))
    if "MinDensity" in ds and "MaxDensity" in ds and int(ds.MinDensity) >= int(ds.MaxDensity):
        problems.append(("MinDensity", f"Min Density {ds.MinDensity} not below Max Density {ds.MaxDensity}"))
    return problems


_GRAY_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")


def _read_image(item: Dataset, color: bool) -> tuple[np.ndarray, int, tuple[int, int], dict[str, Any]]:
    """(pixels as MONOCHROME2 P-values or RGB, bits stored, aspect, what was received) of an image sequence
    item; :class:`Refusal` 0106/0120 for what this printer cannot print."""
    for keyword in ("SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
                    "BitsStored", "HighBit", "PixelRepresentation", "PixelData"):  # fmt: skip
        if keyword not in item or item[keyword].value is None:
            raise Refusal(0x0120, f"{keyword} missing from the image sequence", _tag(keyword))
    samples, photometric = int(item.SamplesPerPixel), str(item.PhotometricInterpretation).strip()
    rows, cols = int(item.Rows), int(item.Columns)
    allocated, stored, high = int(item.BitsAllocated), int(item.BitsStored), int(item.HighBit)
    if samples != (3 if color else 1):
        raise Refusal(0x0106, f"Samples per Pixel {samples} in a {'color' if color else 'grayscale'} box",
                      0x00280002)  # fmt: skip
    if (color and photometric != "RGB") or (not color and photometric not in _GRAY_PHOTOMETRIC):
        raise Refusal(0x0106, f"Photometric Interpretation {photometric}", 0x00280004)
    supported = ((8, 8, 7),) if color else ((8, 8, 7), (16, 12, 11))
    if (allocated, stored, high) not in supported:
        raise Refusal(0x0106, f"bits {allocated}/{stored}/{high}: 8/8/7" + ("" if color else " or 16/12/11"),
                      0x00280101)  # fmt: skip
    if int(item.PixelRepresentation) != 0:
        raise Refusal(0x0106, "Pixel Representation must be 0 (unsigned)", 0x00280103)
    if rows < 1 or cols < 1:
        raise Refusal(0x0106, f"{rows} rows x {cols} columns", 0x00280010)
    data = bytes(item.PixelData)
    expected = rows * cols * samples * allocated // 8
    if len(data) not in (expected, expected + 1):
        raise Refusal(0x0106, f"Pixel Data {len(data)} bytes, {rows}x{cols}x{samples} needs {expected}", 0x7FE00010)
    if allocated == 8:
        pixels = np.frombuffer(data, np.uint8, expected)
    else:
        pixels = (np.frombuffer(data, "<u2", rows * cols) & 0x0FFF).astype(np.uint16)
    if color:
        planar = int(item.get("PlanarConfiguration", 0) or 0)
        pixels = pixels.reshape(3, rows, cols).transpose(1, 2, 0) if planar == 1 else pixels.reshape(rows, cols, 3)
    else:
        pixels = pixels.reshape(rows, cols)
        if photometric == "MONOCHROME1":
            pixels = ((1 << stored) - 1 - pixels.astype(np.int32)).astype(pixels.dtype)
    aspect = (1, 1)
    par = item.get("PixelAspectRatio")
    if par is not None and len(par) == 2 and int(par[0]) > 0 and int(par[1]) > 0:
        aspect = (int(par[0]), int(par[1]))
    described = {"Rows": rows, "Columns": cols, "BitsStored": stored, "PhotometricInterpretation": photometric,
                 "PixelAspectRatio": f"{aspect[0]}\\{aspect[1]}"}  # fmt: skip
    return np.ascontiguousarray(pixels), stored, aspect, described


def _json(ds: Dataset, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for elem in ds:
        if not elem.keyword or elem.keyword in skip or elem.VR == "SQ":
            continue
        value = elem.value
        if isinstance(value, (list, MultiValue)):
            out[elem.keyword] = [_plain(v) for v in value]
        else:
            out[elem.keyword] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (int, float, str)) or value is None:
        return value if not isinstance(value, str) else value.strip()
    try:
        number = float(value)
        return int(number) if number.is_integer() else number
    except (TypeError, ValueError):
        return str(value)


def _box_json(b: ImageBox) -> dict[str, Any]:
    out: dict[str, Any] = {"position": b.position, "uid": b.uid, "box": list(b.box), "empty": b.pixels is None}
    if b.pixels is not None and b.fit is not None:
        out.update(b.attrs)
        placed = Placement(b.pixels, b.box, b.fit).rect()
        out["placed"] = list(placed)
        out["fit_status"] = f"0x{b.fit.status:04X}"
        if b.fit.crop is not None:
            out["crop"] = list(b.fit.crop)
    elif b.attrs:
        out.update(b.attrs)
    return out
