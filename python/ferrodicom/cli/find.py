"""``ferrodicom find``: C-FIND SCU (PS3.4 C.4.1), like DCMTK's ``findscu``: each match as a row of a table, or
with ``--json`` as one line of the DICOM JSON model (PS3.18 F.2). Exit status: 0 the query completed, 1 the
peer answered a failure (or could not be reached), 2 bad arguments."""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

import click

from ferrodicom.cli.errors import CommandError, expected_errors
from ferrodicom.cli.logs import logging_options, setup
from ferrodicom.cli.qr_common import associate, build, check_context, finish, qr_options, status_line

log = logging.getLogger("ferrodicom.cli.find")


@click.command("find")
@qr_options
@click.option("--json", "as_json", is_flag=True, help="Each match as one line of the DICOM JSON model.")
@click.option("--cancel", type=click.IntRange(min=1), default=None, metavar="N",
              help="Send C-CANCEL after N matches (as findscu --cancel).")  # fmt: skip
@logging_options
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
def command(root: str, level: Optional[str], keys: tuple[str, ...], aet: str, aec: str, timeout: float,
            relational: bool, as_json: bool, cancel: Optional[int], host: str, port: int) -> None:  # fmt: skip
    """Query HOST PORT with the -k keys at --level; print the matches."""
    setup("warning")
    query = build(root, level, keys)
    with expected_errors(peer=f"{aec} at {host}:{port}"):
        ok = _find(root, query, aet, aec, timeout, relational, as_json, cancel, host, port)
    finish(ok)


def _text(elem: Any) -> str:
    value = elem.value
    if value is None:
        return ""
    if elem.VR == "SQ":
        return f"<{len(value)} item(s)>"
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _find(root, query, aet, aec, timeout, relational, as_json, cancel, host, port) -> bool:
    from ferrodicom.ae import AE
    from ferrodicom.services.qr.scu import relational_item, sop_class

    uid = sop_class(root, "find")
    ae = AE(aet)
    ae.add_requested_context(uid)
    ext = [relational_item(uid, find=True)] if relational else []
    assoc = associate(ae, host, port, aec, timeout, ext_neg=ext)
    skip = ("QueryRetrieveLevel", "SpecificCharacterSet")
    columns = [e.keyword or str(e.tag) for e in query if e.keyword not in skip]
    rows: list[list[str]] = []
    final: Any = None
    matches = 0
    try:
        check_context(assoc, uid, aec)
        results = assoc.send_c_find(query, uid)
        msg_id = assoc.last_message_id
        for status, ds in results:
            code = int(status.Status)
            if code in (0xFF00, 0xFF01):
                matches += 1
                if ds is not None:
                    if as_json:
                        click.echo(json.dumps(ds.to_json_dict(), ensure_ascii=False))
                    else:
                        by_kw = {(e.keyword or str(e.tag)): _text(e) for e in ds}
                        rows.append([by_kw.get(c, "") for c in columns])
                if cancel is not None and matches == cancel:
                    assoc.send_c_cancel(msg_id, query_model=uid)
                continue
            final = status
        assoc.release()
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    if not as_json:
        _table(columns, rows)
    if final is None:
        raise CommandError("the association ended before the final C-FIND response", "see the peer's log")
    code = int(final.Status)
    click.echo(f"{matches} match(es); C-FIND status {status_line(final)}", err=True)
    return code == 0x0000 or (code == 0xFE00 and cancel is not None)


def _table(columns: list[str], rows: list[list[str]]) -> None:
    if not columns:
        return
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    widths = [min(w, 64) for w in widths]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for r in rows:
        click.echo("  ".join(v[:64].ljust(w) for v, w in zip(r, widths)).rstrip())
