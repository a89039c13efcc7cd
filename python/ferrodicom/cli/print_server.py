"""``ferrodicom print-server``: a print SCP for tests and previews (PS3.4 Annex H) that renders each film to
``OUTPUT_DIR/<film session UID>-<film number>.png`` with a JSON sidecar of its attributes (see
:mod:`ferrodicom.services.print.scp`). Verification is answered too. One line per film on stdout."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from ferrodicom.cli.errors import AE_TITLE, CommandError, expected_errors, writable_dir
from ferrodicom.cli.logs import logging_options, setup


@click.command("print-server")
@click.option("--aet", default="FERRODICOM", show_default=True, type=AE_TITLE, help="Our AE title.")
@click.option("--port", default=11112, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any).")
@click.option("--bind", "host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--dpi", default=150.0, show_default=True, type=click.FloatRange(10, 1200),
              help="Resolution of the films drawn (a 14INX17IN film is 2100x2550 pixels at 150).")  # fmt: skip
@click.option(
    "--collate",
    is_flag=True,
    help="Accept several unprinted film boxes for a Film Session N-ACTION (default: C616, one at a time).",
)
@logging_options
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
def command(aet: str, port: int, host: str, dpi: float, collate: bool, output_dir: Path) -> None:
    """Act as a printer: Basic Grayscale and Basic Color Print Management, Printer and Print Job SOP classes;
    each printed film becomes a PNG (and a JSON sidecar) in OUTPUT_DIR (created if missing)."""
    setup("warning", timestamps=True)
    writable_dir(output_dir, "output folder")
    from ferrodicom.ae import AE
    from ferrodicom.cli.serve import _check_port_free
    from ferrodicom.services.print.scp import PrintedFilm, PrintSCP
    from ferrodicom.uids import VERIFICATION

    def on_film(film: PrintedFilm) -> None:
        click.echo(f"film {film.number} of session {film.session_uid} from {film.calling_ae}: {film.png}")

    with expected_errors(host=host, port=port):
        _check_port_free(host, port)
        scp = PrintSCP(output_dir, dpi=dpi, collation=collate, printer_name=aet, on_film=on_film)
        ae = AE(aet)
        ae.add_supported_context(VERIFICATION)
        ae.add_service(scp)
        server = ae.start_server((host, port), block=False)
    if server is None:  # pragma: no cover - block=False always returns the server
        raise CommandError("the server did not start")
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    click.echo(f"ferrodicom print-server {aet} on {server.address[0]}:{server.port}, films to {output_dir} "
               f"({dpi:g} dpi{', collation' if collate else ''})", err=True)  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
