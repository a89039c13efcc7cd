"""The Q/R peers the interop tests and the benchmarks start: ``ferrodicom serve``, DCMTK's ``dcmqrscp`` (its
configuration file written here, its storage area filled with ``dcmqridx``) and pynetdicom's ``qrscp`` app
(its ini file written here, filled by C-STORE), each in its own process on 127.0.0.1."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from processes import dcmtk, dcmtk_env, ferrodicom_cli, free_port, stop, wait_for_port  # noqa: F401 (bench_qr imports two)


@contextlib.contextmanager
def serve(
    folder: Path, aet: str = "FERRO", peers: dict[str, int] | None = None, *extra: str, procs: list | None = None
) -> Iterator[int]:
    """``ferrodicom serve`` on a free port; ``peers``: AE title -> port on 127.0.0.1; its process is appended
    to ``procs``."""
    port = free_port()
    args = [*ferrodicom_cli(), "serve", "--aet", aet, "--port", str(port), "--bind", "127.0.0.1"]
    for title, p in (peers or {}).items():
        args += ["--peer", f"{title}=127.0.0.1:{p}"]
    proc = subprocess.Popen([*args, *extra, str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if procs is not None:
        procs.append(proc)
    try:
        wait_for_port(port, proc, timeout=30.0)
        yield port
    finally:
        stop(proc)


@contextlib.contextmanager
def dcmqrscp(area: Path, files: list[Path], aet: str = "DCMQR", peers: dict[str, int] | None = None,
             max_studies: int = 1000, max_bytes: str = "10000mb") -> Iterator[int]:  # fmt: skip
    """DCMTK's dcmqrscp serving a storage area that indexes ``files`` in place (dcmqridx); ``peers`` become its
    HostTable (move destinations). A process per association: its single-process mode (-s) crashes after the
    first release (3.6.7, Debian)."""
    area.mkdir(parents=True, exist_ok=True)
    if files:
        for start in range(0, len(files), 500):  # dcmqridx takes the files on its command line
            r = subprocess.run([dcmtk("dcmqridx"), str(area), *map(str, files[start : start + 500])],
                               env=dcmtk_env(), capture_output=True, text=True)  # fmt: skip
            if r.returncode or "ALERT" in r.stderr:  # its index.dat stops at 32 MiB (~4,172 instances)
                raise RuntimeError(f"dcmqridx failed after {start} files: {r.stderr[:300]}")
    port = free_port()
    hosts = "\n".join(f"{t.lower()} = ({t}, 127.0.0.1, {p})" for t, p in (peers or {}).items())
    cfg = area.parent / f"{area.name}.cfg"
    cfg.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 131072\nMaxAssociations = 16\n"
        f"HostTable BEGIN\n{hosts}\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\n{aet} {area} RW ({max_studies}, {max_bytes}) ANY\nAETable END\n"
    )
    proc = subprocess.Popen([dcmtk("dcmqrscp"), "-c", str(cfg), str(port)], env=dcmtk_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for_port(port, proc, timeout=30.0)
        yield port
    finally:
        stop(proc)


@contextlib.contextmanager
def pynetdicom_qrscp(folder: Path, aet: str = "PYNQR", peers: dict[str, int] | None = None) -> Iterator[int]:
    """pynetdicom's qrscp app with its database and instances in ``folder``; ``peers`` its move destinations.
    Fill it with C-STORE (``fill``)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    moves = "\n".join(f"[{t}]\n    address: 127.0.0.1\n    port: {p}\n" for t, p in (peers or {}).items())
    ini = folder / "qrscp.ini"
    ini.write_text(
        f"[DEFAULT]\n    ae_title: {aet}\n    port: {port}\n    max_pdu: 262144\n    acse_timeout: 30\n"
        f"    dimse_timeout: 30\n    network_timeout: 30\n    bind_address: 127.0.0.1\n"
        f"    instance_location: {folder / 'instances'}\n    database_location: {folder / 'instances.sqlite'}\n"
        f"    log_identifier: False\n\n{moves}"
    )
    proc = subprocess.Popen([sys.executable, "-m", "pynetdicom", "qrscp", "-q", "-c", str(ini)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for_port(port, proc, timeout=30.0)
        yield port
    finally:
        stop(proc)


def fill(port: int, aet: str, files: list[Path]) -> None:
    """Stores ``files`` into the SCP at ``port`` (ferrodicom's storage SCU)."""
    from ferrodicom.services.storage.scu import store

    report = store("127.0.0.1", port, files, called_ae=aet)
    assert not report.failed and not report.skipped, (report.failed, report.skipped)
