"""``ferrodicom stats ARCHIVE``: counts, bytes, oldest/newest and the split by modality, from the index."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Optional

import click

from ferrodicom.cli.errors import expected_errors
from ferrodicom.cli.logs import logging_options, setup


def human_bytes(n: int) -> str:
    """``12.3 MB`` (decimal units)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def _when(ts: Optional[float]) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _date(d: Optional[str]) -> str:
    if not d:
        return "-"
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (times as seconds since the epoch).")
@logging_options
@click.argument("archive", type=click.Path(path_type=Path))
def command(as_json: bool, archive: Path) -> None:
    """Counts (patients, studies, series, instances), bytes, oldest and newest (received, study date), and
    the same by modality and SOP class, for ARCHIVE.

    Reads the index only (nothing changed): works while serve runs. Exit status: 0, 1 the index cannot be
    read, 2 ARCHIVE is no archive."""
    setup("info")
    from ferrodicom.cli.ls import open_index

    reader = open_index(archive)
    with reader, expected_errors(archive=archive):
        s = reader.stats()
    if as_json:
        click.echo(json.dumps(s, indent=1, ensure_ascii=False))
        return
    lines = [
        f"archive     {s['archive']}",
        f"patients    {s['patients']}",
        f"studies     {s['studies']}",
        f"series      {s['series']}",
        f"instances   {s['instances']}",
        f"bytes       {s['bytes']} ({human_bytes(s['bytes'])})",
        f"received    {_when(s['oldest_received'])} .. {_when(s['newest_received'])}",
        f"study date  {_date(s['oldest_study_date'])} .. {_date(s['newest_study_date'])}",
    ]
    if s["by_modality"]:
        lines += ["", "by modality"] + _split(s["by_modality"], "modality")
    if s["by_sop_class"]:
        from pydicom.uid import UID

        rows = [{**r, "sop_class": UID(r["sop_class_uid"]).name} for r in s["by_sop_class"]]
        lines += ["", "by SOP class"] + _split(rows, "sop_class")
    click.echo("\n".join(lines))


def _split(rows: list[dict[str, Any]], key: str) -> list[str]:
    from ferrodicom.cli.ls import table

    shown = [
        {key: r[key] or "(none)", "instances": r["instances"], "series": r["series"], "studies": r["studies"],
         "bytes": human_bytes(r["bytes"]), "newest received": _when(r["newest_received"])}
        for r in rows
    ]  # fmt: skip
    return ["  " + line for line in table(shown, (key, "studies", "series", "instances", "bytes", "newest received"))]
