"""The node's configuration file and ``ferrodicom serve`` as users meet it: ``--config`` and ``--peer``, options
winning over the file, one-line errors naming the key and line, and nothing created on disk before the arguments
are known to work."""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import ferrodicom_cli, free_port, wait_for_port
from ferrodicom import AE, Archive
from ferrodicom.config import ConfigError, PeerConfig, load, parse_peer
from ferrodicom.uids import EXPLICIT_VR_LE, VERIFICATION


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "node.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_a_full_file_is_read(tmp_path):
    cfg = load(
        write(
            tmp_path,
            """
            [node]
            ae_title = "NODE1"
            port = 4242
            archive = "arc"
            durability = "none"
            storage_syntax = "ele"
            network_timeout = 5
            require_called_aet = true

            [[peers]]
            ae_title = "PACS"
            host = "10.0.0.5"
            port = 104

            [[peers]]
            ae_title = "WS1"
            host = "ws1.local"
            port = 11112
            """,
        )
    )
    assert (cfg.ae_title, cfg.port, cfg.durability, cfg.network_timeout) == ("NODE1", 4242, "none", 5.0)
    assert cfg.archive == (tmp_path / "arc").resolve()
    assert cfg.storage_syntax == EXPLICIT_VR_LE and cfg.require_called_aet is True
    assert cfg.peers == [PeerConfig("PACS", "10.0.0.5", 104), PeerConfig("WS1", "ws1.local", 11112)]


@pytest.mark.parametrize(
    "text, line, key, says",
    [
        ('[node]\nae_title = "X"\nprot = 5\n', 3, "[node] prot", "unknown key"),
        ('[node]\nport = "104"\n', 2, "[node] port", "is not an integer"),
        ("[node]\nport = 70000\n", 2, "[node] port", "not between 0 and 65535"),
        ('[node]\n\nae_title = "SEVENTEEN-CHARS-XX"\n', 3, "[node] ae_title", "at most 16"),
        ('[node]\ndurability = "sometimes"\n', 2, "[node] durability", "not one of full, none"),
        ('[node]\nstorage_syntax = "1.2.840.10008.1.2.4.50"\n', 2, "[node] storage_syntax", "not an uncompressed"),
        ('[[peers]]\nae_title = "A"\nhost = "h"\n', 1, "[[peers]] #1", "missing port"),
        (
            '[[peers]]\nae_title = "A"\nhost = "h"\nport = 1\n[[peers]]\nae_title = "B"\nhost = "h"\nport = 0\n',
            8,
            "[[peers]] #2 port",
            "not between 1 and 65535",
        ),  # fmt: skip
        (
            '[[peers]]\nae_title = "A"\nhost = "h"\nport = 1\n[[peers]]\nae_title = "A"\nhost = "g"\nport = 2\n',
            6,
            "[[peers]] #2",
            "listed twice",
        ),  # fmt: skip
        ("[node]\nport = \n", 2, "", "not valid TOML"),
        ("[nodes]\nport = 1\n", 1, "nodes", "unknown table"),
    ],
)
def test_errors_name_the_key_and_the_line(tmp_path, text, line, key, says):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load(path)
    err = raised.value
    assert (err.line, err.key) == (line, key)
    assert says in str(err) and str(err).startswith(f"{path} line {line}: ")


def test_peer_option_syntax():
    assert parse_peer("PACS=10.0.0.5:104") == PeerConfig("PACS", "10.0.0.5", 104)
    assert parse_peer("V6=[::1]:11112") == PeerConfig("V6", "::1", 11112)
    for bad in ("PACS", "PACS=host", "=h:1", "A=h:0", "SEVENTEEN-CHARS-XX=h:1"):
        with pytest.raises(ValueError):
            parse_peer(bad)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*ferrodicom_cli(), *args], capture_output=True, text=True, timeout=timeout)


def test_serve_reads_the_file_and_options_win(tmp_path):
    port = free_port()
    cfg = write(
        tmp_path,
        """
        [node]
        ae_title = "FROMFILE"
        port = 1
        archive = "arc"
        durability = "none"

        [[peers]]
        ae_title = "PACS"
        host = "127.0.0.1"
        port = 104
        """,
    )
    proc = subprocess.Popen(
        [*ferrodicom_cli(), "serve", "--config", str(cfg), "--port", str(port), "--peer", "WS=127.0.0.1:2000",
         "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, proc)
        ae = AE("SCU")
        ae.add_requested_context(VERIFICATION)
        with ae.associate("127.0.0.1", port, ae_title="FROMFILE") as assoc:
            assert assoc.is_established and assoc.send_c_echo() == 0
            assert assoc.acceptor.ae_title == "FROMFILE"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert f"serving FROMFILE on 127.0.0.1:{port}, archive {(tmp_path / 'arc').resolve()}" in out
    assert "durability none" in out and "2 peer(s)" in out
    assert (tmp_path / "arc" / "index.sqlite").exists()


def test_a_bad_file_stops_serve_before_anything_exists(tmp_path):
    cfg = write(tmp_path, '[node]\narchive = "arc"\nmax_pdu = -1\n')
    r = run_cli("serve", "--config", str(cfg))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: invalid configuration: {cfg} line 3: [node] max_pdu: ")
    assert not (tmp_path / "arc").exists()


def test_serve_operational_errors_are_one_line_and_leave_nothing(tmp_path):
    # A taken port: exit 1, no archive folder created.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli("serve", "--bind", "127.0.0.1", "--port", str(port), str(tmp_path / "a1"))
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: the address is already in use; "
        "stop the program using it, or choose another --port"
    ]
    assert not (tmp_path / "a1").exists()
    # A 17-character AE title: exit 2, nothing created.
    r = run_cli("serve", "--aet", "SEVENTEEN-CHARS-X", "--port", "0", str(tmp_path / "a2"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "at most 16" in r.stderr
    assert not (tmp_path / "a2").exists()
    # An archive folder that cannot be written.
    if os.geteuid() != 0:  # root writes everywhere; the check is the same code either way
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        r = run_cli("serve", "--port", "0", str(ro / "arc"))
        assert r.returncode == 2 and "not writable" in r.stderr
    # An archive in use by another process: exit 1, one line.
    arc = tmp_path / "busy"
    holder = Archive(arc, durability="none")
    try:
        r = run_cli("serve", "--bind", "127.0.0.1", "--port", str(free_port()), str(arc))
    finally:
        holder.close()
    assert r.returncode == 1, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"Error: archive {arc} is in use by another process; ")
    # No archive at all.
    r = run_cli("serve", "--port", "0")
    assert r.returncode == 2 and r.stderr.strip().startswith("Error: no archive folder; ")


def test_qr_and_index_tables(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(
        '[node]\narchive = "a"\n\n[qr]\nmax_results = 500\npn_matching = "exact"\nrelational = false\n'
        'no_match_status = 0xA701\n\n[index]\nseries = ["PerformedProcedureStepDescription"]\n'
    )
    cfg = load(path)
    assert (cfg.max_results, cfg.pn_matching, cfg.relational, cfg.no_match_status) == (500, "exact", False, 0xA701)
    assert cfg.index_keys == {"series": ["PerformedProcedureStepDescription"]}


@pytest.mark.parametrize(
    "text, line, key, says",
    [
        ("[qr]\nmax_results = -1\n", 2, "[qr] max_results", "negative"),
        ('[qr]\n\npn_matching = "fuzzy"\n', 3, "[qr] pn_matching", "not one of insensitive, exact"),
        ("[qr]\nno_match_status = 5\n", 2, "[qr] no_match_status", "failure status"),
        ("[qr]\nlimit = 5\n", 2, "[qr] limit", "unknown key"),
        ('[index]\nseries = ["NoSuchKeyword"]\n', 2, "[index] series", "not a DICOM keyword"),
        ('[index]\nframe = ["Modality"]\n', 2, "[index] frame", "unknown level"),
    ],
)
def test_qr_and_index_errors_name_key_and_line(tmp_path, text, line, key, says):
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.line == line and info.value.key == key and says in str(info.value)


def test_serve_reads_qr_settings_from_the_file_and_options_win(tmp_path):
    from click.testing import CliRunner

    from ferrodicom.cli import serve

    seen = {}
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\narchive = "{tmp_path / "a"}"\n\n[qr]\nmax_results = 7\npn_matching = "exact"\n')

    def fake_serve(cfg, verbose):
        seen.update(max_results=cfg.max_results, pn=cfg.pn_matching, relational=cfg.relational)

    original = serve._serve
    serve._serve = fake_serve
    try:
        r = CliRunner().invoke(serve.command, ["--config", str(path), "--port", "0", "--no-relational",
                                               "--max-results", "9"])  # fmt: skip
    finally:
        serve._serve = original
    assert r.exit_code == 0, r.output
    assert seen == {"max_results": 9, "pn": "exact", "relational": False}
