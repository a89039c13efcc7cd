"""``ferrodicom store``: Storage SCU (PS3.4 Annex B), like DCMTK's storescu.

Sends everything it can: a file that cannot be sent (not DICOM, no SOP Class/Instance UID, unreadable,
truncated) is reported once, by name and reason, and skipped. Without ``--halt`` a failure status (Refused
A7xx included) is reported and the job continues; with it the job stops at the first failure. One log
record per instance (info: stored; warning: stored with a warning status, skipped; error: failed), with
the status, its meaning and the peer's Error Comment; on a terminal a progress bar replaces the info lines.
Summary on stdout: ``S stored, F failed, N not sent, K skipped, A association(s), R/s``. With ``--commit`` the
instances stored are then given to Storage Commitment (``ferrodicom commit``): its summary line follows, and
the exit status is 0 only if every one was committed.

Exit status: 0 every instance found was stored (skipped files do not count), 1 anything failed or was not
sent, or nothing could be sent at all; 2 bad arguments.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import click

from ferrodicom.cli.errors import CommandError, expected_errors, explain
from ferrodicom.cli.logs import console_handler, logging_options, setup
from ferrodicom.cli.scu_options import called_ae_option, calling_ae_option, max_pdu_option, timeout_option

log = logging.getLogger("ferrodicom.cli.store")


def human_rate(bytes_per_s: float) -> str:
    """``1.02 MB/s`` (decimal units, as tqdm's bar shows them)."""
    value = float(bytes_per_s)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}/s" if unit == "B" else f"{value:.2f} {unit}/s"
        value /= 1000
    return f"{value:.2f} GB/s"  # pragma: no cover - loop always returns


def _status_text(r) -> str:
    """``Warning: ... (the peer's comment)`` for a status that is not Success."""
    text = r.status.meaning
    return f"{text} ({r.comment})" if r.comment else text


@click.command("store")
@calling_ae_option()
@called_ae_option()
@max_pdu_option()
@timeout_option()
@click.option(
    "--halt",
    is_flag=True,
    help="Stop at the first instance that fails (default: report it and go on, Refused A7xx included).",
)
@click.option("--dry-run", is_flag=True,
              help="List what would be sent and why anything would be skipped; send nothing.")  # fmt: skip
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.option("--commit", "commit_", is_flag=True,
              help="Then ask the peer to commit to keeping what it stored (Storage Commitment).")  # fmt: skip
@click.option("--commit-port", default=None, type=click.IntRange(0, 65535),
              help="With --commit: also take the report on a new association to this port.")  # fmt: skip
@click.option("--commit-wait", default=600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="With --commit: seconds to wait for the report.")  # fmt: skip
@logging_options
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def command(
    aet: str,
    aec: str,
    max_pdu: Optional[int],
    timeout: float,
    halt: bool,
    dry_run: bool,
    progress: Optional[bool],
    commit_: bool,
    commit_port: Optional[int],
    commit_wait: float,
    host: str,
    port: int,
    paths: tuple[Path, ...],
) -> None:
    """Send the DICOM files in PATHS (folders recursively) to HOST PORT.

    Files without File Meta are sent as storescu sends them (UIDs from the data set). Exit status: 0 every
    instance found was stored, 1 anything failed or was not sent (or nothing to send), 2 bad arguments."""
    setup("info")
    if dry_run:
        _dry_run(paths)
        return
    commit = (commit_port, commit_wait) if commit_ else None
    with expected_errors(peer=f"{aec} at {host}:{port}"):
        _send(aet, aec, max_pdu, timeout, halt, progress, host, port, paths, commit)


def _dry_run(paths: tuple[Path, ...]) -> None:
    from ferrodicom.services.storage.scu import build_contexts, plan
    from ferrodicom.uids import UNCOMPRESSED

    items, skipped = plan(paths)
    for it in items:
        click.echo(f"send {it.name}  ({_class_name(it.sop_class_uid)}, {_ts_name(it.transfer_syntax)}, {it.size} B)")
    for name, why in skipped:
        click.echo(f"skip {name}: {why}")
    groups = build_contexts(items)
    compressed = sum(1 for it in items if it.transfer_syntax not in UNCOMPRESSED)
    click.echo(
        f"{len(items)} to send ({compressed} compressed, sent as they are) in {len(groups)} association(s), "
        f"{len(skipped)} skipped"
    )


def _class_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name and name != uid else uid


def _ts_name(uid: str) -> str:
    return _class_name(uid)


def _send(aet, aec, max_pdu, timeout, halt, progress, host, port, paths, commit=None) -> None:
    from tqdm import tqdm  # type: ignore[import-untyped]

    from ferrodicom.services.storage.scu import collect, store

    show_bar = sys.stderr.isatty() if progress is None else progress
    skipped: list[tuple[str, str]] = []

    def on_skipped(name: str, why: str) -> None:
        log.warning("skipped %s: %s", name, why, extra={"event": "skipped", "file": name, "reason": why})

    items = list(collect(paths, skipped, on_skipped))
    sizes = {it.name: it.size for it in items}
    bar = tqdm(
        total=sum(sizes.values()),
        unit="B",
        unit_scale=True,
        disable=not show_bar,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    done = [0]

    def on_result(r) -> None:
        done[0] += 1
        bar.update(r.item.size)
        bar.set_postfix_str(f"{done[0]}/{len(items)} instances", refresh=False)
        _log_result(r)

    def on_late_skip(name: str, why: str) -> None:
        on_skipped(name, why)
        bar.update(sizes.get(name, 0))

    console = console_handler()
    if show_bar and console is not None:
        # The bar replaces the per-instance info lines on the terminal; warnings and errors print above it.
        saved = (console.level, console.stream)
        console.setLevel(max(console.level, logging.WARNING))
        console.setStream(_AboveBar(bar))
    try:
        report = store(
            host,
            port,
            items,
            calling_ae=aet,
            called_ae=aec,
            max_pdu=max_pdu,
            timeout=timeout,
            progress=on_result,
            on_failure="halt" if halt else "continue",
            on_skipped=on_late_skip,
        )
    finally:
        bar.close()
        if show_bar and console is not None:
            console.setLevel(saved[0])
            console.setStream(saved[1])
    report.skipped[:0] = skipped
    stored, failed, unsent = len(report.succeeded), len(report.failed), len(report.not_sent)
    rate = f", {human_rate(report.bytes_sent / report.elapsed)}" if report.bytes_sent and report.elapsed > 0 else ""
    warned = f" ({len(report.warnings)} with a warning)" if report.warnings else ""
    click.echo(
        f"{stored} stored{warned}, {failed} failed, {unsent} not sent, {len(report.skipped)} skipped, "
        f"{report.associations} association(s){rate}"
    )
    # the summary is on stdout: as a record too when the log goes to a file (one place for a log shipper)
    log.log(
        logging.INFO if console is None else logging.DEBUG,
        "summary",
        extra={
            "event": "summary",
            "stored": stored,
            "warnings": len(report.warnings),
            "failed": failed,
            "not_sent": unsent,
            "skipped": len(report.skipped),
            "associations": report.associations,
            "bytes_sent": report.bytes_sent,
            "seconds": round(report.elapsed, 3),
        },
    )
    if report.association_error is not None:
        raise explain(report.association_error, peer=f"{aec} at {host}:{port}") or CommandError(
            report.stopped or str(report.association_error), "check the host, the port and the peer's log"
        )
    if not report.results:
        raise CommandError(
            "nothing to send: no DICOM instance that can be sent in PATHS", "see the skipped files above"
        )
    if commit is not None and report.succeeded:
        _commit(report, aet, aec, max_pdu, timeout, host, port, *commit)
    if unsent:
        raise CommandError(
            f"{report.stopped}: {unsent} instance(s) not sent", "deal with that failure, then send again"
        )
    if failed:
        sys.exit(1)


def _commit(report, aet, aec, max_pdu, timeout, host, port, listen_port, wait) -> None:
    """``--commit``: Storage Commitment of the instances stored (see ``ferrodicom commit``)."""
    from ferrodicom.cli.commit import finish, run

    stored = report.succeeded
    names = {r.item.sop_instance_uid: r.item.name for r in stored}
    refs = [(r.item.sop_class_uid, r.item.sop_instance_uid) for r in stored]
    peer = f"{aec} at {host}:{port}"
    with expected_errors(peer=peer, host="0.0.0.0", port=listen_port, option="--commit-port"):
        result = run(host, port, refs, aet, aec, listen_port, "0.0.0.0", wait, 60.0, timeout, max_pdu)
    finish(result, names, peer, listen_port, prefix="commitment: ")


class _AboveBar:
    """A stream for the console log handler that prints above the progress bar (tqdm.write)."""

    def __init__(self, bar) -> None:
        self.bar = bar

    def write(self, text: str) -> None:
        self.bar.write(text.rstrip("\n"), file=sys.stderr)

    def flush(self) -> None:
        sys.stderr.flush()


def _log_result(r) -> None:
    """One record per instance, with the fields a log shipper indexes."""
    it = r.item
    fields = {
        "event": "result",
        "file": it.name,
        "sop_class_uid": it.sop_class_uid,
        "sop_instance_uid": it.sop_instance_uid,
        "outcome": r.outcome,
        "status": None if r.status is None else int(r.status),
        "comment": r.comment,
        "error": r.error,
        "transfer_syntax": r.sent_transfer_syntax,
        "bytes": r.bytes_sent,
    }
    if r.status is None and not r.sent:
        # never tried: the job stopped, and says why once (the summary counts them)
        log.debug("not sent %s: %s", it.name, r.error, extra=fields)
    elif r.status is None:
        log.error("failed %s: %s", it.name, r.error, extra=fields)
    elif r.outcome == "stored":
        log.info("0x%04X %s", int(r.status), it.name, extra=fields)
    elif r.outcome == "warning":
        log.warning("0x%04X %s: %s", int(r.status), it.name, _status_text(r), extra=fields)
    else:
        log.error("0x%04X %s: %s", int(r.status), it.name, _status_text(r), extra=fields)
