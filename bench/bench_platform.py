"""The service platform's own speed (issue 19): the same pynetdicom-style handlers run on ferrodicom's AE and on
pynetdicom's AE, each in its own process, driven by DCMTK in the same run.

1. ``test_find_100k``: ``findscu`` against a C-FIND handler yielding 100,000 matches (pending responses per
   second), and the SCP process's peak RSS while it streams them.
2. ``test_echo_python_handler``: ``echoscu --repeat N`` (one association) against an ``EVT_C_ECHO`` handler
   (responses per second; each run includes echoscu's start-up, measured and reported beside).

Run: ``python -m pytest bench/bench_platform.py --benchmark-only -s``. Ratios are printed at the end.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from processes import dcmtk_env, free_port  # noqa: E402

HOST = "127.0.0.1"
FINDSCU = "/usr/bin/findscu"
ECHOSCU = "/usr/bin/echoscu"
DCMTK_ENV = dcmtk_env()
MATCHES = int(os.environ.get("BENCH_PLATFORM_MATCHES", "100000"))
ECHOES = int(os.environ.get("BENCH_PLATFORM_ECHOES", "5000"))
FIND = "1.2.840.10008.5.1.4.1.2.1.1"  # Patient Root Query/Retrieve Information Model - FIND

#: The SCP: identical handler code for both toolkits, written as pynetdicom's documentation writes handlers.
#: argv: toolkit, port, number of matches.
SCP_SCRIPT = """
import sys
from pydicom.dataset import Dataset
toolkit, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if toolkit == "ferrodicom":
    from ferrodicom import AE, evt
else:
    from pynetdicom import AE, evt

def on_echo(event):
    return 0x0000

def on_find(event):
    for i in range(n):
        if event.is_cancelled:
            yield (0xFE00, None)
            return
        ds = Dataset()
        ds.QueryRetrieveLevel = "PATIENT"
        ds.PatientID = f"P{i:06d}"
        ds.PatientName = f"NAME^{i}"
        yield (0xFF00, ds)

ae = AE("BENCH")
ae.maximum_pdu_size = 16384
ae.network_timeout = None  # pynetdicom aborts an association silent for 60 s, as findscu is while 100k arrive
ae.add_supported_context("1.2.840.10008.1.1")
ae.add_supported_context("1.2.840.10008.5.1.4.1.2.1.1")
ae.start_server(("127.0.0.1", port), block=True,
                evt_handlers=[(evt.EVT_C_ECHO, on_echo), (evt.EVT_C_FIND, on_find)])
"""

TOOLKITS = ("ferrodicom", "pynetdicom")
_results: dict[tuple[str, str], Any] = {}


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.fixture(scope="module", params=TOOLKITS)
def scp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    toolkit = request.param
    port = free_port()
    log = tmp_path_factory.mktemp("platform") / f"{toolkit}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", SCP_SCRIPT, toolkit, str(port), str(MATCHES)], stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = subprocess.run([ECHOSCU, HOST, str(port)], env=DCMTK_ENV, capture_output=True)
        if r.returncode == 0:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"{toolkit} SCP did not start: {log.read_text()[-2000:]}")
    yield toolkit, port, proc
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_find_100k(benchmark: Any, scp: Any) -> None:
    toolkit, port, proc = scp
    argv = [FINDSCU, "-P", "-aec", "BENCH", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID", "-k",
            "PatientName", HOST, str(port)]  # fmt: skip
    before = rss_mb(proc.pid)
    counted: list[int] = []

    def run() -> None:
        r = subprocess.run([*argv[:1], "-v", "-sr", *argv[1:]], env=DCMTK_ENV, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        counted.append((r.stdout + r.stderr).count("Received Find Response"))

    rounds = 1 if toolkit == "pynetdicom" else 3
    benchmark.pedantic(run, rounds=rounds, iterations=1)
    assert counted[-1] == MATCHES, f"{counted[-1]} pending responses, expected {MATCHES}"
    times = benchmark.stats.stats.data
    _results[("find", toolkit)] = (MATCHES / statistics.median(times), MATCHES / min(times), before,
                                   peak_rss_mb(proc.pid))  # fmt: skip


def test_echo_python_handler(benchmark: Any, scp: Any) -> None:
    toolkit, port, _proc = scp
    n = ECHOES if toolkit == "ferrodicom" else max(ECHOES // 5, 200)

    def run() -> None:
        r = subprocess.run([ECHOSCU, "--repeat", str(n), HOST, str(port)], env=DCMTK_ENV, capture_output=True)
        assert r.returncode == 0

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    start = [time.perf_counter()]
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([ECHOSCU, "--repeat", "1", HOST, str(port)], env=DCMTK_ENV, capture_output=True)
        start.append(time.perf_counter() - t0)
    startup = statistics.median(start[1:])
    times = benchmark.stats.stats.data
    _results[("echo", toolkit)] = (n / (statistics.median(times) - startup), n / (min(times) - startup), startup)


def teardown_module() -> None:
    lines = ["", "platform rates (same handlers, DCMTK driving; see bench/README.md):"]
    for kind in ("find", "echo"):
        fd, pn = _results.get((kind, "ferrodicom")), _results.get((kind, "pynetdicom"))
        for toolkit, r in (("ferrodicom", fd), ("pynetdicom", pn)):
            if r is None:
                continue
            if kind == "find":
                rate = f"{r[0]:>9,.0f}/s median, {r[1]:>9,.0f}/s best"
                lines.append(f"  C-FIND {MATCHES:,} matches, {toolkit:<10}: {rate}; SCP RSS {r[2]:.1f} MB before, "
                             f"peak {r[3]:.1f} MB")  # fmt: skip
            else:
                lines.append(f"  C-ECHO Python handler, {toolkit:<10}: {r[0]:>9,.0f}/s median, {r[1]:>9,.0f}/s best"
                             f" (echoscu start-up {r[2] * 1000:.0f} ms taken out)")  # fmt: skip
        if fd and pn:
            lines.append(f"  {kind}: ferrodicom/pynetdicom {fd[0] / pn[0]:.1f}x median ({fd[1] / pn[1]:.1f}x best)")
    print("\n".join(lines))
