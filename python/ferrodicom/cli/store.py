"""``ferrodicom store``: Storage SCU (PS3.4 Annex B), like DCMTK's storescu."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("store")
@click.option("--aet", default="FERRODICOM", show_default=True, help="Our (calling) AE title.")
@click.option("--aec", default="ANY-SCP", show_default=True, help="The peer's (called) AE title.")
@click.option("--max-pdu", default=None, type=click.IntRange(0, 2**32 - 1), help="Max PDU we receive.")
@click.option("--timeout", default=60.0, show_default=True, type=float, help="Connect/ACSE/DIMSE timeout, seconds.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def command(
    aet: str, aec: str, max_pdu: int | None, timeout: float, progress: bool | None, host: str, port: int, paths
) -> None:
    """Send the DICOM files in PATHS (folders recursively) to HOST PORT; exit 0 when all were stored."""
    import logging

    from tqdm import tqdm

    from ferrodicom.services.storage import collect, store

    show_bar = sys.stderr.isatty() if progress is None else progress
    log = logging.getLogger("ferrodicom.store")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    items = list(collect(paths))
    total_bytes = sum(i.size for i in items)
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, disable=not show_bar, file=sys.stderr)
    done = [0]

    def on_result(r) -> None:
        done[0] += 1
        bar.update(r.item.size)
        bar.set_postfix_str(f"{done[0]}/{len(items)} instances")
        if not show_bar:
            status = f"0x{int(r.status):04X}" if r.status is not None else "not sent"
            log.info("%s %s %s", status, r.item.name, r.error or "")

    report = store(host, port, paths, calling_ae=aet, called_ae=aec, max_pdu=max_pdu, timeout=timeout,
                   progress=on_result)  # fmt: skip
    bar.close()
    for path, why in report.skipped:
        click.echo(f"skipped {path}: {why}", err=True)
    ok, bad = len(report.succeeded), len(report.failed)
    rate = f", {bar.format_dict.get('rate') or 0:.0f} B/s" if show_bar else ""
    click.echo(f"{ok} stored, {bad} failed, {len(report.skipped)} skipped, {report.associations} association(s){rate}")
    for r in report.failed[:10]:
        click.echo(f"  {r.item.name}: {r.error or r.status!r}", err=True)
    sys.exit(0 if bad == 0 and report.results else 1)
