"""``ferrodicom serve``: the archive node — Verification and Storage SCP into an indexed archive, configured by
options, a TOML file (``--config``, see :mod:`ferrodicom.config`) or both (options win)."""

from __future__ import annotations

import errno
import logging
import signal
import socket
from pathlib import Path
from typing import Any, Optional

import click
from click.core import ParameterSource

from ferrodicom.cli.errors import AE_TITLE, BadArgument, CommandError, expected_errors, writable_dir
from ferrodicom.cli.logs import logging_options, setup
from ferrodicom.config import (
    COMMIT_DELIVERIES,
    DUPLICATES,
    DURABILITIES,
    PN_MATCHING,
    NodeConfig,
    PeerConfig,
    load,
    parse_peer,
    storage_syntax,
)


def _storage_syntax(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """``--storage-syntax``: a short name or the UID of an uncompressed transfer syntax."""
    if value is None:
        return None
    try:
        return storage_syntax(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _peers(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[PeerConfig]:
    """``--peer AET=HOST:PORT``, repeatable."""
    try:
        return [parse_peer(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


#: Options that a configuration file may also set, by their ``NodeConfig`` field.
OVERRIDABLE = ("ae_title", "port", "bind", "storage_syntax", "durability", "duplicates", "max_associations",
               "max_pdu", "network_timeout", "require_called_aet", "metrics_port", "stats_interval",
               "commit_delivery", "commit_wait", "commit_retries", "commit_retry_interval",
               "max_results", "pn_matching", "relational")  # fmt: skip


def _settings(ctx: click.Context, config_path: Optional[Path], archive_dir: Optional[Path], peers: list) -> NodeConfig:
    """The file's settings (if any), overridden by the options given on the command line."""
    try:
        cfg = load(config_path) if config_path is not None else NodeConfig()
    except Exception as exc:
        if type(exc).__name__ == "ConfigError":
            raise BadArgument(f"invalid configuration: {exc}", "fix the configuration file") from None
        raise
    for name in OVERRIDABLE:
        param = "host" if name == "bind" else ("aet" if name == "ae_title" else name)
        if config_path is None or ctx.get_parameter_source(param) == ParameterSource.COMMANDLINE:
            setattr(cfg, name, ctx.params[param])
    if archive_dir is not None:
        cfg.archive = archive_dir
    if cfg.archive is None:
        raise BadArgument("no archive folder", 'give ARCHIVE_DIR, or archive = "..." in [node] of --config')
    by_title = {p.ae_title: p for p in cfg.peers}
    for p in peers:  # --peer wins on the address; the file's commit_delivery for that peer stays
        known = by_title.get(p.ae_title)
        by_title[p.ae_title] = PeerConfig(p.ae_title, p.host, p.port, known.commit_delivery if known else None)
    cfg.peers = list(by_title.values())
    return cfg


def _check_port_free(host: str, port: int) -> None:
    """Fails before anything is created on disk when the address is taken (the server binds it for good later)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
            raise


@click.command("serve")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read settings ([node]) and peers ([[peers]]) from this TOML file; options given here win.",
)
@click.option("--aet", type=AE_TITLE, default="FERRODICOM", show_default=True, help="Our AE title.")
@click.option("--port", default=11112, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any).")
@click.option("--bind", "host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    callback=_peers,
    metavar="AET=HOST:PORT",
    help="Add a peer to the address book (C-MOVE destinations, reports); repeatable.",
)
@click.option(
    "--storage-syntax",
    default=None,
    callback=_storage_syntax,
    help="Store uncompressed data sets in this transfer syntax (UID, or ile/ele/ebe/deflated); "
    "compressed ones are stored as received.",
)
@click.option(
    "--durability",
    type=click.Choice(DURABILITIES),
    default="full",
    show_default=True,
    help="full: answer Success only once file, directory entry and index row are on disk (fsync). "
    "none: leave flushing to the operating system, as DCMTK's storescp does.",
)
@click.option(
    "--duplicates",
    type=click.Choice(DUPLICATES),
    default="keep-first",
    show_default=True,
    help="What to do with a SOP Instance UID already in the archive.",
)
@click.option(
    "--max-associations",
    default=64,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Concurrent associations; beyond it requests are rejected (2/3/2).",
)
@click.option(
    "--max-pdu",
    default=262_144,
    show_default=True,
    type=click.IntRange(0, 2**32 - 1),
    help="Largest PDU we receive (0: unlimited).",
)
@click.option(
    "--network-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Abort an association that sends nothing for this long, between messages or inside a data "
    "set (seconds; 0: never, as DCMTK's storescp).",
)
@click.option("--require-called-aet", is_flag=True, help="Reject requests not addressed to --aet (1/1/7).")
@click.option(
    "--metrics-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics on this port (/metrics; 0: off).",
)
@click.option(
    "--stats-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Log a line of rates (instances/s, MB/s, open associations) every this many seconds at "
    "info level (-v; 0: never).",
)
@click.option(
    "--commit-delivery",
    type=click.Choice(COMMIT_DELIVERIES),
    default="same",
    show_default=True,
    help="Storage Commitment reports: same: on the requesting association while it is open, else on a new "
    "one to the requestor (found by AE title in the peers); new: always on a new association.",
)
@click.option(
    "--commit-wait",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds a Storage Commitment request waits for instances not yet received before reporting "
    "them failed (0: report at once).",
)
@click.option(
    "--commit-retries",
    default=10,
    show_default=True,
    type=click.IntRange(0, 10_000),
    help="Further attempts to open an association for a report that could not be delivered (0: give up).",
)
@click.option(
    "--commit-retry-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between those attempts.",
)
@click.option(
    "--max-results",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Matches one C-FIND returns at most; a query with more ends with A700 (Refused: out of resources) "
    "after them, and a warning in the log (0: no limit).",
)
@click.option(
    "--pn-matching",
    type=click.Choice(PN_MATCHING),
    default="insensitive",
    show_default=True,
    help="Person names (PN) in C-FIND: insensitive to case and accents ('muller*' finds Müller), or exact "
    "(case-sensitive, as every other VR).",
)
@click.option(
    "--relational/--no-relational",
    default=True,
    show_default=True,
    help="Accept relational queries and retrieves from requestors that ask for them (SOP Class Extended "
    "Negotiation); otherwise hierarchical only.",
)
@logging_options
@click.argument("archive_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def command(ctx: click.Context, config_path: Optional[Path], peers: list, archive_dir: Optional[Path],
            **_options: Any) -> None:  # fmt: skip
    """Serve as a DICOM node storing into ARCHIVE_DIR (a folder plus a SQLite index; created if missing).

    Answers Verification, Storage for every standard storage SOP class and the seeds' private ones (in the
    uncompressed and the seeds' compressed transfer syntaxes), Storage Commitment (reports on the requesting
    association or a new one; requests survive a restart) and Query/Retrieve (Patient and Study Root FIND,
    MOVE and GET) over the archive; C-MOVE destinations come from the peers. ARCHIVE_DIR may come from
    --config."""
    verbose = setup("warning", timestamps=True) <= logging.INFO  # -v: log every association and instance
    cfg = _settings(ctx, config_path, archive_dir, peers)
    assert cfg.archive is not None  # _settings refuses a configuration without one
    writable_dir(cfg.archive, "archive folder")
    with expected_errors(host=cfg.bind, port=cfg.port, archive=cfg.archive):
        _check_port_free(cfg.bind, cfg.port)
        if cfg.metrics_port:
            _check_port_free(cfg.bind, cfg.metrics_port)
        _serve(cfg, verbose)


def _serve(cfg: NodeConfig, verbose: bool) -> None:
    from ferrodicom import evt
    from ferrodicom.ae import AE
    from ferrodicom.archive import Archive
    from ferrodicom.services.commitment import CommitmentSCP
    from ferrodicom.services.qr import QRSettings, QueryRetrieveSCP
    from ferrodicom.services.storage import StorageSCP
    from ferrodicom.uids import VERIFICATION

    log = logging.getLogger("ferrodicom.serve")
    ae = AE(cfg.ae_title)
    ae.maximum_associations = cfg.max_associations
    ae.maximum_pdu_size = cfg.max_pdu
    ae.require_called_aet = cfg.require_called_aet
    ae.network_timeout = cfg.network_timeout or None
    ae.add_supported_context(VERIFICATION)
    for p in cfg.peers:
        ae.add_peer(p.ae_title, p.host, p.port)
    assert cfg.archive is not None
    archive = Archive(cfg.archive, durability=cfg.durability, duplicates=cfg.duplicates, index_keys=cfg.index_keys)
    commitment: Optional[CommitmentSCP] = None
    try:
        if archive.journal is not None and not archive.journal.wait_ready(60.0):
            log.warning("journal not ready: instances are fsynced one by one until it is")
        if archive.journal is not None and archive.journal.ready and not archive.journal.writes_direct:
            log.info("journal written through the page cache (no direct I/O or io_uring here)")
        if cfg.durability == "none":
            log.warning("durability none: flushing to disk is left to the operating system (as DCMTK's storescp)")

        def on_assoc(event: evt.Event) -> None:
            a = event.assoc
            if a is None:  # rejected: logged by the server itself
                return
            log.info("%s: %s -> %s from %s", event.event.description, a.requestor.ae_title, a.acceptor.ae_title,
                     a.requestor.address)  # fmt: skip

        commitment = scp = CommitmentSCP(
            archive,
            ae,
            delivery=cfg.commit_delivery,
            delivery_by_peer={p.ae_title: p.commit_delivery for p in cfg.peers if p.commit_delivery},
            wait=cfg.commit_wait,
            retries=cfg.commit_retries,
            retry_interval=cfg.commit_retry_interval,
        )

        def on_stored(inst: Any, status: int) -> None:
            scp.on_stored(inst, status)  # a commitment request may be waiting for it
            if verbose:
                log.info("stored %s from %s: 0x%04X", inst.sop_instance_uid, inst.calling_ae, status)

        handlers = [(e, on_assoc) for e in (evt.EVT_ESTABLISHED, evt.EVT_RELEASED, evt.EVT_ABORTED)]
        ae.add_service(StorageSCP(archive, on_stored, store_transfer_syntax=cfg.storage_syntax))
        ae.add_service(scp)
        qr = QRSettings(cfg.max_results, cfg.pn_matching, cfg.relational, cfg.no_match_status)
        ae.add_service(QueryRetrieveSCP(archive, ae, qr))
        server = ae.start_server((cfg.bind, cfg.port), block=False, evt_handlers=handlers if verbose else [])
        if server is None:  # pragma: no cover - block=False always returns the server
            raise CommandError("the server did not start")
        if ae.peer(cfg.ae_title) is None:
            # A C-MOVE to our own AE title stores into this archive (duplicates per --duplicates).
            own = "127.0.0.1" if cfg.bind in ("0.0.0.0", "") else ("::1" if cfg.bind == "::" else cfg.bind)
            ae.add_peer(cfg.ae_title, own, server.port)
        signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
        rates = None
        if cfg.metrics_port:
            from ferrodicom.metrics import serve_metrics

            serve_metrics(cfg.metrics_port, server, archive, host=cfg.bind)
        if cfg.stats_interval:
            from ferrodicom.metrics import RateLog

            rates = RateLog(server, cfg.stats_interval).start()
        peers = f", {len(cfg.peers)} peer(s)" if cfg.peers else ""
        metrics = f", metrics on port {cfg.metrics_port}" if cfg.metrics_port else ""
        click.echo(
            f"ferrodicom serving {cfg.ae_title} on {server.address[0]}:{server.port}, archive {cfg.archive} "
            f"({archive.count()} instances, durability {cfg.durability}){peers}{metrics}",
            err=True,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            if rates is not None:
                rates.stop()
            server.shutdown()
    finally:
        if commitment is not None:
            commitment.close()  # after the server: no request arrives any more
        archive.close()
