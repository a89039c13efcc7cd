"""Print Management service class (PS3.4 Annex H): the print SCU (:mod:`.scu`, ``ferrodicom print``), a print
SCP that renders each film to a PNG (:mod:`.scp`, ``ferrodicom print-server``), the preformatting of images
(:mod:`.images`), film geometry (:mod:`.layout`), rendering (:mod:`.render`), the SOP classes and defined
terms (:mod:`.classes`) and the statuses with the seeds' behaviours (:mod:`.statuses`)."""

from ferrodicom.services.print.classes import COLOR_META, GRAYSCALE_META, PRINTER, PRINTER_INSTANCE
from ferrodicom.services.print.images import ImageError, PrintImage, frames, window
from ferrodicom.services.print.layout import DisplayFormat, parse_display_format
from ferrodicom.services.print.scp import PrintedFilm, PrintSCP
from ferrodicom.services.print.scu import (
    Event,
    Film,
    FilmBox,
    FilmSession,
    ImageBox,
    PrintReport,
    Response,
    print_images,
)
from ferrodicom.services.print.statuses import PRINT_STATUSES, Behaviour, meaning, rule

__all__ = [
    "COLOR_META",
    "GRAYSCALE_META",
    "PRINTER",
    "PRINTER_INSTANCE",
    "PRINT_STATUSES",
    "Behaviour",
    "DisplayFormat",
    "Event",
    "Film",
    "FilmBox",
    "FilmSession",
    "ImageBox",
    "ImageError",
    "PrintImage",
    "PrintReport",
    "PrintSCP",
    "PrintedFilm",
    "Response",
    "frames",
    "meaning",
    "parse_display_format",
    "print_images",
    "rule",
    "window",
]
