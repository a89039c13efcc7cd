"""Starting the peers of the tests and benchmarks as processes on 127.0.0.1: a free port, waiting for one to
listen, DCMTK's tools (by their full path, with TCP_NODELAY) and the ``ferrodicom`` command. Free of pytest,
so that the benchmarks use the same helpers (bench/bench_qr.py, through qr_peers.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

DCMTK_BIN = Path("/usr/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    """Waits until something accepts connections on 127.0.0.1:port (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening: {out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def dcmtk(tool: str) -> str:
    """Path of a DCMTK tool (Debian's dcmtk, installed by scripts/test-all); called by its full path, as
    pynetdicom installs scripts of the same names."""
    path = DCMTK_BIN / tool
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: DCMTK is installed by scripts/test-all (apt-get install dcmtk)")
    return str(path)


def dcmtk_env() -> dict[str, str]:
    # DCMTK waits for Nagle/delayed-ACK on loopback without TCP_NODELAY (40 ms per message).
    return {**os.environ, "TCP_NODELAY": "1"}


def ferrodicom_cli() -> list[str]:
    """The ``ferrodicom`` command of the running Python (its script, else ``python -m``)."""
    exe = shutil.which("ferrodicom", path=str(Path(sys.executable).parent)) or shutil.which("ferrodicom")
    return [exe] if exe else [sys.executable, "-m", "ferrodicom.cli.main"]


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not ended after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
