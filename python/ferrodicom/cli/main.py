"""``ferrodicom`` command line: one module per command in this package.

Every command takes the logging options of :mod:`ferrodicom.cli.logs` (also before the command name) and
reports an expected failure as one line, ``Error: <cause>; <fix>``, with exit status 1 (a failure) or 2 (bad
arguments; see :mod:`ferrodicom.cli.errors`).
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any, Optional

import click

from ferrodicom.cli.logs import file_handlers, logging_options

#: command name -> module under ferrodicom.cli that defines ``command`` (a click.Command)
COMMANDS = {
    "commit": "commit",
    "dump": "dump",
    "echo": "echo",
    "find": "find",
    "get": "get",
    "ls": "ls",
    "print": "print",
    "print-server": "print_server",
    "move": "move",
    "serve": "serve",
    "stats": "stats",
    "store": "store",
    "verify": "verify",
}


def _one_line(exc: click.ClickException) -> str:
    """An error as one line; a usage error also says where the help is."""
    text = " ".join(exc.format_message().split())
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        text += f" (see '{exc.ctx.command_path} --help')"
    return f"Error: {text}"


_ERROR = {"levelno": logging.ERROR, "levelname": "ERROR"}


class _LazyGroup(click.Group):
    """Imports a command's module only when that command runs (keeps ``--help`` and start-up fast), and shows
    every error as one line (click's usage errors included)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        module = COMMANDS.get(name)
        if module is None:
            return None
        return importlib.import_module(f"ferrodicom.cli.{module}").command

    def main(self, args: Any = None, prog_name: Optional[str] = None, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.pop("standalone_mode", True) is False:
            return super().main(args, prog_name, standalone_mode=False, **kwargs)
        try:
            rv = super().main(args, prog_name, standalone_mode=False, **kwargs)
        except click.ClickException as exc:
            line = _one_line(exc)
            click.echo(line, err=True)
            for h in file_handlers():  # the error belongs in the requested log file as well
                h.handle(logging.makeLogRecord({"name": "ferrodicom", "msg": line, **_ERROR}))
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ferrodicom")
@logging_options
def main() -> None:
    """ferrodicom: a DICOM network node. Verification (echo), Storage (store), Storage Commitment (commit,
    store --commit) and Query/Retrieve (find, move, get) as SCU, all of them as SCP (serve) over an indexed
    archive that ls, stats and verify read; Print Management as SCU (print) and as a PNG-rendering SCP
    (print-server). Exit status: 0 success, 1 failure, 2 bad arguments."""


if __name__ == "__main__":
    main()
