"""Errors a user can act on (issue 24, item 2): one line naming the cause and the fix, exit status 2 for bad
arguments and 1 for failures, nothing created on disk before the arguments are valid; and the help texts say
what exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import click
import pytest
from test_storage import make_instance

from conftest import ferrodicom_cli, small_tmpfs
from ferrodicom import AE, Archive
from ferrodicom.cli.errors import BadArgument, CommandError, expected_errors, explain, writable_dir
from ferrodicom.services.storage import StorageSCP, add_storage_contexts, store


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ferrodicom_cli(), *args], capture_output=True, text=True, timeout=60)


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["store", "--aec", "SEVENTEEN-CHARS-X", "127.0.0.1", "104", "."],
            "'--aec': 'SEVENTEEN-CHARS-X' has 17 characters",
        ),
        (["echo", "--aet", "BAD\\TITLE", "127.0.0.1", "104"], "printable ASCII without backslash"),
        (["store", "127.0.0.1", "70000", "."], "70000 is not in the range 1<=x<=65535"),
        (["store", "127.0.0.1", "104"], "Missing argument 'PATHS...'"),
        (["store", "127.0.0.1", "104", "/no/such/file.dcm"], "'/no/such/file.dcm' does not exist"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["echo", "--log-level", "loud", "127.0.0.1", "104"], "'loud' is not one of"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, says):
    r = cli(*args)
    assert r.returncode == 2
    line = one_line(r)
    assert says in line, line
    assert line.endswith("--help')")  # where to look for the fix


def test_a_log_file_that_cannot_be_opened_is_a_bad_argument(tmp_path):
    r = cli("--log-file", str(tmp_path / "no" / "such" / "dir" / "log"), "ls", str(tmp_path))
    assert r.returncode == 2
    assert "'--log-file': cannot open" in one_line(r) and "choose a writable file" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_rejected_association_names_the_rejection_and_the_fix(tmp_path):
    """A peer that requires its own called AE title (1/1/7): one line naming the rejection, pointing at --aec."""
    archive = Archive(tmp_path / "arc", durability="none")
    ae = AE("FERRO")
    ae.require_called_aet = True
    add_storage_contexts(ae)
    ae.add_service(StorageSCP(archive))
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        f = tmp_path / "a.dcm"
        make_instance(f)
        r = cli("store", "--aec", "WRONG", "127.0.0.1", str(server.port), str(f))
    finally:
        server.shutdown()
        archive.close()
    assert r.returncode == 1
    assert r.stdout == "0 stored, 0 failed, 1 not sent, 0 skipped, 0 association(s)\n"
    line = one_line(r)
    assert line.startswith(f"Error: WRONG at 127.0.0.1:{server.port} rejected the association: ")
    assert line.endswith("check --aec: the peer does not know that called AE title")


def test_explain_turns_the_expected_failures_into_one_line():
    """The shared helper serve uses too: the Rust errors' "(os error N)" and the archive's lock error."""
    from ferrodicom._core import AssociationError
    from ferrodicom.archive import ArchiveError

    err = explain(AssociationError("cannot listen on 0.0.0.0:11112: Address already in use (os error 98)"),
                  host="0.0.0.0", port=11112)  # fmt: skip
    assert isinstance(err, CommandError) and err.exit_code == 1
    assert err.message == (
        "cannot listen on 0.0.0.0:11112: the address is already in use; stop the program using it, or choose "
        "another --port"
    )
    err = explain(ArchiveError("archive /a is in use by another Archive (lock /a/.lock)"), archive="/a")
    assert err.exit_code == 1 and err.message.startswith("archive /a is in use by another process; stop the")
    err = explain(ValueError("invalid AE title 'X': 1-16 printable ASCII characters"))
    assert isinstance(err, BadArgument) and err.exit_code == 2
    assert explain(KeyError("a bug")) is None
    with pytest.raises(CommandError):
        with expected_errors(port=11112):
            raise OSError(98, "Address already in use")
    with pytest.raises(KeyError):  # a bug keeps its traceback
        with expected_errors():
            raise KeyError("x")
    with pytest.raises(click.UsageError):  # click's own errors pass through
        with expected_errors():
            raise click.UsageError("u")


def test_read_only_archive_can_be_listed_but_not_repaired(tmp_path):
    """An archive on a read-only filesystem: ls reads it (nothing to create), verify --repair says in one line
    that the folder cannot be written (exit 1)."""
    with small_tmpfs(tmp_path / "ro", "8m") as mnt:
        root = mnt / "archive"
        archive = Archive(root, durability="none")
        ae = AE("FERRO")
        add_storage_contexts(ae)
        ae.add_service(StorageSCP(archive))
        server = ae.start_server(("127.0.0.1", 0), block=False)
        f = tmp_path / "a.dcm"
        make_instance(f)
        try:
            assert [r.outcome for r in store("127.0.0.1", server.port, [f], called_ae="FERRO").results] == ["stored"]
        finally:
            server.shutdown()
            archive.close()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        r = cli("ls", str(root), "--level", "instance")
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 2, r.stderr
        r = cli("verify", "--repair", str(root))
        assert r.returncode == 1
        line = one_line(r)
        assert f"archive directory {root} is not writable" in line and "choose a folder you can write to" in line
        # the check serve can make before it creates anything
        with pytest.raises(BadArgument, match=f"folder {mnt}/new/archive is not writable .it would be created in"):
            writable_dir(mnt / "new" / "archive")
        writable_dir(tmp_path / "new" / "archive")
        assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(BadArgument, match="is not a folder"):
        writable_dir(tmp_path / "file" / "archive")


def test_help_says_what_exists():
    r = cli("--help")
    assert r.returncode == 0
    assert "query/retrieve (find, move" in r.stdout.lower()
    for command in ("dump", "echo", "find", "get", "ls", "move", "print", "print-server", "serve", "stats", "store",
                    "verify"):  # fmt: skip
        assert f"  {command} " in r.stdout
        sub = cli(command, "--help")
        assert sub.returncode == 0
        for option in ("-v, --verbose", "-q, --quiet", "--log-level", "--log-file", "--log-format"):
            assert option in sub.stdout, (command, option)


def test_readme_command_table_lists_every_option():
    """README's command table names every option each command has (and no other command)."""
    from ferrodicom.cli.main import COMMANDS, main

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("## Command line") :].split("\n\n")[1]
    rows = {line.split("`")[1].split()[1]: line for line in table.splitlines() if line.startswith("| `ferrodicom ")}
    assert sorted(rows) == sorted(COMMANDS)
    for option in ("`-v`/`-q`", "`--log-level", "`--log-file FILE`", "`--log-format"):
        assert option in readme[readme.index("## Command line") : readme.index("## Python")]
    ctx = click.Context(main)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        for param in command.params:
            if not isinstance(param, click.Option) or param.name == "help":
                continue
            if param.name in ("verbose", "quiet", "log_level", "log_file", "log_format"):
                continue  # the logging options: described once, under the table
            named = [o for o in param.opts + param.secondary_opts if re.search(rf"(?<![\w-]){o}(?![\w-])", rows[name])]
            assert named, (name, param.opts)
