"""Errors a user can act on: one line naming the cause and the fix, and the exit status.

Exit statuses (every command): 0 success, 1 a failure (the port is taken, the archive is locked, the peer
cannot be reached, an instance was not stored, ...), 2 bad arguments (click's usage errors, an invalid AE
title, a folder that cannot be written, an invalid configuration).

A command wraps its work in :func:`expected_errors`, which turns the exceptions it knows into a
:class:`CommandError` (one line ``Error: <cause>; <fix>``, see ``cli.main``); anything else is a bug and
keeps its traceback. Check arguments (:func:`writable_dir`, :data:`AE_TITLE`) before creating anything.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import click

from ferrodicom.config import ae_title_problem

#: Exit statuses.
FAILURE = 1
BAD_ARGUMENTS = 2


class CommandError(click.ClickException):
    """An expected failure, shown as one line: ``Error: <cause>; <fix>``."""

    def __init__(self, cause: str, fix: Optional[str] = None, exit_code: int = FAILURE) -> None:
        super().__init__(f"{cause}; {fix}" if fix else cause)
        self.cause = cause
        self.fix = fix
        self.exit_code = exit_code


class BadArgument(CommandError):
    """An argument that cannot work (exit status 2)."""

    def __init__(self, cause: str, fix: Optional[str] = None) -> None:
        super().__init__(cause, fix, BAD_ARGUMENTS)


# --- argument checks ---------------------------------------------------------------------------------------


class AETitle(click.ParamType):
    """A click parameter type for AE titles: a bad one is a usage error (exit 2) naming the rule."""

    name = "AE title"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> str:
        problem = ae_title_problem(str(value))
        if problem is not None:
            self.fail(problem, param, ctx)
        return str(value)


AE_TITLE = AETitle()


def writable_dir(path: Path, what: str = "folder", option: Optional[str] = None) -> None:
    """Raises :class:`BadArgument` unless ``path`` is a writable folder or could be created as one (its
    nearest existing parent is a writable folder). Creates nothing."""
    hint = f" ({option})" if option else ""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise BadArgument(f"{what} {path}{hint}: {probe} is not a folder", "choose a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        made = "" if probe == path else f" (it would be created in {probe})"
        raise BadArgument(
            f"{what} {path}{hint} is not writable{made}",
            "choose a folder you can write to, or fix its permissions",
        )


# --- exceptions of the work ------------------------------------------------------------------------------


def os_errno(exc: BaseException) -> Optional[int]:
    """The errno of an OSError, or the ``(os error N)`` the Rust errors end with."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    m = re.search(r"\(os error (\d+)\)", str(exc))
    return int(m.group(1)) if m else None


def explain(exc: BaseException, **context: Any) -> Optional[CommandError]:
    """The :class:`CommandError` for an exception a command can expect, or None (a bug: keep the traceback).

    ``context`` names what the command was doing: ``host``/``port`` (listening), ``archive`` (its folder),
    ``peer`` (``AE at host:port``, connecting), ``option`` (the option holding ``port``, default --port)."""
    from ferrodicom._core import AssociationRejected, DicomError

    code = os_errno(exc)
    port_opt = context.get("option", "--port")
    listening = "cannot listen" in str(exc) or (isinstance(exc, OSError) and "peer" not in context)
    if code == errno.EADDRINUSE:
        where = f"{context.get('host', '')}:{context.get('port', '')}".strip(":")
        return CommandError(
            f"cannot listen on {where}: the address is already in use",
            f"stop the program using it, or choose another {port_opt}",
        )
    if code == errno.EADDRNOTAVAIL and listening:
        return BadArgument(
            f"cannot listen on {context.get('host', '')}: not an address of this machine", "choose another --bind"
        )
    if code in (errno.EACCES, errno.EPERM) and listening and int(context.get("port") or 1024) < 1024:
        return CommandError(
            f"cannot listen on port {context['port']}: ports below 1024 need privileges",
            f"choose a {port_opt} of 1024 or more",
        )
    if isinstance(exc, DicomError) and type(exc).__name__ == "ArchiveError":
        text = str(exc)
        if "in use" in text:
            return CommandError(
                f"archive {context.get('archive') or ''} is in use by another process".replace("  ", " "),
                "stop the ferrodicom serve (or verify --repair) using it, or choose another folder",
            )
        if "not writable" in text or "cannot create" in text:
            return CommandError(text, "choose a folder you can write to, or fix its permissions")
        return CommandError(text, "check the archive (ferrodicom verify ARCHIVE)")
    if isinstance(exc, OSError) and (
        isinstance(exc, (PermissionError, IsADirectoryError, NotADirectoryError))
        or code in (errno.EROFS, errno.ENOSPC, errno.EDQUOT)
    ):
        name = exc.filename or context.get("archive") or ""
        return CommandError(
            f"cannot write {name}: {exc.strerror}".replace("write : ", "write: "),
            "choose a folder you can write to, or fix its permissions",
        )
    if isinstance(exc, AssociationRejected):
        return CommandError(f"{context.get('peer', 'the peer')} rejected the association: {exc}", rejection_fix(exc))
    if isinstance(exc, ConnectionError) or (isinstance(exc, DicomError) and _is_connection_problem(str(exc))):
        return CommandError(
            f"cannot reach {context.get('peer', 'the peer')}: {exc}",
            "check the host and port, and that the peer is running",
        )
    if type(exc).__name__ in ("ConfigError", "TOMLDecodeError"):
        return BadArgument(f"invalid configuration: {exc}", "fix the configuration file")
    if isinstance(exc, ValueError) and "AE title" in str(exc):
        return BadArgument(str(exc), "use 1-16 printable ASCII characters")
    return None


def rejection_fix(error: object) -> str:
    """What to do about an A-ASSOCIATE-RJ (PS3.8 Table 9-21), from the rejection's source and reason."""
    source, reason = getattr(error, "source", None), getattr(error, "reason", None)
    if source is None or reason is None:
        return "check the peer's configuration and its log"
    if (source, reason) == (1, 7):
        return "check --aec: the peer does not know that called AE title"
    if (source, reason) == (1, 3):
        return "check --aet: the peer does not accept that calling AE title"
    if source == 3:
        return "the peer is busy; try again later"
    return "check the peer's configuration and its log"


def _is_connection_problem(text: str) -> bool:
    text = text.lower()
    return any(
        s in text
        for s in ("connection refused", "timed out", "no route", "unreachable", "name or service", "reset", "lookup")
    )


@contextlib.contextmanager
def expected_errors(**context: Any) -> Iterator[None]:
    """Turns the exceptions :func:`explain` knows into a one-line :class:`CommandError`::

    with expected_errors(host=host, port=port, archive=archive_dir):
        archive = Archive(archive_dir)
        server = ae.start_server((host, port), block=False, ...)
    """
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except Exception as exc:
        err = explain(exc, **context)
        if err is None:
            raise
        raise err from exc
