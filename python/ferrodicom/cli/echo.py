"""``ferrodicom echo``: Verification SCU (PS3.4 Annex A), like DCMTK's echoscu."""

from __future__ import annotations

import logging
import sys
from typing import Optional

import click

from ferrodicom.cli.errors import AE_TITLE, CommandError, explain
from ferrodicom.cli.logs import logging_options, setup

log = logging.getLogger("ferrodicom.cli.echo")


@click.command("echo")
@click.option("--aet", default="FERRODICOM", show_default=True, type=AE_TITLE, help="Our (calling) AE title.")
@click.option("--aec", default="ANY-SCP", show_default=True, type=AE_TITLE, help="The peer's (called) AE title.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 1_000_000), help="C-ECHOs to send.")
@click.option("--max-pdu", default=None, type=click.IntRange(0, 2**32 - 1), help="Max PDU we receive (0: unlimited).")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Connect/ACSE/DIMSE timeout, seconds.")  # fmt: skip
@logging_options
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
def command(aet: str, aec: str, repeat: int, max_pdu: Optional[int], timeout: float, host: str, port: int) -> None:
    """Send C-ECHO to HOST PORT; exit status 0 when every echo succeeded, 1 otherwise, 2 bad arguments."""
    setup("info")
    from ferrodicom._core import DicomError
    from ferrodicom.services.verification import echo

    peer = f"{aec} at {host}:{port}"
    try:
        assoc, statuses = echo(
            host, port, calling_ae=aet, called_ae=aec, repeat=repeat, max_pdu=max_pdu, timeout=timeout
        )
    except (DicomError, OSError) as exc:  # the association broke during the echoes
        raise explain(exc, peer=peer) or CommandError(f"C-ECHO to {peer} failed: {exc}", "see the peer's log") from exc
    if assoc.error is not None or assoc.acceptor is None:
        err = explain(assoc.error, peer=peer) if isinstance(assoc.error, Exception) else None
        raise err or CommandError(f"association with {peer} failed: {assoc.error}", "check the peer and its log")
    failed = [s for s in statuses if not s.is_success]
    for s in statuses[:1] + failed[:5]:
        click.echo(f"C-ECHO status 0x{int(s):04X} ({s.meaning})")
    if len(statuses) > 1:
        click.echo(f"{len(statuses)} C-ECHO sent, {len(statuses) - len(failed)} succeeded")
    sys.exit(1 if failed or len(statuses) != repeat else 0)
