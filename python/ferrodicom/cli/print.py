"""``ferrodicom print``: Print SCU (PS3.4 Annex H), Basic Grayscale or Basic Color Print Management.

Lays the images of FILE... (files or folders; every frame of a multi-frame image, e.g. an NM acquisition) out
over as many films as needed in ``--format`` and prints them on one association. One line per film on
stdout, then a summary; each warning the printer answers is logged with its meaning (and what the job did
about it: the standard's categories, or with ``--product`` that device's documented behaviour). Files that
cannot be printed are named with the reason and skipped.

Exit status: 0 every film printed (warnings included), 1 the job failed or nothing could be printed, 2 bad
arguments.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import click

from ferrodicom.cli.errors import BadArgument, CommandError, expected_errors, explain
from ferrodicom.cli.logs import logging_options, setup
from ferrodicom.cli.scu_options import called_ae_option, calling_ae_option, timeout_option
from ferrodicom.services.print.classes import (
    MAGNIFICATION_TYPES,
    ORIENTATIONS,
    POLARITIES,
    PRESENTATION_LUT_SHAPES,
    PRINT_PRIORITIES,
)
from ferrodicom.services.print.statuses import PRODUCTS

log = logging.getLogger("ferrodicom.cli.print")


def _window(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[tuple[float, float]]:
    """``--window CENTER,WIDTH``."""
    if value is None:
        return None
    try:
        center, width = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give CENTER,WIDTH, e.g. 40,400") from None
    if width < 1:
        raise click.BadParameter(f"{value!r}: the width must be 1 or more")
    return center, width


def _display_format(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--format``: STANDARD/ROW/COL must be well formed; SLIDE, SUPERSLIDE and CUSTOM\\i are the printer's."""
    from ferrodicom.services.print.layout import parse_display_format

    kind, _, rest = value.partition("\\")
    if kind.upper() == "CUSTOM" and rest.isdigit():
        return value
    try:
        parse_display_format(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.command("print")
@calling_ae_option()
@called_ae_option("printer")
@click.option("--color", is_flag=True, help="Basic Color Print Management, RGB images (default: Basic Grayscale).")
@click.option("--format", "display_format", default="STANDARD\\1,1", show_default=True, callback=_display_format,
              help="Image Display Format: STANDARD\\C,R (C columns, R rows), ROW\\R1,R2.., COL\\C1,C2.., SLIDE, "
              "SUPERSLIDE, CUSTOM\\i.")  # fmt: skip
@click.option("--copies", default=1, show_default=True, type=click.IntRange(1, 99), help="Number of Copies.")
@click.option("--medium", default=None, help="Medium Type: PAPER, CLEAR FILM, BLUE FILM... (default: the printer's).")
@click.option("--film-size", default=None,
              help="Film Size ID: 8INX10IN, 10INX12IN, 10INX14IN, 11INX14IN, 14INX14IN, 14INX17IN, 24CMX24CM, "
              "24CMX30CM, A4, A3... (default: the printer's).")  # fmt: skip
@click.option("--orientation", type=click.Choice(ORIENTATIONS), default=None, help="Film Orientation.")
@click.option("--priority", type=click.Choice(PRINT_PRIORITIES), default=None, help="Print Priority.")
@click.option("--destination", default=None, help="Film Destination: MAGAZINE, PROCESSOR, BIN_i.")
@click.option("--label", default=None, help="Film Session Label.")
@click.option("--magnification", type=click.Choice(MAGNIFICATION_TYPES), default=None, help="Magnification Type.")
@click.option("--border-density", default=None, help="Border Density: BLACK, WHITE or hundredths of OD.")
@click.option("--empty-density", default=None, help="Empty Image Density: BLACK, WHITE or hundredths of OD.")
@click.option("--min-density", type=click.IntRange(0, 10_000), default=None, help="Min Density, hundredths of OD.")
@click.option("--max-density", type=click.IntRange(0, 10_000), default=None, help="Max Density, hundredths of OD.")
@click.option("--trim/--no-trim", default=None, help="Trim: a box around each image (default: the printer's).")
@click.option("--config-info", default=None, help="Configuration Information (printer specific).")
@click.option("--polarity", type=click.Choice(POLARITIES), default=None, help="Polarity of every image.")
@click.option("--bits", type=click.Choice(["8", "12"]), default="8", show_default=True,
              help="Bits per grayscale P-value (12: in 16 bits allocated).")  # fmt: skip
@click.option("--window", "voi", callback=_window, default=None, metavar="CENTER,WIDTH",
              help="VOI window for every image (default: each image's own, else its full range).")  # fmt: skip
@click.option("--presentation-lut", type=click.Choice(PRESENTATION_LUT_SHAPES), default=None,
              help="Send a Presentation LUT of this shape (if the printer supports the class).")  # fmt: skip
@click.option(
    "--collate",
    is_flag=True,
    help="Create every film first and print the film session with one N-ACTION (collated copies).",
)
@click.option(
    "--product",
    type=click.Choice(PRODUCTS),
    default=None,
    help="Behave as this device's print SCU documents: status handling, transfer syntaxes, identity.",
)
@timeout_option()
@click.option("--dry-run", is_flag=True, help="Show how the images would be laid out on films; send nothing.")
@logging_options
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def command(host: str, port: int, files: tuple[Path, ...], **opts: Any) -> None:
    """Print the images in FILES (folders recursively; every frame of a multi-frame) on the printer at HOST
    PORT, over as many films as --format needs.

    Exit status: 0 every film printed (with or without warnings), 1 the job failed, 2 bad arguments."""
    setup("info")
    from ferrodicom.services.print import scu

    bits = int(opts["bits"])
    if opts["color"] and bits != 8:
        raise BadArgument("--bits 12 is for grayscale", "drop --bits, or --color")
    session = scu.FilmSession(copies=opts["copies"], priority=opts["priority"], medium=opts["medium"],
                              destination=opts["destination"], label=opts["label"])  # fmt: skip
    trim = None if opts["trim"] is None else ("YES" if opts["trim"] else "NO")
    film = scu.FilmBox(
        display_format=opts["display_format"],
        orientation=opts["orientation"],
        film_size=opts["film_size"],
        magnification=opts["magnification"],
        border_density=opts["border_density"],
        empty_image_density=opts["empty_density"],
        min_density=opts["min_density"],
        max_density=opts["max_density"],
        trim=trim,
        configuration_information=opts["config_info"],
    )
    image = scu.ImageBox(polarity=opts["polarity"])
    if opts["dry_run"]:
        _dry_run(files, film.display_format, opts["color"], bits, opts["voi"])
        return
    peer = f"{opts['aec']} at {host}:{port}"

    def on_film(f: scu.Film) -> None:
        click.echo(f"film {f.number}: {len(f.images)} image(s) printed")

    with expected_errors(peer=peer):
        report = scu.print_images(
            host, port, files, calling_ae=opts["aet"], called_ae=opts["aec"], color=opts["color"], bits=bits,
            voi=opts["voi"], session=session, film=film, image=image, presentation_lut=opts["presentation_lut"],
            collate=opts["collate"], product=opts["product"], timeout=opts["timeout"], on_film=on_film,
        )  # fmt: skip
    warned = f", {len(report.warnings)} warning(s)" if report.warnings else ""
    click.echo(
        f"{len(report.printed_films)} film(s) printed ({report.images_printed} image(s)){warned}, "
        f"{len(report.skipped)} file(s) skipped"
    )
    if report.failed is None:
        return
    if report.association_error is not None:
        err = explain(report.association_error, peer=peer)
        if err is not None:
            raise err
    if not report.films and report.session_uid is None and report.association_error is None:
        if report.failed.startswith("nothing to print"):
            raise CommandError(report.failed, "see the skipped files above")
    raise CommandError(f"print job failed: {report.failed}", "see the printer's status and its conformance statement")


def _dry_run(files: tuple[Path, ...], display_format: str, color: bool, bits: int, voi: Any) -> None:
    from ferrodicom.services.print.layout import parse_display_format
    from ferrodicom.services.print.scu import prepared

    try:
        capacity: Optional[int] = parse_display_format(display_format).capacity
    except ValueError:
        capacity = None  # CUSTOM\i: the printer's

    def skipped(name: str, why: str) -> None:
        click.echo(f"skip {name}: {why}")

    count = 0
    for img in prepared(files, color=color, bits=bits, voi=voi, skipped=skipped):
        count += 1
        where = f"film {(count - 1) // capacity + 1} box {(count - 1) % capacity + 1}" if capacity else f"image {count}"
        kind = "RGB" if img.is_color else f"{img.bits}-bit"
        click.echo(f"{where}: {img.source} ({img.columns}x{img.rows} {kind})")
    films = f"{-(-count // capacity)} film(s) of {capacity}" if capacity else "films as the printer lays them out"
    click.echo(f"{count} image(s) on {films} ({display_format})")
