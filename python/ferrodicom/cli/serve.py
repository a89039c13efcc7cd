"""``ferrodicom serve``: the archive node — Verification and Storage SCP into an indexed archive."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import click

from ferrodicom.cli.logs import logging_options, setup
from ferrodicom.uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    UNCOMPRESSED,
)

#: ``--storage-syntax`` short names.
SYNTAXES = {"ile": IMPLICIT_VR_LE, "ele": EXPLICIT_VR_LE, "ebe": EXPLICIT_VR_BE, "deflated": DEFLATED_EXPLICIT_VR_LE}


def _storage_syntax(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--storage-syntax``: a short name or the UID of an uncompressed transfer syntax."""
    if value is None:
        return None
    uid = SYNTAXES.get(value.lower(), value)
    if uid not in UNCOMPRESSED:
        names = ", ".join(f"{k} ({v})" for k, v in SYNTAXES.items())
        raise click.BadParameter(f"{value!r} is not an uncompressed transfer syntax; use one of {names}")
    return uid


@click.command("serve")
@click.option("--aet", default="FERRODICOM", show_default=True, help="Our AE title.")
@click.option("--port", default=11112, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any).")
@click.option("--bind", "host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--storage-syntax", default=None, callback=_storage_syntax,
              help="Store uncompressed data sets in this transfer syntax (UID, or ile/ele/ebe/deflated); "
              "compressed ones are stored as received.")  # fmt: skip
@click.option("--durability", type=click.Choice(["full", "none"]), default="full", show_default=True,
              help="full: answer Success only once file, directory entry and index row are on disk (fsync). "
              "none: leave flushing to the operating system, as DCMTK's storescp does.")  # fmt: skip
@click.option("--duplicates", type=click.Choice(["keep-first", "replace", "reject"]), default="keep-first",
              show_default=True, help="What to do with a SOP Instance UID already in the archive.")  # fmt: skip
@click.option("--max-associations", default=64, show_default=True, type=click.IntRange(1, 10_000),
              help="Concurrent associations; beyond it requests are rejected (2/3/2).")  # fmt: skip
@click.option("--max-pdu", default=262_144, show_default=True, type=click.IntRange(0, 2**32 - 1),
              help="Largest PDU we receive (0: unlimited).")  # fmt: skip
@click.option("--network-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Abort an association that sends nothing for this long, between messages or inside a data "
              "set (seconds; 0: never, as DCMTK's storescp).")  # fmt: skip
@click.option("--require-called-aet", is_flag=True, help="Reject requests not addressed to --aet (1/1/7).")
@logging_options
@click.argument("archive_dir", type=click.Path(file_okay=False, path_type=Path))
def command(
    aet: str,
    port: int,
    host: str,
    storage_syntax: str | None,
    durability: str,
    duplicates: str,
    max_associations: int,
    max_pdu: int,
    network_timeout: float,
    require_called_aet: bool,
    archive_dir: Path,
) -> None:
    """Serve as a DICOM node storing into ARCHIVE_DIR (a folder plus a SQLite index; created if missing).

    Answers Verification, and Storage for every standard storage SOP class and the seeds' private ones,
    in the uncompressed and the seeds' compressed transfer syntaxes."""
    from ferrodicom import evt
    from ferrodicom.ae import AE
    from ferrodicom.archive import Archive
    from ferrodicom.services.storage import StorageSCP
    from ferrodicom.uids import VERIFICATION

    verbose = setup("warning", timestamps=True) <= logging.INFO  # -v: log every association and instance
    log = logging.getLogger("ferrodicom.serve")
    archive = Archive(archive_dir, durability=durability, duplicates=duplicates)
    if archive.journal is not None and not archive.journal.wait_ready(60.0):
        log.warning("journal not ready: instances are fsynced one by one until it is")
    if durability == "none":
        log.warning("--durability none: flushing to disk is left to the operating system (as DCMTK's storescp)")
    ae = AE(aet)
    ae.maximum_associations = max_associations
    ae.maximum_pdu_size = max_pdu
    ae.require_called_aet = require_called_aet
    ae.network_timeout = network_timeout or None
    ae.add_supported_context(VERIFICATION)

    def on_assoc(event: evt.Event) -> None:
        a = event.assoc
        log.info("%s: %s -> %s from %s", event.event.description, a.calling_ae, a.called_ae, a.peer_address)

    def on_stored(inst, status: int) -> None:
        log.info("stored %s from %s: 0x%04X", inst.sop_instance_uid, inst.calling_ae, status)

    handlers = [(e, on_assoc) for e in (evt.EVT_ESTABLISHED, evt.EVT_RELEASED, evt.EVT_ABORTED, evt.EVT_REJECTED)]
    ae.add_service(StorageSCP(archive, on_stored if verbose else None, store_transfer_syntax=storage_syntax))
    server = ae.start_server((host, port), block=False, evt_handlers=handlers if verbose else [])
    assert server is not None
    click.echo(
        f"ferrodicom serving {aet} on {server.address[0]}:{server.port}, archive {archive_dir} "
        f"({archive.count()} instances, durability {durability})",
        err=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        archive.close()
