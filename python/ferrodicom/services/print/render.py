"""What a printer would put on film, drawn with Pillow: how each image fits its image box (magnification,
decimation, cropping: the statuses of PS3.4 H.4.3.1.2.1.2) and the film as a PNG.

The preview shows a transmissive film on a light box: densities become gray levels between the film box's
Min Density (white, 255) and Max Density (black, 0); BLACK and WHITE are those two ends. Image pixels are
P-values shown as they are: an 8-bit P-value is its gray level, a 12-bit one is scaled to 0..255 (rounded);
REVERSE polarity inverts them. Each image is centred in its box; the rest of the box has the Empty Image
Density, the space around and between boxes the Border Density; Trim YES draws a black line just outside
each box.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from ferrodicom.services.print.layout import Rect

#: The operating range of the emulated printer, hundredths of optical density (PS3.3 C.13.3 Min/Max Density).
PRINTER_MIN_DENSITY = 20
PRINTER_MAX_DENSITY = 320

_RESAMPLING = {"REPLICATE": Image.Resampling.NEAREST, "NONE": Image.Resampling.NEAREST,
               "BILINEAR": Image.Resampling.BILINEAR, "CUBIC": Image.Resampling.BICUBIC}  # fmt: skip


@dataclass(frozen=True)
class Fit:
    """How an image goes into its box: its size once placed (``width`` x ``height`` pixels of the film),
    the source rectangle it is cut to (``crop``: x0, y0, x1, y1 of the image, or None for all of it), and the
    status the N-SET answers (0, B604 demagnified, B609 cropped, B60A decimated, C603 does not fit)."""

    status: int
    width: int = 0
    height: int = 0
    crop: Optional[Rect] = None


def fit(
    rows: int,
    columns: int,
    box_width: int,
    box_height: int,
    magnification: str = "REPLICATE",
    decimate_crop: Optional[str] = None,
    aspect: tuple[int, int] = (1, 1),
) -> Fit:
    """Where an image of ``rows`` x ``columns`` pixels (each ``aspect`` = vertical:horizontal) goes in a box.

    REPLICATE magnifies by the largest whole factor that fits, BILINEAR and CUBIC by the largest factor
    that fits, NONE not at all. An image larger than its box is decimated (B604; B60A when DECIMATE was
    asked for), cropped around its centre when CROP was asked for (B609), or refused (C603) when FAIL was asked
    for, or DECIMATE with magnification NONE (PS3.4 H.4.3.1.2.1.3)."""
    v, h = aspect
    width, height = float(columns), rows * v / h
    scale = min(box_width / width, box_height / height)
    if scale >= 1:
        if magnification == "NONE":
            factor = 1.0
        elif magnification == "REPLICATE":
            factor = float(math.floor(scale))
        else:
            factor = scale
        w, ht = _size(width * factor, box_width), _size(height * factor, box_height)
        return Fit(0, w, ht)
    if decimate_crop == "CROP":
        w, ht = min(round(width), box_width), min(round(height), box_height)
        cw, ch = min(columns, w), min(rows, round(ht * h / v))
        x0, y0 = (columns - cw) // 2, (rows - ch) // 2
        return Fit(0xB609, w, ht, (x0, y0, x0 + cw, y0 + ch))
    if decimate_crop == "FAIL" or magnification == "NONE":
        return Fit(0xC603)
    status = 0xB60A if decimate_crop == "DECIMATE" else 0xB604
    return Fit(status, _size(width * scale, box_width), _size(height * scale, box_height))


def _size(value: float, limit: int) -> int:
    return max(1, min(limit, math.floor(value + 1e-9)))


def density_gray(density: Optional[str], min_density: int, max_density: int, default: str) -> int:
    """The gray level (0 black .. 255 white) of a Border/Empty Image Density value."""
    value = (density or default).strip().upper()
    if value == "BLACK":
        return 0
    if value == "WHITE" or max_density <= min_density:
        return 255
    d = min(max(int(value), min_density), max_density)
    return round(255 * (max_density - d) / (max_density - min_density))


def display_values(pixels: np.ndarray, bits: int, polarity: str) -> np.ndarray:
    """P-values (or RGB) as 8-bit gray levels of the preview."""
    out = pixels if bits == 8 else np.floor(pixels.astype(np.float64) * 255 / 4095 + 0.5).astype(np.uint8)
    if polarity == "REVERSE":
        out = 255 - out
    return np.ascontiguousarray(out, dtype=np.uint8)


@dataclass
class Placement:
    """An image to draw: its display values (8-bit gray or RGB), the box, and how it fits."""

    values: np.ndarray
    box: Rect
    fit: Fit
    magnification: str = "REPLICATE"

    def rect(self) -> Rect:
        """Where the image lands on the film (centred in its box)."""
        x0, y0, x1, y1 = self.box
        left = x0 + (x1 - x0 - self.fit.width) // 2
        top = y0 + (y1 - y0 - self.fit.height) // 2
        return left, top, left + self.fit.width, top + self.fit.height


def render(
    size: tuple[int, int],
    boxes: list[Rect],
    placements: list[Placement],
    *,
    color: bool,
    border: int,
    empty: int,
    trim: bool = False,
) -> Image.Image:
    """The film: ``border`` gray everywhere, ``empty`` gray in every box, each placed image, trim lines."""
    mode = "RGB" if color else "L"

    def fill(g: int) -> object:
        return (g, g, g) if color else g

    film = Image.new(mode, size, fill(border))  # type: ignore[arg-type]
    draw = ImageDraw.Draw(film)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill(empty))  # type: ignore[arg-type]
        if trim:
            draw.rectangle((x0 - 1, y0 - 1, x1, y1), outline=fill(0))  # type: ignore[arg-type]
    for p in placements:
        values = p.values
        if p.fit.crop is not None:
            cx0, cy0, cx1, cy1 = p.fit.crop
            values = values[cy0:cy1, cx0:cx1]
        img = Image.fromarray(values, "RGB" if values.ndim == 3 else "L")
        if img.mode != mode:
            img = img.convert(mode)
        if img.size != (p.fit.width, p.fit.height):
            img = img.resize((p.fit.width, p.fit.height), _RESAMPLING.get(p.magnification, Image.Resampling.NEAREST))
        film.paste(img, p.rect()[:2])
    return film


def save_png(image: Image.Image, path: Path) -> None:
    """Writes the PNG whole or not at all (a temporary file renamed into place)."""
    tmp = path.with_name(f".{path.name}.part")
    try:
        image.save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
