"""``ferrodicom echo``: Verification SCU (PS3.4 Annex A), like DCMTK's echoscu."""

from __future__ import annotations

import logging
import sys
from typing import Optional

import click

from ferrodicom.cli.errors import CommandError, explain
from ferrodicom.cli.logs import logging_options, setup
from ferrodicom.cli.scu_options import called_ae_option, calling_ae_option, max_pdu_option, timeout_option

log = logging.getLogger("ferrodicom.cli.echo")


@click.command("echo")
@calling_ae_option()
@called_ae_option()
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 1_000_000), help="C-ECHOs to send.")
@max_pdu_option()
@timeout_option(30.0)
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
