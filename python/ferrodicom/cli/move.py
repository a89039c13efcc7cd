"""``ferrodicom move``: C-MOVE SCU (PS3.4 C.4.2), like DCMTK's ``movescu``: asks HOST PORT to send what the keys
match to the AE ``--aem`` (which the peer must know). A progress bar on a terminal. Exit status: 0 every
sub-operation completed, 1 anything failed (or the peer could not be reached), 2 bad arguments."""

from __future__ import annotations

from typing import Optional

import click

from ferrodicom.cli.errors import AE_TITLE, expected_errors
from ferrodicom.cli.logs import logging_options, setup
from ferrodicom.cli.qr_common import associate, build, finish, qr_options
from ferrodicom.cli.retrieve import follow


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


def _move(root, query, aet, aec, timeout, relational, aem, progress, host, port) -> bool:
    from ferrodicom.ae import AE
    from ferrodicom.services.qr.scu import relational_item, sop_class

    uid = sop_class(root, "move")
    ae = AE(aet)
    ae.add_requested_context(uid)
    ext = [relational_item(uid, find=False)] if relational else []
    assoc = associate(ae, host, port, aec, timeout, ext_neg=ext)
    return follow(assoc, uid, aec, "C-MOVE", progress, lambda: assoc.send_c_move(query, aem, uid))
