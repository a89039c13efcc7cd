"""Fixtures for the C-ECHO benchmarks: the SCPs under test and the end-of-session rate table.

Every SCP listens on 127.0.0.1 on a port chosen at run time. The SCPs in their own process
(``ferrodicom serve``, a pynetdicom AE, DCMTK ``storescp``) are started once per session and
stopped (SIGTERM, then SIGKILL after 5 s) at its end. Rates recorded by the benchmarks through
the ``rates`` fixture are printed as a table with ferrodicom/DCMTK and ferrodicom/pynetdicom
ratios by :func:`pytest_terminal_summary`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from processes import dcmtk_env, free_port  # noqa: E402

HOST = "127.0.0.1"
DCMTK_ECHOSCU = "/usr/bin/echoscu"
DCMTK_STORESCP = "/usr/bin/storescp"
#: Without TCP_NODELAY=1 DCMTK leaves Nagle's algorithm on and waits ~40 ms per message.
DCMTK_ENV = dcmtk_env()
#: How long an SCP process may take to answer its first C-ECHO.
STARTUP_TIMEOUT = 30.0

# Names used in results and in the summary table.
FD = "ferrodicom"
FD_INPROC = "ferrodicom (in-process)"
PYND = "pynetdicom"
DCMTK = "DCMTK"

#: A pynetdicom Verification SCP (PS3.4 Annex A), default settings except maximum_associations
#: (64, as ferrodicom's default), so rapid sequential associations are never refused.
PYND_SCP_SCRIPT = """
import sys
from pynetdicom import AE
from pynetdicom.sop_class import Verification
ae = AE(ae_title="PYNETDICOM")
ae.maximum_associations = 64
ae.add_supported_context(Verification)
ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True)
"""


def echo_probe(port: int) -> bool:
    """One association with one C-ECHO through ferrodicom: True when the SCP answered Success."""
    from ferrodicom import AE
    from ferrodicom.uids import IMPLICIT_VR_LE, VERIFICATION

    ae = AE("PROBE")
    ae.acse_timeout = ae.dimse_timeout = ae.connection_timeout = 2.0
    ae.add_requested_context(VERIFICATION, IMPLICIT_VR_LE)
    assoc = ae.associate(HOST, port, ae_title="ANY-SCP")
    if not assoc.is_established:
        return False
    try:
        return int(assoc.send_c_echo()) == 0
    finally:
        assoc.release()


@dataclass
class Scp:
    """An SCP under test."""

    name: str
    port: int
    process: Optional[subprocess.Popen] = None
    log: Optional[Path] = None
    stop: Optional[Callable[[], None]] = None

    def close(self) -> None:
        if self.stop is not None:
            self.stop()
        p = self.process
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def _start_process(name: str, argv: Callable[[int], list[str]], logdir: Path, env: Optional[dict] = None) -> Scp:
    """Starts ``argv(port)`` and waits (bounded) until it answers C-ECHO; tries 3 ports."""
    last = ""
    for attempt in range(3):
        port = free_port()
        log = logdir / f"{name.replace(' ', '_')}-{attempt}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv(port), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=logdir)
        scp = Scp(name, port, proc, log)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if echo_probe(port):
                return scp
            time.sleep(0.1)
        scp.close()
        last = log.read_text(errors="replace")[-2000:]
    pytest.fail(f"{name} SCP did not answer C-ECHO within {STARTUP_TIMEOUT} s (3 ports tried); log:\n{last}")


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-echo")


@pytest.fixture(scope="session")
def fd_process_scp(bench_dir: Path) -> Iterator[Scp]:
    """``ferrodicom serve`` in its own process (C-ECHO answered in Rust)."""
    archive = bench_dir / "archive"
    scp = _start_process(
        FD,
        lambda port: [
            sys.executable,
            "-m",
            "ferrodicom.cli.main",
            "serve",
            "--bind",
            HOST,
            "--port",
            str(port),
            str(archive),
        ],  # fmt: skip
        bench_dir,
    )
    yield scp
    scp.close()


@pytest.fixture(scope="session")
def fd_inproc_scp() -> Iterator[Scp]:
    """A ferrodicom SCP started in this process (``start_server(block=False)``: Rust threads)."""
    from ferrodicom import AE
    from ferrodicom.uids import VERIFICATION

    ae = AE("FERRODICOM")
    ae.add_supported_context(VERIFICATION)
    server = ae.start_server((HOST, 0), block=False)
    assert server is not None
    scp = Scp(FD_INPROC, server.port, stop=server.shutdown)
    assert echo_probe(scp.port), "in-process ferrodicom SCP did not answer C-ECHO"
    yield scp
    scp.close()


@pytest.fixture(scope="session")
def pynd_scp(bench_dir: Path) -> Iterator[Scp]:
    """A pynetdicom Verification SCP in its own process."""
    scp = _start_process(PYND, lambda port: [sys.executable, "-c", PYND_SCP_SCRIPT, str(port)], bench_dir)
    yield scp
    scp.close()


@pytest.fixture(scope="session")
def dcmtk_scp(bench_dir: Path) -> Iterator[Scp]:
    """DCMTK storescp (answers Verification; ``--ignore`` so nothing is ever stored)."""
    if not os.access(DCMTK_STORESCP, os.X_OK) or not os.access(DCMTK_ECHOSCU, os.X_OK):
        pytest.skip(f"DCMTK not installed ({DCMTK_STORESCP}, {DCMTK_ECHOSCU}): apt-get install dcmtk")
    out = bench_dir / "storescp-out"
    out.mkdir(exist_ok=True)
    scp = _start_process(
        DCMTK,
        lambda port: [DCMTK_STORESCP, "--ignore", "-od", str(out), "-aet", "STORESCP", str(port)],
        bench_dir,
        env=DCMTK_ENV,
    )
    yield scp
    scp.close()


@pytest.fixture
def scp(request: pytest.FixtureRequest) -> Scp:
    """The SCP named by the test's ``scp_name`` parameter."""
    fixture = {FD: "fd_process_scp", FD_INPROC: "fd_inproc_scp", PYND: "pynd_scp", DCMTK: "dcmtk_scp"}
    return request.getfixturevalue(fixture[request.node.callspec.params["scp_name"]])


# --- results and the summary table -------------------------------------------------------------


ECHO = "C-ECHO/s on one association"
ECHO_DCMTK_RAW = "C-ECHO/s incl. echoscu start-up"
ASSOC = "associate+echo+release/s, one process"
ASSOC_DCMTK = "echoscu process per association/s"
SCU_NAMES = (FD, PYND, DCMTK)
SCP_NAMES = (FD, FD_INPROC, PYND, DCMTK)


@dataclass
class Rates:
    """Rates recorded by the benchmarks: (section, scu, scp) -> per second, from the median
    round and from the best (fastest) round, plus a note."""

    ECHO = ECHO
    ECHO_DCMTK_RAW = ECHO_DCMTK_RAW
    ASSOC = ASSOC
    ASSOC_DCMTK = ASSOC_DCMTK

    values: dict[tuple[str, str, str], float] = field(default_factory=dict)
    best: dict[tuple[str, str, str], float] = field(default_factory=dict)
    notes: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def record(self, section: str, scu: str, scp: str, rate: float, best: float, note: str = "") -> None:
        if section not in (ECHO, ECHO_DCMTK_RAW, ASSOC, ASSOC_DCMTK) or scu not in SCU_NAMES or scp not in SCP_NAMES:
            raise ValueError(f"unknown result key {(section, scu, scp)!r}")
        self.values[(section, scu, scp)] = rate
        self.best[(section, scu, scp)] = best
        if note:
            self.notes[(section, scu, scp)] = note


_RATES = pytest.StashKey[Rates]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RATES] = Rates()


@pytest.fixture
def rates(request: pytest.FixtureRequest) -> Rates:
    return request.config.stash[_RATES]


def _ratio(r: Rates, a: Optional[tuple[str, str, str]], b: Optional[tuple[str, str, str]]) -> str:
    """ "median-ratio (best-ratio)" of results a / b, or "-" when either is missing."""
    if a is None or b is None or a not in r.values or b not in r.values:
        return f"{'-':>17}"
    return f"{r.values[a] / r.values[b]:7.2f}x ({r.best[a] / r.best[b]:6.2f}x)"


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    r = config.stash.get(_RATES, None)
    if r is None or not r.values:
        return
    tw = terminalreporter
    tw.section("ferrodicom C-ECHO rates (see bench/README.md)")
    for section in (ECHO, ECHO_DCMTK_RAW, ASSOC, ASSOC_DCMTK):
        keys = sorted((k for k in r.values if k[0] == section), key=lambda k: (k[1], k[2]))
        if not keys:
            continue
        tw.write_line(f"{section}:")
        tw.write_line(f"  {'SCU':<11} {'SCP':<24} {'median/s':>9} {'best/s':>9}  note")
        for k in keys:
            tw.write_line(f"  {k[1]:<11} {k[2]:<24} {r.values[k]:>9,.0f} {r.best[k]:>9,.0f}  {r.notes.get(k, '')}")
    tw.write_line("")
    tw.write_line("Ratios, ferrodicom / other, median round (best round); > 1: ferrodicom faster:")
    for section in (ECHO, ASSOC):
        tw.write_line(f"{section}:")

        def key(scu: str, scp_name: str, section: str = section) -> tuple[str, str, str]:
            # DCMTK's SCU in the association section: its process-per-association figures
            sec = ASSOC_DCMTK if section == ASSOC and scu == DCMTK else section
            return (sec, scu, scp_name)

        for fd_scp in (FD, FD_INPROC):
            if (section, FD, fd_scp) not in r.values:
                continue
            fdfd = (section, FD, fd_scp)
            vs_dcmtk = _ratio(r, fdfd, (section, DCMTK, DCMTK)) if section == ECHO else f"{'n/a':>17}"
            tw.write_line(
                f"  both ends, ferrodicom SCU -> {fd_scp + ' SCP':<28}: vs DCMTK<->DCMTK {vs_dcmtk}"
                f"  vs pynetdicom<->pynetdicom {_ratio(r, fdfd, (section, PYND, PYND))}"
            )
        for scp_name in (FD, PYND, DCMTK):
            vs_dcmtk = _ratio(r, key(FD, scp_name), key(DCMTK, scp_name)) if section == ECHO else f"{'n/a':>17}"
            tw.write_line(
                f"  SCU compared, SCP {scp_name:<10}: ferrodicom/DCMTK {vs_dcmtk}"
                f"  ferrodicom/pynetdicom {_ratio(r, key(FD, scp_name), key(PYND, scp_name))}"
            )
        for scu in (FD, PYND, DCMTK):
            tw.write_line(
                f"  SCP compared, SCU {scu:<10}: ferrodicom/DCMTK {_ratio(r, key(scu, FD), key(scu, DCMTK))}"
                f"  ferrodicom/pynetdicom {_ratio(r, key(scu, FD), key(scu, PYND))}"
            )
    if any(k[0] == ASSOC_DCMTK for k in r.values):
        tw.write_line("  (n/a: echoscu runs one process per association, so its association rates are not compared")
        tw.write_line("   with in-process SCUs; for 'SCP compared, SCU DCMTK' they are compared SCP against SCP.)")
