"""``ferrodicom serve``: the archive node (SCP)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import click


@click.command("serve")
@click.option("--aet", default="FERRODICOM", show_default=True, help="Our AE title.")
@click.option("--port", default=11112, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any).")
@click.option("--bind", "host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--max-associations", default=64, show_default=True, type=click.IntRange(1, 10_000),
              help="Concurrent associations; beyond it requests are rejected (2/3/2).")  # fmt: skip
@click.option("--max-pdu", default=262_144, show_default=True, type=click.IntRange(0, 2**32 - 1),
              help="Largest PDU we receive (0: unlimited).")  # fmt: skip
@click.option("--require-called-aet", is_flag=True, help="Reject requests not addressed to --aet (1/1/7).")
@click.option("--verbose", "-v", is_flag=True, help="Log every association.")
@click.argument("archive_dir", type=click.Path(file_okay=False, path_type=Path))
def command(
    aet: str,
    port: int,
    host: str,
    max_associations: int,
    max_pdu: int,
    require_called_aet: bool,
    verbose: bool,
    archive_dir: Path,
) -> None:
    """Serve as a DICOM node with its archive in ARCHIVE_DIR (created if missing).

    Answers Verification (C-ECHO) in every uncompressed transfer syntax."""
    from ferrodicom import evt
    from ferrodicom.ae import AE
    from ferrodicom.uids import VERIFICATION

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    log = logging.getLogger("ferrodicom.serve")
    archive_dir.mkdir(parents=True, exist_ok=True)
    ae = AE(aet)
    ae.maximum_associations = max_associations
    ae.maximum_pdu_size = max_pdu
    ae.require_called_aet = require_called_aet
    ae.add_supported_context(VERIFICATION)

    def on_assoc(event: evt.Event) -> None:
        a = event.assoc
        log.info("%s: %s -> %s from %s", event.event.description, a.calling_ae, a.called_ae, a.peer_address)

    handlers = [(e, on_assoc) for e in (evt.EVT_ESTABLISHED, evt.EVT_RELEASED, evt.EVT_ABORTED, evt.EVT_REJECTED)]
    server = ae.start_server((host, port), block=False, evt_handlers=handlers if verbose else [])
    assert server is not None
    click.echo(f"ferrodicom serving {aet} on {server.address[0]}:{server.port}, archive {archive_dir}", err=True)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
