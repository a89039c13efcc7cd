"""Shared fixtures: free ports, real peers (DCMTK, pynetdicom) and ferrodicom servers, all on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import dcmtk, dcmtk_env, ferrodicom_cli, free_port, stop, wait_for_port  # noqa: F401 (the tests import them from here)

from ferrodicom import AE
from ferrodicom.uids import VERIFICATION

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def echo_scp() -> Iterator:
    """An in-process ferrodicom Verification SCP on a free port."""
    ae = AE("FERRO-SCP")
    ae.add_supported_context(VERIFICATION)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    yield server
    server.shutdown()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """``ferrodicom serve`` in its own process (the README's main command)."""
    p = free_port()
    proc = subprocess.Popen(
        [*ferrodicom_cli(), "serve", "--aet", "FERRO", "--port", str(p), "--bind", "127.0.0.1", str(tmp_path / "a")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(p, proc)
        yield p, proc
    finally:
        stop(proc)


@pytest.fixture
def archive_node(tmp_path: Path) -> Iterator[tuple]:
    """An in-process Verification + Storage SCP ("FERRO") into a fresh archive (durability full)."""
    from ferrodicom import Archive
    from ferrodicom.services.storage import StorageSCP

    archive = Archive(tmp_path / "archive", durability="full")
    ae = AE("FERRO")
    ae.add_supported_context(VERIFICATION)
    ae.add_service(StorageSCP(archive))
    server = ae.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    yield server, archive
    server.shutdown()
    archive.close()


@pytest.fixture
def dcmtk_storescp(tmp_path: Path) -> Iterator[int]:
    """DCMTK's storescp (it answers C-ECHO) on a free port, AE title DCMTK."""
    p = free_port()
    out = tmp_path / "storescp"
    out.mkdir()
    proc = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "DCMTK", "-od", str(out), str(p)],
        env=dcmtk_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(p, proc)
        yield p
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def _mounted(where: Path, what: str, *mount_args: str) -> Iterator[Path]:
    """``mount *mount_args where`` for the block, lazily unmounted after it. Skips the test when not root
    (mounting needs it; CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip(f"mounting {what} needs root (CI runs as root)")
    where.mkdir(exist_ok=True)
    subprocess.run(["mount", *mount_args, str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@contextlib.contextmanager
def small_ext4(where: Path, size_mib: int) -> Iterator[Path]:
    """A fresh ext4 filesystem of ``size_mib`` MiB (an image file, loop-mounted at ``where``) for the block: a
    small or full disk where direct I/O works (tmpfs has none). scripts/test-all installs e2fsprogs for
    ``mkfs.ext4``."""
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root (CI runs as root)")
    image = where.with_name(where.name + ".img")
    with open(image, "wb") as f:
        f.truncate(size_mib << 20)
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
        with _mounted(where, "a loop device", "-o", "loop", str(image)):
            yield where
    finally:
        image.unlink()


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``"3m"``) mounted at ``where`` for the block: a small or full disk."""
    with _mounted(where, "a small tmpfs", "-t", "tmpfs", "-o", f"size={size}", "tmpfs"):
        yield where
