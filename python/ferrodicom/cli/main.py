"""``ferrodicom`` command line: one module per command in this package."""

from __future__ import annotations

import importlib

import click

#: command name -> module under ferrodicom.cli that defines ``command`` (a click.Command)
COMMANDS = {
    "dump": "dump",
    "echo": "echo",
    "serve": "serve",
    "store": "store",
}


class _LazyGroup(click.Group):
    """Imports a command's module only when that command runs (keeps ``--help`` and start-up fast)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None:
            return None
        return importlib.import_module(f"ferrodicom.cli.{module}").command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ferrodicom")
def main() -> None:
    """ferrodicom: DICOM network node (verification, storage, query/retrieve, archive)."""


if __name__ == "__main__":
    main()
