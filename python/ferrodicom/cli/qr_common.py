"""What ``ferrodicom find``, ``move`` and ``get`` share: the model and level options, ``-k`` keys, the
association with the peer and the report of a final status."""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

import click

from ferrodicom.cli.errors import BadArgument, CommandError, explain
from ferrodicom.cli.scu_options import Decorator, called_ae_option, calling_ae_option, timeout_option

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def qr_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """-P/-S, --level, -k, --aet, --aec, --timeout, --relational."""
    decorators: list[Decorator] = [
        click.option("-P", "--patient-root", "root", flag_value="patient", help="Patient Root model."),
        click.option(
            "-S", "--study-root", "root", flag_value="study", default=True, help="Study Root model (default)."
        ),  # fmt: skip
        click.option(
            "--level",
            type=click.Choice(LEVELS, case_sensitive=False),
            default=None,
            help="Query/Retrieve Level (default: PATIENT with -P, STUDY with -S).",
        ),  # fmt: skip
        click.option(
            "-k",
            "--key",
            "keys",
            multiple=True,
            metavar="KEY[=VALUE]",
            help="A key: a keyword or a tag (0010,0010); without =VALUE a return key. Repeatable.",
        ),
        calling_ae_option(),
        called_ae_option(),
        timeout_option(),
        click.option(
            "--relational",
            is_flag=True,
            help="Ask for relational queries/retrieval (SOP Class Extended Negotiation).",
        ),  # fmt: skip
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def build(root: str, level: Optional[str], keys: tuple[str, ...]) -> Any:
    """The identifier; a bad key is a bad argument (exit 2)."""
    from ferrodicom.services.qr.scu import identifier

    level = (level or ("PATIENT" if root == "patient" else "STUDY")).upper()
    if root == "study" and level == "PATIENT":
        raise BadArgument("the Study Root model has no PATIENT level", "use -P for a patient-level query")
    try:
        return identifier(keys, level)
    except ValueError as exc:
        raise BadArgument(f"-k: {exc}", "give KEY=VALUE or KEY, KEY a keyword or a tag like 0010,0010") from None


def associate(ae: Any, host: str, port: int, aec: str, timeout: float, **kwargs: Any) -> Any:
    """The association, or a one-line error."""
    ae.acse_timeout = ae.dimse_timeout = ae.connection_timeout = timeout
    peer = f"{aec} at {host}:{port}"
    assoc = ae.associate(host, port, ae_title=aec, **kwargs)
    if not assoc.is_established:
        err = explain(assoc.error, peer=peer) if isinstance(assoc.error, Exception) else None
        raise err or CommandError(f"association with {peer} failed: {assoc.error}", "check the peer and its log")
    return assoc


def check_context(assoc: Any, uid: str, aec: str) -> None:
    if not any(c.abstract_syntax == uid for c in assoc.accepted_contexts):
        assoc.release()
        from pydicom.uid import UID

        raise CommandError(f"{aec} does not accept {UID(uid).name}", "try the other model (-P or -S)")


def status_line(status: Any) -> str:
    code = int(getattr(status, "Status", 0xC000))
    comment = getattr(status, "ErrorComment", None)
    meaning = getattr(status, "meaning", "")
    return f"0x{code:04X} ({meaning})" + (f": {comment}" if comment else "")


def finish(ok: bool) -> None:
    sys.exit(0 if ok else 1)
