"""``ferrodicom commit``: Storage Commitment Push Model SCU (PS3.4 Annex J).

Asks the peer to commit to keeping the instances in PATHS (files and folders, as ``store`` finds them; only
their UIDs are read) and those given as ``--uid CLASS/INSTANCE``, and waits for its report: on the requesting
association or, with ``--listen-port``, on a new association the peer opens to us (the peer must have our AE
title and that port in its address book). One log record per instance (info: committed; error: failed, with
the Failure Reason); on stdout ``N committed, F failed, U not reported`` with the Transaction UID and where
the report came.

``--state FILE`` records each request and its result in FILE; after a restart, ``commit --resume --state FILE
--listen-port N`` waits on for the reports of the requests FILE still has outstanding.

Exit status: 0 every instance committed; 1 the peer refused the request, reported failures, or sent no report
in time; 2 bad arguments.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Optional

import click

from ferrodicom.cli.errors import BadArgument, CommandError, expected_errors, explain
from ferrodicom.cli.logs import logging_options, setup
from ferrodicom.cli.scu_options import called_ae_option, calling_ae_option, max_pdu_option, timeout_option

log = logging.getLogger("ferrodicom.cli.commit")


def _uid_pairs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[tuple[str, str]]:
    """``--uid SOPClassUID/SOPInstanceUID``, repeatable."""
    from ferrodicom.archive import check_uid

    pairs = []
    for value in values:
        cls, sep, inst = value.strip().partition("/")
        if not sep:
            raise click.BadParameter(f"{value!r} is not SOPClassUID/SOPInstanceUID")
        for what, uid in (("SOP Class UID", cls), ("SOP Instance UID", inst)):
            ok, why = check_uid(uid)
            if not ok:
                raise click.BadParameter(f"{value!r}: {what}: {why}")
        pairs.append((cls, inst))
    return pairs


@click.command("commit")
@calling_ae_option("Our AE title (calling, and the one a report on a new association is addressed to).")
@called_ae_option()
@click.option("--uid", "uids", multiple=True, callback=_uid_pairs, metavar="CLASS/INSTANCE",
              help="An instance to commit by its SOP Class and SOP Instance UIDs; repeatable.")  # fmt: skip
@click.option(
    "--listen-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Also take the report on a new association the peer opens to this port (default: only on the "
    "requesting association).",
)
@click.option("--bind", "host_bind", default="0.0.0.0", show_default=True,
              help="Address to listen on with --listen-port.")  # fmt: skip
@click.option("--wait", default=600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds to wait for the report.")  # fmt: skip
@click.option(
    "--hold",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="With --listen-port: seconds the requesting association stays open for a report on it (without: "
    "open for the whole --wait).",
)
@timeout_option()
@max_pdu_option()
@click.option("--state", "state_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Record requests and results in this file (a restarted commit --resume waits on).")  # fmt: skip
@click.option("--resume", is_flag=True,
              help="Send nothing: wait for the reports --state still awaits, on --listen-port.")  # fmt: skip
@logging_options
@click.argument("host", required=False)
@click.argument("port", required=False, type=click.IntRange(1, 65535))
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def command(
    aet: str,
    aec: str,
    uids: list[tuple[str, str]],
    listen_port: Optional[int],
    host_bind: str,
    wait: float,
    hold: float,
    timeout: float,
    max_pdu: Optional[int],
    state_file: Optional[Path],
    resume: bool,
    host: Optional[str],
    port: Optional[int],
    paths: tuple[Path, ...],
) -> None:
    """Ask HOST PORT to commit to keeping the DICOM instances in PATHS (folders recursively) and --uid, and
    wait for its report. Exit status: 0 every instance committed, 1 anything else, 2 bad arguments."""
    setup("info")
    if resume:
        if state_file is None or listen_port is None:
            raise BadArgument("--resume needs --state FILE and --listen-port N", "give both")
        if host or paths or uids:
            raise BadArgument("--resume sends nothing: give no HOST, PORT, PATH or --uid", "leave them out")
        _resume(aet, state_file, listen_port, host_bind, timeout)
        return
    if host is None or port is None:
        raise BadArgument("HOST and PORT are required", "give the peer's host and port")
    if not paths and not uids:
        raise BadArgument("nothing to commit", "give PATHs or --uid CLASS/INSTANCE")
    from ferrodicom.services.storage.scu import collect

    def on_skipped(name: str, why: str) -> None:
        log.warning("skipped %s: %s", name, why, extra={"event": "skipped", "file": name, "reason": why})

    items = list(collect(paths, on_skipped=on_skipped))
    if not items and not uids:
        raise CommandError("nothing to commit: no DICOM instance in PATHS", "see the skipped files above")
    names = {it.sop_instance_uid: it.name for it in items}
    refs = [(it.sop_class_uid, it.sop_instance_uid) for it in items] + uids
    peer = f"{aec} at {host}:{port}"
    with expected_errors(peer=peer, host=host_bind, port=listen_port, option="--listen-port"):
        result = run(host, port, refs, aet, aec, listen_port, host_bind, wait, hold, timeout, max_pdu, state_file)
    finish(result, names, peer, listen_port)


def _resume(aet: str, state_file: Path, listen_port: int, bind: str, timeout: float) -> None:
    from ferrodicom.services.commitment import resume

    with expected_errors(host=bind, port=listen_port, option="--listen-port"):
        results = resume(state_file, calling_ae=aet, listen_port=listen_port, bind=bind, timeout=timeout)
    if not results:
        click.echo(f"no report awaited in {state_file}")
        return
    failed = 0
    for result in results:
        try:
            finish(result, {}, "the peer", listen_port)
        except (CommandError, SystemExit) as exc:
            if isinstance(exc, CommandError):
                click.echo(f"transaction {result.transaction_uid}: {exc.cause}")
            failed += 1
    if failed:
        sys.exit(1)


def run(host: str, port: int, refs: list[tuple[str, str]], aet: str, aec: str, listen_port: Optional[int],
        bind: str, wait: float, hold: float, timeout: float, max_pdu: Optional[int],
        state: Optional[Path] = None) -> Any:  # fmt: skip
    """The commit job (listening first if asked: a port that cannot be listened on fails before anything is
    sent)."""
    from ferrodicom.services.commitment import commit

    return commit(host, port, refs, calling_ae=aet, called_ae=aec, listen_port=listen_port, bind=bind, wait=wait,
                  hold=hold, timeout=timeout, max_pdu=max_pdu, state=state)  # fmt: skip


def finish(result: Any, names: dict[str, str], peer: str, listen_port: Optional[int], prefix: str = "") -> None:
    """Logs each instance's outcome, prints the summary (after ``prefix``), and raises/exits as the result says."""
    from ferrodicom.services.commitment.statuses import failure_reason_meaning

    for cls, inst in result.committed:
        log.info("committed %s", names.get(inst, inst),
                 extra={"event": "committed", "sop_class_uid": cls, "sop_instance_uid": inst})  # fmt: skip
    for cls, inst, reason in result.failed:
        what = failure_reason_meaning(reason) if reason is not None else "no Failure Reason given"
        fields = {"event": "failed", "sop_class_uid": cls, "sop_instance_uid": inst, "reason": reason}
        log.error("not committed %s: %s", names.get(inst, inst), what, extra=fields)
    for cls, inst in result.unreported:
        log.error("not reported %s: in neither sequence of the report", names.get(inst, inst),
                  extra={"event": "unreported", "sop_class_uid": cls, "sop_instance_uid": inst})  # fmt: skip
    if result.event_type is not None:
        where = "the requesting association" if result.via == "same" else "a new association"
        after = "" if result.resumed or result.seconds is None else f" after {result.seconds:.2f} s"
        click.echo(
            f"{prefix}{len(result.committed)} committed, {len(result.failed)} failed, {len(result.unreported)} not "
            f"reported; transaction {result.transaction_uid}, reported on {where}{after}"
        )
        if not result.ok:
            sys.exit(1)
        return
    if result.association_error is not None:
        raise explain(result.association_error, peer=peer) or CommandError(
            result.error, "check the host, the port and the peer's log"
        )
    if result.state == "failed":
        raise CommandError(result.error or "the commitment request failed", "see the peer's log")
    fix = "wait longer (--wait)"
    if listen_port is None:
        fix += ", or give --listen-port so the peer can report on a new association"
    raise CommandError(f"{peer}: {result.error} (transaction {result.transaction_uid})", fix)
