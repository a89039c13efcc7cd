"""``ferrodicom ls ARCHIVE``: what the archive holds, from its index (no network, read-only: works while
``serve`` runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ferrodicom.cli.errors import BadArgument, CommandError, expected_errors
from ferrodicom.cli.logs import logging_options, setup

#: The columns shown per level (``--json`` gives every attribute).
COLUMNS = {
    "patient": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "studies", "series", "instances"),
    "study": (
        "StudyDate",
        "PatientID",
        "PatientName",
        "AccessionNumber",
        "StudyDescription",
        "modalities",
        "series",
        "instances",
        "StudyInstanceUID",
    ),
    "series": ("Modality", "SeriesNumber", "SeriesDescription", "PatientID", "instances", "SeriesInstanceUID"),
    "instance": ("Modality", "InstanceNumber", "SOPClassUID", "size", "path", "SOPInstanceUID"),
}
_MAX_WIDTH = 40


def table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[str]:
    """Aligned text columns, header first; values past 40 characters are cut, except UIDs and paths."""

    def cell(v: Any, column: str) -> str:
        text = "" if v is None else str(v)
        if len(text) <= _MAX_WIDTH or column.endswith("UID") or column == "path":  # kept whole: to copy
            return text
        return text[: _MAX_WIDTH - 1] + "~"

    cells = [[cell(r.get(c), c) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[k]) for row in cells]) for k, c in enumerate(columns)]
    out = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return out


@click.command("ls")
@click.option(
    "-k",
    "--key",
    "keys",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only what has an instance matching: a DICOM keyword of the index (any level), or path, "
    "calling_ae, ...; VALUE may use * and ?, a UID key takes a list (UID1\\UID2), an empty VALUE matches a "
    "missing one. Repeatable.",
)
@click.option(
    "--level",
    type=click.Choice(["patient", "study", "series", "instance"]),
    default="study",
    show_default=True,
    help="What one line is.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="A JSON array of objects, every indexed attribute and the counts."
)
@logging_options
@click.argument("archive", type=click.Path(path_type=Path))
def command(keys: tuple[str, ...], level: str, as_json: bool, archive: Path) -> None:
    """List the patients, studies, series or instances in ARCHIVE (the folder given to serve).

    Reads the index only (no network, nothing changed): works while serve runs. Exit status: 0 (also when
    nothing matches), 1 the index cannot be read, 2 bad arguments (ARCHIVE is no archive, a bad -k)."""
    setup("info")
    from ferrodicom.archive.inspect import parse_filters

    try:
        filters = parse_filters(list(keys))
    except ValueError as exc:
        raise BadArgument(f"-k {exc}", "see 'ferrodicom ls --help'") from exc
    reader = open_index(archive)
    with reader, expected_errors(archive=archive):
        rows = reader.query(level, filters)
    if as_json:
        click.echo(json.dumps(rows, indent=1, ensure_ascii=False))
        return
    if rows:
        click.echo("\n".join(table(rows, COLUMNS[level])))
    click.echo(f"{len(rows)} {level if len(rows) == 1 else _plural(level)}", err=True)


def _plural(level: str) -> str:
    return {"study": "studies", "series": "series"}.get(level, level + "s")


def open_index(archive: Path) -> Any:
    """A read-only :class:`~ferrodicom.archive.inspect.IndexReader`: an ARCHIVE that is no archive is a bad
    argument (exit 2), an index that cannot be read a failure (exit 1)."""
    from ferrodicom.archive.core import ArchiveError
    from ferrodicom.archive.inspect import IndexReader

    try:
        return IndexReader(archive)
    except ArchiveError as exc:
        if str(exc).startswith("no archive"):
            raise BadArgument(str(exc), "give the folder that ferrodicom serve stores into") from exc
        raise CommandError(str(exc), "check the archive with ferrodicom verify") from exc
