"""``ferrodicom get``: C-GET SCU (PS3.4 C.4.3), like DCMTK's ``getscu``: the instances the keys match come back
on the same association (every storage class proposed with the SCP role, C.5.3) and are written to ``-od DIR``
as ``<SOP Instance UID>.dcm``. A progress bar on a terminal. Exit status: 0 every sub-operation completed, 1
anything failed (or the peer could not be reached), 2 bad arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click

from ferrodicom.cli.errors import expected_errors, writable_dir
from ferrodicom.cli.logs import logging_options, setup
from ferrodicom.cli.qr_common import associate, build, finish, qr_options
from ferrodicom.cli.retrieve import follow


@click.command("get")
@qr_options
@click.option("-od", "--output-directory", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Write the received instances here (created if missing).")  # fmt: skip
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@logging_options
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
def command(root: str, level: Optional[str], keys: tuple[str, ...], aet: str, aec: str, timeout: float,
            relational: bool, out: Path, progress: Optional[bool], host: str, port: int) -> None:  # fmt: skip
    """Retrieve the instances the -k keys match from HOST PORT into -od DIR."""
    setup("info")
    query = build(root, level, keys)
    writable_dir(out, "output folder")
    out.mkdir(parents=True, exist_ok=True)
    with expected_errors(peer=f"{aec} at {host}:{port}"):
        ok = _get(root, query, aet, aec, timeout, relational, out, progress, host, port)
    finish(ok)


def _get(root, query, aet, aec, timeout, relational, out, progress, host, port) -> bool:
    from ferrodicom.services.qr.scu import Retriever, relational_item, sop_class

    uid = sop_class(root, "get")
    retriever = Retriever(out)
    ext: list[Any] = [relational_item(uid, find=False)] if relational else []
    ae = retriever.ae(aet, uid, ext)
    assoc = associate(ae, host, port, aec, timeout, ext_neg=ext, evt_handlers=retriever.handlers())
    ok = follow(assoc, uid, aec, "C-GET", progress, lambda: assoc.send_c_get(query, uid))
    click.echo(f"{len(retriever.received)} instance(s) written to {out}")
    return ok
