"""``ferrodicom verify ARCHIVE [--repair]``: every indexed file exists and parses; what is wrong; repairs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ferrodicom.cli.errors import expected_errors
from ferrodicom.cli.logs import logging_options, setup


@click.command("verify")
@click.option("--repair", is_flag=True,
              help="Fix what is found: files that do not parse (or hold another instance) go to .quarantine and "
              "leave the index, rows without a file are removed, files missing from the index are indexed. "
              "Needs the archive to itself: stop serve first.")  # fmt: skip
@logging_options
@click.argument("archive", type=click.Path(path_type=Path))
def command(repair: bool, archive: Path) -> None:
    """Check that every file indexed in ARCHIVE exists and parses to its end with the UIDs of its index row,
    and that every file of the archive is indexed; print one line per problem.

    Without --repair nothing is changed (it can run while serve does). Exit status: 0 nothing wrong (or all
    repaired), 1 problems found (or the archive is in use for --repair), 2 ARCHIVE is no archive."""
    setup("info")
    from ferrodicom.archive.verify import KINDS, verify
    from ferrodicom.cli.ls import open_index

    open_index(archive).close()  # exit 2 when ARCHIVE is no archive, before anything is opened for writing
    with expected_errors(archive=archive):
        report = verify(archive, repair=repair)
    if report.in_use:
        click.echo(
            "note: a running serve holds this archive: an instance being stored now may show up as not indexed",
            err=True,
        )
    for k, v in report.recovered_at_open.items():
        click.echo(f"opening the archive ran its recovery: {k.replace('_', ' ')}: {v}")
    for p in report.problems:
        action = f"  -> {p.action}" if p.action else ""
        click.echo(f"{p.kind}: {p.path}: {p.detail}{action}")
    counts = ", ".join(f"{report.count(k)} {k}" for k in KINDS if report.count(k))
    ok = report.checked - sum(report.count(k) for k in ("missing", "damaged", "mismatch"))
    click.echo(f"{report.checked} indexed files checked, {ok} ok" + (f"; {counts}" if counts else ""))
    if report.problems and not report.repaired:
        click.echo("run 'ferrodicom verify --repair ARCHIVE' (with serve stopped) to fix them", err=True)
        sys.exit(1)
