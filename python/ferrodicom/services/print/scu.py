"""Print SCU (PS3.4 Annex H): :func:`print_images` lays images out over as many films as needed and prints
them, over one association, as the standard orders it:

1. N-GET of the Printer (status, status info, name, manufacturer, model); a printer that refuses the list
   (DCMTK's dcmprscp answers 0105 to Printer Name) is asked for status and status info alone. FAILURE stops
   the job before anything is created; an N-GET that fails altogether does not (the Printer N-GET is
   optional for an SCU, PS3.4 H.4.6.2).
2. N-CREATE of a Presentation LUT (IDENTITY or LIN OD), when asked for and the printer accepts the class.
3. N-CREATE of the Film Session (copies, priority, medium, destination, label, memory allocation).
4. Per film: N-CREATE of a Film Box (display format, orientation, size, magnification, trim, densities,
   configuration information); N-SET of each Image Box the printer created (in the order of its Referenced
   Image Box Sequence, Image Box Position 1, 2, ...) with a Basic Grayscale (8 or 12 bits) or Basic Color
   (RGB) Image Sequence from :mod:`.images`; N-ACTION print; N-DELETE of the film box. With
   ``collate=True`` the films are created and filled first and the Film Session is printed once.
5. N-DELETE of the Film Session, then, when the printer announced Print Jobs, a wait for their final
   N-EVENT-REPORT (Done or Failure) before the association is released.

What the instance UIDs are never depends on the printer echoing attributes back (the cause of pynetdicom's
issue #777): the SCU proposes the UIDs and takes the printer's only when its response carries one.

Every response that is not Success is kept in the report with its meaning (:mod:`.statuses`), and the job
does what the standard's categories say (warning: go on; failure: stop) or, with ``product``, what that
device documents (GEMINI TF: seed 001 Tables 45-55). N-EVENT-REPORTs from the Printer (NORMAL, WARNING,
FAILURE) and from Print Jobs (PENDING, PRINTING, DONE, FAILURE) are answered and kept; a printer FAILURE
stops the job before the next film, a Print Job FAILURE fails the job.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ferrodicom import _core, evt
from ferrodicom.ae import AE
from ferrodicom.association import Association
from ferrodicom.services.print import classes as pc
from ferrodicom.services.print import statuses
from ferrodicom.services.print.images import ImageError, PrintImage, Window, frames, to_color, to_gray
from ferrodicom.services.print.statuses import Behaviour, Rule
from ferrodicom.status import Status
from ferrodicom.uids import DEFAULT_TRANSFER_SYNTAXES

log = logging.getLogger("ferrodicom.print")

Source = Union[str, os.PathLike, Dataset, PrintImage]

#: The Printer attributes asked for first, and the two every printer has (PS3.4 Table H.4-17).
PRINTER_QUERY = [0x21100010, 0x21100020, 0x21100030, 0x00080070, 0x00081090]
PRINTER_STATUS_QUERY = [0x21100010, 0x21100020]


@dataclass
class FilmSession:
    """Basic Film Session attributes (PS3.4 Table H.4-2); None leaves the printer's default."""

    copies: int = 1
    priority: Optional[str] = None
    medium: Optional[str] = None
    destination: Optional[str] = None
    label: Optional[str] = None
    memory_allocation: Optional[int] = None
    owner_id: Optional[str] = None

    def dataset(self) -> Dataset:
        ds = Dataset()
        ds.NumberOfCopies = str(self.copies)
        for keyword, value in (("PrintPriority", self.priority), ("MediumType", self.medium),
                               ("FilmDestination", self.destination), ("FilmSessionLabel", self.label),
                               ("OwnerID", self.owner_id)):  # fmt: skip
            if value is not None:
                setattr(ds, keyword, value)
        if self.memory_allocation is not None:
            ds.MemoryAllocation = str(self.memory_allocation)
        return ds


@dataclass
class FilmBox:
    """Basic Film Box attributes (PS3.4 Table H.4-6); None leaves the printer's default."""

    display_format: str = "STANDARD\\1,1"
    orientation: Optional[str] = None
    film_size: Optional[str] = None
    magnification: Optional[str] = None
    smoothing: Optional[str] = None
    border_density: Optional[str] = None
    empty_image_density: Optional[str] = None
    min_density: Optional[int] = None
    max_density: Optional[int] = None
    trim: Optional[str] = None
    configuration_information: Optional[str] = None
    resolution: Optional[str] = None

    def dataset(self) -> Dataset:
        ds = Dataset()
        ds.ImageDisplayFormat = self.display_format
        for keyword, value in (("FilmOrientation", self.orientation), ("FilmSizeID", self.film_size),
                               ("MagnificationType", self.magnification), ("SmoothingType", self.smoothing),
                               ("BorderDensity", self.border_density),
                               ("EmptyImageDensity", self.empty_image_density), ("Trim", self.trim),
                               ("ConfigurationInformation", self.configuration_information),
                               ("RequestedResolutionID", self.resolution)):  # fmt: skip
            if value is not None:
                setattr(ds, keyword, value)
        if self.min_density is not None:
            ds.MinDensity = int(self.min_density)
        if self.max_density is not None:
            ds.MaxDensity = int(self.max_density)
        return ds


@dataclass
class ImageBox:
    """Image Box attributes sent with every image (PS3.4 Tables H.4-10, H.4-11); None: not sent."""

    polarity: Optional[str] = None
    magnification: Optional[str] = None
    decimate_crop: Optional[str] = None
    #: Requested Image Size, the width of the printed image in mm.
    requested_size: Optional[float] = None

    def dataset(self, position: int, image: PrintImage) -> Dataset:
        ds = Dataset()
        ds.ImageBoxPosition = position
        if self.polarity is not None:
            ds.Polarity = self.polarity
        if self.magnification is not None:
            ds.MagnificationType = self.magnification
        if self.decimate_crop is not None:
            ds.RequestedDecimateCropBehavior = self.decimate_crop
        if self.requested_size is not None:
            ds.RequestedImageSize = f"{self.requested_size:g}"
        setattr(ds, "BasicColorImageSequence" if image.is_color else "BasicGrayscaleImageSequence", [image.item()])
        return ds


@dataclass
class Response:
    """A response that was not Success, and what the job did about it."""

    operation: str
    target: str
    status: Status
    rule: Rule

    @property
    def meaning(self) -> str:
        return statuses.meaning(int(self.status))

    @property
    def comment(self) -> Optional[str]:
        return self.status.ErrorComment

    def __str__(self) -> str:
        comment = f" ({self.comment})" if self.comment else ""
        return f"{self.operation} of {self.target}: 0x{int(self.status):04X} {self.meaning}{comment}"


@dataclass
class Event:
    """An N-EVENT-REPORT the printer sent: ``kind`` "Printer" or "Print Job", ``name`` the event type's
    (NORMAL, WARNING, FAILURE; PENDING, PRINTING, DONE, FAILURE), ``info`` Printer Status Info or Execution
    Status Info."""

    kind: str
    instance_uid: str
    event_type: int
    name: str
    info: str


@dataclass
class Film:
    """One film of the job."""

    number: int
    images: list[str] = field(default_factory=list)
    film_box_uid: Optional[str] = None
    printed: bool = False
    print_job_uid: Optional[str] = None


@dataclass
class PrintReport:
    meta_sop_class: str = pc.GRAYSCALE_META
    #: What the Printer N-GET returned (None if it failed or was not asked).
    printer: Optional[Dataset] = None
    session_uid: Optional[str] = None
    films: list[Film] = field(default_factory=list)
    #: Every response that was not Success.
    responses: list[Response] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: (source, reason) of every image that could not be prepared: never sent.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Why the job failed (None: it did not).
    failed: Optional[str] = None
    #: The association's error, when it could not be made or broke.
    association_error: Optional[BaseException] = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed is None

    @property
    def warnings(self) -> list[Response]:
        return [r for r in self.responses if r.rule.behaviour in (Behaviour.WARN, Behaviour.REPORT)]

    @property
    def printed_films(self) -> list[Film]:
        return [f for f in self.films if f.printed]

    @property
    def images_printed(self) -> int:
        return sum(len(f.images) for f in self.printed_films)


class _JobFailed(Exception):
    pass


def expand(sources: Iterable[Source]) -> Iterator[Source]:
    """Files and folders (recursively, in name order) and in-memory items, in order."""
    for src in sources:
        if isinstance(src, (Dataset, PrintImage)):
            yield src
            continue
        path = Path(src)
        if path.is_dir():
            yield from sorted((p for p in path.rglob("*") if p.is_file()), key=str)
        else:
            yield path


def prepared(
    sources: Iterable[Source],
    *,
    color: bool = False,
    bits: int = 8,
    voi: Optional[Window] = None,
    skipped: Optional[Callable[[str, str], None]] = None,
) -> Iterator[PrintImage]:
    """The images to print, one per frame (:func:`.images.frames`), as they are needed; what cannot be
    printed goes to ``skipped(source, reason)``."""
    for src in expand(sources):
        if isinstance(src, PrintImage):
            yield to_color(src) if color else to_gray(src, bits)
            continue
        name = str(src) if not isinstance(src, Dataset) else None
        try:
            yield from frames(src, color=color, bits=bits, voi=voi, name=name)
        except ImageError as exc:
            if skipped is not None:
                skipped(exc.source, exc.reason)


class _Peekable:
    def __init__(self, it: Iterator[PrintImage]) -> None:
        self._it = it
        self._next: list[PrintImage] = []

    def has_more(self) -> bool:
        if not self._next:
            try:
                self._next.append(next(self._it))
            except StopIteration:
                return False
        return True

    def take(self, n: int) -> list[PrintImage]:
        out: list[PrintImage] = []
        while len(out) < n and self.has_more():
            out.append(self._next.pop())
        return out


def print_images(
    host: str,
    port: int,
    sources: Iterable[Source],
    *,
    calling_ae: str = "FERRODICOM",
    called_ae: str = "ANY-SCP",
    color: bool = False,
    bits: int = 8,
    voi: Optional[Window] = None,
    session: Optional[FilmSession] = None,
    film: Optional[FilmBox] = None,
    image: Optional[ImageBox] = None,
    presentation_lut: Optional[str] = None,
    collate: bool = False,
    check_printer: bool = True,
    delete_films: bool = True,
    product: Optional[str] = None,
    timeout: Optional[float] = 60.0,
    job_timeout: float = 10.0,
    max_pdu: Optional[int] = None,
    on_film: Optional[Callable[[Film], None]] = None,
    on_response: Optional[Callable[[Response], None]] = None,
    on_event: Optional[Callable[[Event], None]] = None,
    on_skipped: Optional[Callable[[str, str], None]] = None,
) -> PrintReport:
    """Prints ``sources`` (files, folders, pydicom Datasets, :class:`PrintImage`\\ s; every frame of a
    multi-frame image) on the printer at ``host``:``port`` (see the module documentation).

    ``color`` uses Basic Color Print Management (else Basic Grayscale, ``bits`` 8 or 12); ``voi`` (center,
    width) replaces each image's window; ``presentation_lut`` ("IDENTITY" or "LIN OD") is sent as a
    Presentation LUT; ``collate`` prints the whole film session with one N-ACTION; ``product`` ("entegra",
    "gemini-tf", "xeleris") follows that device's documented status behaviour, transfer syntaxes and
    implementation identity. ``job_timeout``: how long to wait for the printer's final Print Job events. The
    callbacks see each film once printed, each response that is not Success, each event, each image skipped."""
    if presentation_lut is not None and presentation_lut not in pc.PRESENTATION_LUT_SHAPES:
        raise ValueError(f"presentation_lut must be one of {', '.join(pc.PRESENTATION_LUT_SHAPES)}")
    job = _Job(
        host, port, calling_ae, called_ae, color, product, timeout, job_timeout, max_pdu,
        on_film, on_response, on_event, on_skipped,
    )  # fmt: skip
    images = prepared(sources, color=color, bits=bits, voi=voi, skipped=job.skip)
    return job.run(
        _Peekable(images),
        session or FilmSession(),
        film or FilmBox(),
        image or ImageBox(),
        presentation_lut,
        collate,
        check_printer,
        delete_films,
    )


def _identity(product: Optional[str]) -> dict[str, Any]:
    if product is None:
        return {}
    if product not in statuses.PRODUCTS:
        raise ValueError(f"unknown print SCU product {product!r}; known: {', '.join(statuses.PRODUCTS)}")
    from ferrodicom.profiles.catalog import system

    return dict(system(product).get("print_scu") or {})


class _Job:
    def __init__(
        self,
        host: str,
        port: int,
        calling_ae: str,
        called_ae: str,
        color: bool,
        product: Optional[str],
        timeout: Optional[float],
        job_timeout: float,
        max_pdu: Optional[int],
        on_film: Optional[Callable[[Film], None]],
        on_response: Optional[Callable[[Response], None]],
        on_event: Optional[Callable[[Event], None]],
        on_skipped: Optional[Callable[[str, str], None]],
    ) -> None:
        self.host, self.port, self.calling_ae, self.called_ae = host, port, calling_ae, called_ae
        self.product = product
        self.identity = _identity(product)
        self.timeout, self.job_timeout, self.max_pdu = timeout, job_timeout, max_pdu
        self.meta = pc.COLOR_META if color else pc.GRAYSCALE_META
        self.report = PrintReport(meta_sop_class=self.meta)
        self.on_film, self.on_response, self.on_event, self.on_skipped = on_film, on_response, on_event, on_skipped
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._printer_failure: Optional[str] = None
        self._jobs_done: dict[str, str] = {}

    # --- callbacks -------------------------------------------------------------------------------------------
    def skip(self, source: str, reason: str) -> None:
        self.report.skipped.append((source, reason))
        log.warning("skipped %s: %s", source, reason, extra={"event": "skipped", "file": source, "reason": reason})
        if self.on_skipped is not None:
            self.on_skipped(source, reason)

    def _on_report(self, event: Any) -> tuple[int, None]:
        """An N-EVENT-REPORT from the printer (PS3.4 H.4.5.2.1, H.4.6.2.1): kept, answered Success."""
        sop_class = str(event.request.AffectedSOPClassUID)
        uid = str(event.request.AffectedSOPInstanceUID)
        kind = pc.CLASS_NAMES.get(sop_class, sop_class)
        names = pc.PRINT_JOB_EVENTS if sop_class == pc.PRINT_JOB else pc.PRINTER_EVENTS
        event_type = int(event.event_type or 0)
        try:
            info_ds = event.event_information
        except Exception:
            info_ds = Dataset()
        info = str(info_ds.get("ExecutionStatusInfo" if sop_class == pc.PRINT_JOB else "PrinterStatusInfo", "") or "")
        found = Event(kind, uid, event_type, names.get(event_type, f"event type {event_type}"), info)
        with self._changed:
            self.report.events.append(found)
            if sop_class == pc.PRINTER and found.name == "FAILURE":
                self._printer_failure = info or "FAILURE"
            if sop_class == pc.PRINT_JOB and found.name in ("DONE", "FAILURE"):
                self._jobs_done[uid] = f"{found.name} {info}".strip()
            self._changed.notify_all()
        level = logging.WARNING if found.name in ("WARNING", "FAILURE") else logging.INFO
        log.log(level, "%s %s: %s %s", kind, uid, found.name, info, extra={"event": "n-event-report"})
        if self.on_event is not None:
            self.on_event(found)
        if sop_class not in (pc.PRINTER, pc.PRINT_JOB):
            return 0x0118, None
        return 0x0000, None

    # --- responses ---------------------------------------------------------------------------------------------
    def _check(self, operation: str, target: str, status: Status) -> Rule:
        rule = statuses.rule(operation, status, self.product)
        if rule.behaviour is Behaviour.CONTINUE:
            return rule
        response = Response(operation, target, status, rule)
        self.report.responses.append(response)
        fields = {"event": "response", "operation": operation, "status": int(status), "comment": response.comment,
                  "behaviour": rule.behaviour.value, "source": rule.source}  # fmt: skip
        if rule.behaviour is Behaviour.FAIL:
            log.error("%s", response, extra=fields)
        else:
            log.warning("%s", response, extra=fields)
        if self.on_response is not None and rule.behaviour is not Behaviour.WARN:
            self.on_response(response)
        if rule.behaviour is Behaviour.FAIL:
            raise _JobFailed(str(response))
        return rule

    def _printer_check(self) -> None:
        with self._lock:
            failure = self._printer_failure
        if failure is not None:
            raise _JobFailed(f"the printer reported FAILURE ({failure})")

    # --- the job -----------------------------------------------------------------------------------------------
    def _ae(self, presentation_lut: Optional[str]) -> AE:
        ae = AE(self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.connection_timeout = self.timeout
        if self.identity:
            ae.implementation_class_uid = self.identity["implementation_class_uid"]
            version = self.identity.get("implementation_version_name")
            if version is not None and len(version) > 16:
                # eNTEGRA's hcserver prints 17 characters (seed 000 L7059): more than PS3.7 D.3.3.2.2 allows
                log.info("implementation version name %r is longer than 16 characters: not sent", version)
                version = None
            ae.implementation_version_name = version
        syntaxes = self.identity.get("transfer_syntaxes") or DEFAULT_TRANSFER_SYNTAXES
        ae.add_requested_context(self.meta, syntaxes)
        if self.product is None:  # so that the printer can report each job; the seeds' SCUs propose no more
            ae.add_requested_context(pc.PRINT_JOB, syntaxes)  # than the meta SOP classes (000 L7094, 001 L1156)
        if presentation_lut is not None:
            ae.add_requested_context(pc.PRESENTATION_LUT, syntaxes)
        return ae

    def run(
        self,
        images: _Peekable,
        session: FilmSession,
        film: FilmBox,
        image: ImageBox,
        presentation_lut: Optional[str],
        collate: bool,
        check_printer: bool,
        delete_films: bool,
    ) -> PrintReport:
        started = time.monotonic()
        report = self.report
        try:
            if not images.has_more():
                report.failed = "nothing to print: no image could be read from the files given"
                return report
            ae = self._ae(presentation_lut)
            assoc = ae.associate(self.host, self.port, ae_title=self.called_ae, max_pdu=self.max_pdu,
                                 evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)])  # fmt: skip
            if not assoc.is_established:
                report.association_error = assoc.error
                report.failed = f"no association with {self.called_ae} at {self.host}:{self.port}: {assoc.error}"
                return report
            try:
                self._session(assoc, images, session, film, image, presentation_lut, collate, check_printer,
                              delete_films)  # fmt: skip
            except _JobFailed as exc:
                report.failed = str(exc)
            except (_core.DicomError, OSError) as exc:
                report.association_error = exc
                report.failed = f"the association broke during {self._doing}: {exc}"
            finally:
                if assoc.is_established:
                    try:
                        assoc.release()
                    except (_core.DicomError, OSError) as exc:
                        log.info("release: %s", exc)
            return report
        finally:
            report.elapsed = time.monotonic() - started

    _doing = "association"

    def _accepted(self, assoc: Association, abstract_syntax: str) -> bool:
        return any(c.abstract_syntax == abstract_syntax for c in assoc.accepted_contexts)

    def _session(
        self,
        assoc: Association,
        images: _Peekable,
        session: FilmSession,
        film: FilmBox,
        image: ImageBox,
        presentation_lut: Optional[str],
        collate: bool,
        check_printer: bool,
        delete_films: bool,
    ) -> None:
        report, meta = self.report, self.meta
        if not self._accepted(assoc, meta):
            names = [pc.CLASS_NAMES.get(c.abstract_syntax, c.abstract_syntax) for c in assoc.accepted_contexts]
            accepted = f"only {', '.join(names)}" if names else "none of the proposed presentation contexts"
            raise _JobFailed(f"the printer does not accept {pc.META_NAMES[meta]} ({meta}): it accepted {accepted}")
        if check_printer:
            self._printer(assoc)
        plut_uid = None
        if presentation_lut is not None:
            plut_uid = self._presentation_lut(assoc, presentation_lut)
        self._doing = "the Film Session N-CREATE"
        proposed = str(generate_uid())
        status, _attrs = assoc.send_n_create(session.dataset(), pc.FILM_SESSION, proposed, meta_uid=meta)
        self._check("film session N-CREATE", "the film session", status)
        report.session_uid = uid = str(status.AffectedSOPInstanceUID or proposed)
        pending: list[Film] = []
        while images.has_more():
            self._printer_check()
            number = len(report.films) + 1
            current = Film(number)
            report.films.append(current)
            self._film(assoc, current, images, film, image, plut_uid)
            if collate:
                pending.append(current)
                continue
            self._doing = f"the N-ACTION of film {number}"
            status, reply = assoc.send_n_action(None, pc.ACTION_PRINT, pc.FILM_BOX, current.film_box_uid or "",
                                                meta_uid=meta)  # fmt: skip
            self._check("film box N-ACTION", f"film {number}", status)
            self._printed([current], reply)
            if delete_films:
                self._doing = f"the N-DELETE of film {number}"
                status = assoc.send_n_delete(pc.FILM_BOX, current.film_box_uid or "", meta_uid=meta)
                self._check("film box N-DELETE", f"film {number}", status)
        if collate and pending:
            self._printer_check()
            self._doing = "the Film Session N-ACTION"
            status, reply = assoc.send_n_action(None, pc.ACTION_PRINT, pc.FILM_SESSION, uid, meta_uid=meta)
            self._check("film session N-ACTION", "the film session", status)
            self._printed(pending, reply)
        self._doing = "the Film Session N-DELETE"
        status = assoc.send_n_delete(pc.FILM_SESSION, uid, meta_uid=meta)
        self._check("film session N-DELETE", "the film session", status)
        self._wait_for_jobs()
        self._printer_check()  # a printer that failed during the last film may not have printed it

    def _printer(self, assoc: Association) -> None:
        self._doing = "the Printer N-GET"
        status, attrs = assoc.send_n_get(PRINTER_QUERY, pc.PRINTER, pc.PRINTER_INSTANCE, meta_uid=self.meta)
        if status.category == "Failure":
            log.info("Printer N-GET of 5 attributes: 0x%04X %s; asking for its status alone", int(status),
                     statuses.meaning(int(status)))  # fmt: skip
            status, attrs = assoc.send_n_get(PRINTER_STATUS_QUERY, pc.PRINTER, pc.PRINTER_INSTANCE, meta_uid=self.meta)
        self._check("printer N-GET", "the printer", status)
        if status.category == "Failure" or attrs is None:
            return
        self.report.printer = attrs
        printer_status = str(attrs.get("PrinterStatus", "") or "")
        info = str(attrs.get("PrinterStatusInfo", "") or "")
        log.info("printer %s: %s (%s)", attrs.get("PrinterName", self.called_ae), printer_status, info,
                 extra={"event": "printer", "printer_status": printer_status, "info": info})  # fmt: skip
        if printer_status == "FAILURE":
            raise _JobFailed(f"the printer's status is FAILURE ({info})")
        if printer_status == "WARNING":
            log.warning("the printer's status is WARNING (%s)", info)

    def _presentation_lut(self, assoc: Association, shape: str) -> Optional[str]:
        if not self._accepted(assoc, pc.PRESENTATION_LUT):
            log.warning("the printer does not accept the Presentation LUT SOP class: printing without %s", shape)
            return None
        self._doing = "the Presentation LUT N-CREATE"
        ds = Dataset()
        ds.PresentationLUTShape = shape
        uid = generate_uid()
        status, _ = assoc.send_n_create(ds, pc.PRESENTATION_LUT, uid, meta_uid=pc.PRESENTATION_LUT)
        rule = self._check("presentation LUT N-CREATE", f"Presentation LUT {shape}", status)
        if status.category == "Failure" or rule.behaviour is Behaviour.FAIL:
            return None
        return str(status.AffectedSOPInstanceUID or uid)

    def _film(
        self,
        assoc: Association,
        current: Film,
        images: _Peekable,
        film: FilmBox,
        image: ImageBox,
        plut_uid: Optional[str],
    ) -> None:
        meta, number = self.meta, current.number
        attrs = film.dataset()
        ref = Dataset()
        ref.ReferencedSOPClassUID = pc.FILM_SESSION
        ref.ReferencedSOPInstanceUID = self.report.session_uid
        attrs.ReferencedFilmSessionSequence = [ref]
        if plut_uid is not None:
            plut = Dataset()
            plut.ReferencedSOPClassUID = pc.PRESENTATION_LUT
            plut.ReferencedSOPInstanceUID = plut_uid
            attrs.ReferencedPresentationLUTSequence = [plut]
        self._doing = f"the N-CREATE of film {number}"
        uid = generate_uid()
        status, reply = assoc.send_n_create(attrs, pc.FILM_BOX, uid, meta_uid=meta)
        self._check("film box N-CREATE", f"film {number}", status)
        current.film_box_uid = str(status.AffectedSOPInstanceUID or uid)
        boxes = list((reply or Dataset()).get("ReferencedImageBoxSequence") or [])
        if not boxes:
            raise _JobFailed(
                f"film box N-CREATE of film {number}: the printer's response has no Referenced Image Box "
                "Sequence (PS3.4 H.4.2.2.1.3 requires it): nowhere to put the images"
            )
        for position, (box, img) in enumerate(zip(boxes, images.take(len(boxes))), start=1):
            target = f"film {number} image box {position} ({img.source})"
            self._doing = f"the N-SET of {target}"
            box_class = str(box.ReferencedSOPClassUID)
            status, _ = assoc.send_n_set(image.dataset(position, img), box_class, str(box.ReferencedSOPInstanceUID),
                                         meta_uid=meta)  # fmt: skip
            self._check("image box N-SET", target, status)
            current.images.append(img.source)

    def _printed(self, films: list[Film], reply: Optional[Dataset]) -> None:
        job_uid = None
        refs = (reply or Dataset()).get("ReferencedPrintJobSequencePullStoredPrint")
        if refs:
            job_uid = str(refs[0].get("ReferencedSOPInstanceUID", "")) or None
        for f in films:
            f.printed, f.print_job_uid = True, job_uid
            log.info("film %d printed: %d image(s)%s", f.number, len(f.images),
                     f", print job {job_uid}" if job_uid else "",
                     extra={"event": "film", "film": f.number, "images": len(f.images)})  # fmt: skip
            if self.on_film is not None:
                self.on_film(f)

    def _wait_for_jobs(self) -> None:
        """Waits (``job_timeout`` at most) for the Done or Failure event of every Print Job the printer
        announced (PS3.4 H.4.5.2.1.2: release only after it); a Failure fails the job."""
        jobs = {f.print_job_uid for f in self.report.films if f.print_job_uid}
        if not jobs:
            return
        self._doing = "the wait for the print jobs"
        deadline = time.monotonic() + self.job_timeout
        with self._changed:
            while not jobs <= set(self._jobs_done) and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            done = dict(self._jobs_done)
        missing = jobs - set(done)
        if missing:
            log.warning("no final event for %d print job(s) after %.0f s", len(missing), self.job_timeout)
        failed = [f"{uid}: {done[uid]}" for uid in jobs if done.get(uid, "").startswith("FAILURE")]
        if failed:
            raise _JobFailed(f"the printer reported a Print Job FAILURE ({'; '.join(failed)})")
