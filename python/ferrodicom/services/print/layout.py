"""A film's geometry: Image Display Format (PS3.3 C.13.3), film sizes and orientation, and the rectangle of
each image box on a film of a given pixel size.

Image Display Format, as PS3.3 C.13.3 enumerates it:

``STANDARD\\C,R``
    R rows of C equal image boxes; positions numbered row by row from the upper left (1 .. C*R).
``ROW\\R1,R2,...``
    rows of equal height, the first with R1 equal boxes, the second with R2, ...; numbered row by row.
``COL\\C1,C2,...``
    columns of equal width, the first with C1 equal boxes, ...; numbered column by column, top to bottom.
``SLIDE``, ``SUPERSLIDE``
    35 mm and 40 mm slides, "configuration dependent": this implementation lays them out as STANDARD\\4,5
    and STANDARD\\4,4.
``CUSTOM\\i``
    defined in a printer's conformance statement; this implementation defines none.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Film Size ID (PS3.3 C.13.3) -> (width, height) in inches, portrait.
FILM_SIZES: dict[str, tuple[float, float]] = {
    "8INX10IN": (8.0, 10.0),
    "8_5INX11IN": (8.5, 11.0),
    "10INX12IN": (10.0, 12.0),
    "10INX14IN": (10.0, 14.0),
    "11INX14IN": (11.0, 14.0),
    "11INX17IN": (11.0, 17.0),
    "14INX14IN": (14.0, 14.0),
    "14INX17IN": (14.0, 17.0),
    "24CMX24CM": (24 / 2.54, 24 / 2.54),
    "24CMX30CM": (24 / 2.54, 30 / 2.54),
    "A4": (210 / 25.4, 297 / 25.4),
    "A3": (297 / 25.4, 420 / 25.4),
}

#: The layouts this implementation gives the "configuration dependent" formats (columns, rows).
SLIDE_LAYOUTS = {"SLIDE": (4, 5), "SUPERSLIDE": (4, 4)}

#: The largest number of boxes along one side (a sanity limit: no film holds more).
MAX_BOXES_PER_LINE = 32

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)


@dataclass(frozen=True)
class DisplayFormat:
    """A parsed Image Display Format: ``kind`` is STANDARD, ROW or COL (slides become STANDARD), ``counts``
    (C, R) for STANDARD, the boxes of each row for ROW, of each column for COL."""

    text: str
    kind: str
    counts: tuple[int, ...]

    @property
    def capacity(self) -> int:
        """The number of image boxes on one film."""
        if self.kind == "STANDARD":
            return self.counts[0] * self.counts[1]
        return sum(self.counts)

    def boxes(self, width: int, height: int, gap: int) -> list[Rect]:
        """The image boxes of a film of ``width`` x ``height`` pixels, in Image Box Position order (position 1
        first), ``gap`` pixels apart and from the film's edges; the boxes are centred on the film."""
        if self.kind == "STANDARD":
            columns, rows = self.counts
            return [r for row in _split(height, rows, gap) for r in _cells(row, _split(width, columns, gap))]
        if self.kind == "ROW":
            bands = _split(height, len(self.counts), gap)
            return [r for band, n in zip(bands, self.counts) for r in _cells(band, _split(width, n, gap))]
        bands = _split(width, len(self.counts), gap)  # COL: column by column, top to bottom
        return [(x0, y0, x1, y1) for (x0, x1), n in zip(bands, self.counts) for (y0, y1) in _split(height, n, gap)]


def _split(length: int, n: int, gap: int) -> list[tuple[int, int]]:
    """``n`` equal spans along ``length`` with ``gap`` between them and at both ends, centred."""
    size = max(1, (length - (n + 1) * gap) // n)
    start = (length - (n * size + (n - 1) * gap)) // 2
    return [(start + i * (size + gap), start + i * (size + gap) + size) for i in range(n)]


def _cells(band: tuple[int, int], spans: list[tuple[int, int]]) -> list[Rect]:
    y0, y1 = band
    return [(x0, y0, x1, y1) for x0, x1 in spans]


def parse_display_format(text: str) -> DisplayFormat:
    """The :class:`DisplayFormat` of an Image Display Format value; ValueError naming what is wrong."""
    value = text.strip()
    kind, _, rest = value.partition("\\")
    kind = kind.strip().upper()
    if kind in SLIDE_LAYOUTS and not rest:
        return DisplayFormat(value, "STANDARD", SLIDE_LAYOUTS[kind])
    if kind == "CUSTOM":
        raise ValueError(f"'{value}': CUSTOM formats are each printer's own; none defined here")
    if kind not in ("STANDARD", "ROW", "COL"):
        raise ValueError(f"'{value}': not STANDARD, ROW, COL, SLIDE or SUPERSLIDE")
    parts = rest.split(",")
    if not rest or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"'{value}': {kind} needs positive integers after the backslash")
    counts = tuple(int(p) for p in parts)
    if kind == "STANDARD" and len(counts) != 2:
        raise ValueError(f"'{value}': STANDARD takes two numbers, columns and rows (STANDARD\\C,R)")
    if any(n < 1 or n > MAX_BOXES_PER_LINE for n in counts) or len(counts) > MAX_BOXES_PER_LINE:
        raise ValueError(f"'{value}': each number must be 1 to {MAX_BOXES_PER_LINE}")
    return DisplayFormat(value, kind, counts)


def film_pixels(film_size: str, orientation: str, dpi: float) -> tuple[int, int]:
    """(width, height) in pixels of a film of ``film_size`` at ``dpi``; LANDSCAPE turns it on its side."""
    w, h = FILM_SIZES[film_size]
    if orientation == "LANDSCAPE":
        w, h = h, w
    return round(w * dpi), round(h * dpi)


def gap_pixels(dpi: float) -> int:
    """The gap between image boxes and around them: 1 mm, at least 2 pixels (room for a trim line)."""
    return max(2, round(dpi / 25.4))
