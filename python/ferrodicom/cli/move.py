"""``ferrodicom move``: C-MOVE SCU (PS3.4 C.4.2), like DCMTK's ``movescu``: asks HOST PORT to send what the keys
match to the AE ``--aem`` (which the peer must know). A progress bar on a terminal. Exit status: 0 every
sub-operation completed, 1 anything failed (or the peer could not be reached), 2 bad arguments."""

from __future__ import annotations

import sys
from typing import Any, Optional

import click

from ferrodicom.cli.errors import AE_TITLE, CommandError, expected_errors
from ferrodicom.cli.logs import logging_options, setup
from ferrodicom.cli.qr_common import associate, build, check_context, finish, qr_options, status_line


@click.command("move")
@qr_options
@click.option("--aem", required=True, type=AE_TITLE, help="The move destination's AE title.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@logging_options
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
def command(root: str, level: Optional[str], keys: tuple[str, ...], aet: str, aec: str, timeout: float,
            relational: bool, aem: str, progress: Optional[bool], host: str, port: int) -> None:  # fmt: skip
    """Ask HOST PORT to send the instances the -k keys match to --aem."""
    setup("info")
    query = build(root, level, keys)
    with expected_errors(peer=f"{aec} at {host}:{port}"):
        ok = _move(root, query, aet, aec, timeout, relational, aem, progress, host, port)
    finish(ok)


def _count(status: Any, kind: str) -> int:
    return int(getattr(status, f"NumberOf{kind}Suboperations", 0) or 0)


class Progress:
    """A tqdm bar fed by the pending responses' sub-operation counts (PS3.7 9.1.3.1, 9.1.4.1)."""

    def __init__(self, show: bool, what: str) -> None:
        self.show = show
        self.what = what
        self.bar: Any = None

    def update(self, status: Any) -> None:
        done = sum(_count(status, k) for k in ("Completed", "Failed", "Warning"))
        remaining = getattr(status, "NumberOfRemainingSuboperations", None)
        if not self.show:
            return
        if self.bar is None:
            from tqdm import tqdm  # type: ignore[import-untyped]

            total = done + int(remaining or 0) if remaining is not None else None
            self.bar = tqdm(total=total, unit="inst", desc=self.what, file=sys.stderr, leave=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def report(final: Any, what: str, failed: Any = None) -> bool:
    """Prints the final counts and the failed instances; True when every sub-operation completed."""
    if final is None:
        raise CommandError(f"the association ended before the final {what} response", "see the peer's log")
    counts = {k: _count(final, k) for k in ("Completed", "Failed", "Warning")}
    click.echo(
        f"{what} status {status_line(final)}: {counts['Completed']} completed, {counts['Failed']} failed, "
        f"{counts['Warning']} warning(s)"
    )
    if failed is not None and "FailedSOPInstanceUIDList" in failed:
        uids = failed.FailedSOPInstanceUIDList
        for uid in uids if isinstance(uids, (list, tuple)) or type(uids).__name__ == "MultiValue" else [uids]:
            click.echo(f"failed: {uid}")
    return int(final.Status) == 0x0000


def _move(root, query, aet, aec, timeout, relational, aem, progress, host, port) -> bool:
    from ferrodicom.ae import AE
    from ferrodicom.services.qr.scu import relational_item, sop_class

    uid = sop_class(root, "move")
    ae = AE(aet)
    ae.add_requested_context(uid)
    ext = [relational_item(uid, find=False)] if relational else []
    assoc = associate(ae, host, port, aec, timeout, ext_neg=ext)
    bar = Progress(sys.stderr.isatty() if progress is None else progress, "C-MOVE")
    final: Any = None
    final_ds: Any = None
    try:
        check_context(assoc, uid, aec)
        for status, ds in assoc.send_c_move(query, aem, uid):
            if int(status.Status) == 0xFF00:
                bar.update(status)
                continue
            final, final_ds = status, ds
        assoc.release()
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    finally:
        bar.close()
    return report(final, "C-MOVE", final_ds)
