"""C-ECHO (PS3.7 §9.1.5) throughput: ferrodicom against pynetdicom and DCMTK, same run.

1. ``test_echo_one_association``: C-ECHO round trips per second on ONE association, for every
   SCU (ferrodicom, pynetdicom, DCMTK echoscu) against every SCP (``ferrodicom serve``,
   pynetdicom, DCMTK storescp) plus ferrodicom against its own SCP in-process.
2. ``test_associate_echo_release``: associate + one C-ECHO + release per second from one process
   (ferrodicom and pynetdicom SCUs); DCMTK as one echoscu process per association.

Every round does a fixed number of operations chosen once per benchmark by a short calibration
(about ``TARGET_ROUND_S`` of work, clamped), so each run is bounded. Rates use the median round.
Run: ``python -m pytest bench/bench_echo.py --benchmark-only -q`` (see bench/README.md).
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import time
from typing import Any, Callable

import pytest

# conftest.py is not imported (pytest forbids it); these names must match its SCP names.
FD = "ferrodicom"
FD_INPROC = "ferrodicom (in-process)"
PYND = "pynetdicom"
DCMTK = "DCMTK"
HOST = "127.0.0.1"
DCMTK_ECHOSCU = "/usr/bin/echoscu"
#: Without TCP_NODELAY=1 DCMTK leaves Nagle's algorithm on and waits ~40 ms per message.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}

ROUNDS = 7
WARMUP_ROUNDS = 1
#: Seconds of work per round the calibration aims at.
TARGET_ROUND_S = 0.4
#: Seconds spent estimating an operation's cost before a benchmark.
CALIBRATE_S = 0.1
#: Bounds on operations per round (so a very fast or very slow peer still gives a bounded run).
MAX_ECHOES = 50_000
#: echoscu --repeat bound (its rounds include process start-up, so fewer suffice).
MAX_DCMTK_ECHOES = 20_000
#: Kept low: each association leaves a TIME_WAIT socket on loopback for 60 s, and once tens of
#: thousands pile up, connect() slows by orders of magnitude (ephemeral-port search).
MAX_ASSOCIATIONS = 300
#: Operations timed one by one for the latency percentiles (after the benchmark).
MAX_LATENCY_SAMPLES = 2_000
#: `echoscu --repeat 1` runs timed to measure process start-up + association set-up.
DCMTK_BASELINE_RUNS = 7
CALLED_AE = "ANY-SCP"
#: pynetdicom SCU DIMSE timeout: how long a C-ECHO-RSP that pynetdicom misrouted stalls a round.
PYND_DIMSE_TIMEOUT = 1.0
#: Lost pynetdicom responses tolerated per benchmark (see PyndScu).
MAX_LOST = 10


def _count_for(seconds_per_op: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, TARGET_ROUND_S / max(seconds_per_op, 1e-7))))


def _calibrate(op: Callable[[], Any], lo: int, hi: int) -> int:
    """Operations per round: ``op`` is run (bounded: at most ``hi`` times, stopping after
    CALIBRATE_S) to estimate its cost, which sets a round to about TARGET_ROUND_S."""
    done = 0
    t0 = time.perf_counter()
    elapsed = 0.0
    while done < hi and elapsed < CALIBRATE_S:
        op()
        done += 1
        elapsed = time.perf_counter() - t0
    return _count_for(elapsed / done, lo, hi)


def _latency_info(one: Callable[[], None], n: int) -> dict[str, float]:
    """Times ``n`` (at most MAX_LATENCY_SAMPLES) single operations, outside the benchmark, for
    p50/p99/max latency in µs."""
    lat = []
    for _ in range(min(n, MAX_LATENCY_SAMPLES)):
        t = time.perf_counter()
        one()
        lat.append(time.perf_counter() - t)
    lat.sort()
    return {
        "latency_p50_us": round(lat[len(lat) // 2] * 1e6, 1),
        "latency_p99_us": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6, 1),
        "latency_max_us": round(lat[-1] * 1e6, 1),
    }


def _latency_note(latency: dict[str, float], unit: str, per_unit_us: float) -> str:
    p50, p99, mx = (latency[f"latency_{k}_us"] / per_unit_us for k in ("p50", "p99", "max"))
    return f"latency p50 {p50:.3g} {unit}, p99 {p99:.3g} {unit}, max {mx:.3g} {unit}"


def _lost_note(lost: dict[str, int]) -> str:
    n = lost.get("pynetdicom_lost_responses", 0)
    return f"; {n} response(s) lost by pynetdicom, {PYND_DIMSE_TIMEOUT:g} s stall each" if n else ""


def _rates(benchmark: Any, ops: int, overhead: float = 0.0) -> tuple[float, float]:
    """(median-round rate, best-round rate) for ``ops`` operations per round, each round's time
    less ``overhead`` seconds."""
    st = benchmark.stats.stats
    return ops / max(st.median - overhead, 1e-9), ops / max(st.min - overhead, 1e-9)


# --- SCUs --------------------------------------------------------------------------------------


class FdScu:
    """ferrodicom's public API: ``AE.associate`` / ``Association.send_c_echo`` / ``release``."""

    name = FD
    lost = 0

    def __init__(self) -> None:
        from ferrodicom import AE
        from ferrodicom.uids import IMPLICIT_VR_LE, VERIFICATION

        self.ae = AE("FDSCU")
        self.ae.add_requested_context(VERIFICATION, IMPLICIT_VR_LE)

    def open(self, port: int) -> Any:
        assoc = self.ae.associate(HOST, port, ae_title=CALLED_AE)
        assert assoc.is_established, f"ferrodicom association to port {port} failed: {assoc.error}"
        return assoc

    @staticmethod
    def echo(assoc: Any) -> bool:
        status = assoc.send_c_echo()
        assert int(status) == 0, f"C-ECHO status {status}"
        return True

    @staticmethod
    def close(assoc: Any) -> None:
        if assoc.is_established:
            assoc.release()
            assert assoc.is_released

    def finish(self) -> dict[str, int]:
        return {}


class _Misrouted(logging.Handler):
    """Counts pynetdicom's "Received unexpected C-ECHO service message" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Received unexpected C-ECHO" in record.getMessage():
            self.count += 1


class PyndScu:
    """pynetdicom's public API, default settings except a DIMSE timeout of PYND_DIMSE_TIMEOUT s.

    pynetdicom's send_c_echo() races its own reactor thread (association.py: the reactor can
    pass its pause checkpoint just before send_c_echo clears it); against a fast SCP the reactor
    sometimes takes the C-ECHO-RSP off the queue, logs "Received unexpected C-ECHO service
    message" and send_c_echo() waits for the DIMSE timeout, then aborts. Such a lost response is
    counted (and must match a logged misrouting), the association re-opened, and the stall stays
    in the timed round; more than MAX_LOST fails the benchmark."""

    name = PYND

    def __init__(self) -> None:
        from pydicom.uid import ImplicitVRLittleEndian
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification

        self.ae = AE(ae_title="PYNDSCU")
        self.ae.dimse_timeout = PYND_DIMSE_TIMEOUT
        self.ae.add_requested_context(Verification, ImplicitVRLittleEndian)
        self.lost = 0
        self._misrouted = _Misrouted()
        logging.getLogger("pynetdicom.association").addHandler(self._misrouted)

    def open(self, port: int) -> Any:
        assoc = self.ae.associate(HOST, port, ae_title=CALLED_AE)
        assert assoc.is_established, f"pynetdicom association to port {port} failed"
        return assoc

    def echo(self, assoc: Any) -> bool:
        rsp = assoc.send_c_echo()
        status = getattr(rsp, "Status", None)
        if status is None and assoc.is_aborted:
            self.lost += 1
            assert self.lost <= MAX_LOST, f"pynetdicom lost {self.lost} C-ECHO responses"
            return False
        assert status == 0, f"C-ECHO status {status!r}"
        return True

    @staticmethod
    def close(assoc: Any) -> None:
        if assoc.is_established:
            assoc.release()
            assert assoc.is_released

    def finish(self) -> dict[str, int]:
        """Stops counting; every lost response must have been logged as misrouted by pynetdicom."""
        logging.getLogger("pynetdicom.association").removeHandler(self._misrouted)
        assert self.lost <= self._misrouted.count, (
            f"{self.lost} C-ECHO responses lost but only {self._misrouted.count} misrouted by pynetdicom"
        )
        return {"pynetdicom_lost_responses": self.lost, "pynetdicom_misrouted_responses": self._misrouted.count}


def _echoscu(port: int, repeat: int, debug: bool = False) -> str:
    """Runs DCMTK echoscu (never pynetdicom's script of the same name) and checks it succeeded."""
    argv = [DCMTK_ECHOSCU, "-aec", CALLED_AE, "-to", "10", "-ta", "10", "-td", "10"]
    argv += ["-d"] if debug else []
    argv += ["--repeat", str(repeat), HOST, str(port)]
    p = subprocess.run(argv, env=DCMTK_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0 and "E: " not in out and "F: " not in out, f"echoscu failed ({p.returncode}):\n{out}"
    return out


def _check_echoscu_reuses_association(port: int) -> None:
    """``echoscu --repeat N`` must send N C-ECHOs on one association (checked in its -d log)."""
    out = _echoscu(port, 3, debug=True)
    assert out.count("Requesting Association") == 1, out
    assert out.count("Sending Echo Request") == 3, out
    assert out.count("Received Echo Response (Success)") == 3, out
    assert out.count("Releasing Association") == 1, out


def _time(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# --- 1. C-ECHO round trips on one association ----------------------------------------------------

ECHO_PAIRS = [(scu, scp) for scu in (FD, PYND, DCMTK) for scp in (FD, PYND, DCMTK)] + [(FD, FD_INPROC)]


@pytest.mark.parametrize(("scu_name", "scp_name"), ECHO_PAIRS, ids=[f"{a}->{b}" for a, b in ECHO_PAIRS])
def test_echo_one_association(benchmark: Any, rates: Any, scp: Any, scu_name: str, scp_name: str) -> None:
    benchmark.group = "C-ECHO on one association"
    benchmark.extra_info.update({"scu": scu_name, "scp": scp_name})
    if scu_name == DCMTK:
        _echo_dcmtk(benchmark, rates, scp, scp_name)
        return
    scu = FdScu() if scu_name == FD else PyndScu()
    held = [scu.open(scp.port)]

    def one() -> None:
        if not scu.echo(held[0]):  # lost response (pynetdicom only): association aborted
            held[0] = scu.open(scp.port)

    try:
        n = _calibrate(one, 50, MAX_ECHOES)

        def echoes() -> None:
            for _ in range(n):
                one()

        benchmark.pedantic(echoes, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
        latency = _latency_info(one, n)
        scu.close(held[0])
    finally:
        lost = scu.finish()
    if benchmark.disabled:  # --benchmark-disable: ran once (statuses checked), nothing measured
        return
    rate, best = _rates(benchmark, n)
    benchmark.extra_info.update(
        {"echoes_per_round": n, "echoes_per_second": round(rate, 1), "echoes_per_second_best": round(best, 1)}
    )
    benchmark.extra_info.update({**latency, **lost})
    note = _latency_note(latency, "µs", 1.0) + _lost_note(lost)
    rates.record(rates.ECHO, scu_name, scp_name, rate, best, note)


def _echo_dcmtk(benchmark: Any, rates: Any, scp: Any, scp_name: str) -> None:
    """echoscu --repeat n: times the process, minus the median of --repeat 1 runs (start-up +
    association set-up and release), so the rate is (n - 1) / (t(n) - t(1))."""
    _check_echoscu_reuses_association(scp.port)
    baseline = statistics.median(_time(lambda: _echoscu(scp.port, 1)) for _ in range(DCMTK_BASELINE_RUNS))
    probe = 1000 if scp_name != PYND else 50
    per_echo = max(_time(lambda: _echoscu(scp.port, probe)) - baseline, 1e-6) / (probe - 1)
    n = _count_for(per_echo, 50, MAX_DCMTK_ECHOES)
    benchmark.pedantic(lambda: _echoscu(scp.port, n), rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    if benchmark.disabled:  # --benchmark-disable: ran once (statuses checked), nothing measured
        return
    rate, best = _rates(benchmark, n - 1, baseline)
    raw, raw_best = _rates(benchmark, n)
    benchmark.extra_info.update(
        {
            "echoes_per_round": n,
            "echoes_per_second": round(rate, 1),
            "echoes_per_second_best": round(best, 1),
            "echoes_per_second_incl_startup": round(raw, 1),
            "echoes_per_second_incl_startup_best": round(raw_best, 1),
            "baseline_repeat1_seconds": round(baseline, 6),
        }
    )
    note = f"(n-1)/(t(n)-t(1)), n={n}, t(1)={baseline * 1e3:.1f} ms"
    rates.record(rates.ECHO, DCMTK, scp_name, rate, best, note)
    rates.record(rates.ECHO_DCMTK_RAW, DCMTK, scp_name, raw, raw_best, f"n/t(n), n={n}")


# --- 2. associate + echo + release ---------------------------------------------------------------

ASSOC_PAIRS = [(scu, scp) for scu in (FD, PYND) for scp in (FD, PYND, DCMTK)] + [(FD, FD_INPROC)]
DCMTK_ASSOC_SCPS = [FD, PYND, DCMTK]


@pytest.mark.parametrize(("scu_name", "scp_name"), ASSOC_PAIRS, ids=[f"{a}->{b}" for a, b in ASSOC_PAIRS])
def test_associate_echo_release(benchmark: Any, rates: Any, scp: Any, scu_name: str, scp_name: str) -> None:
    benchmark.group = "associate + C-ECHO + release"
    benchmark.extra_info.update({"scu": scu_name, "scp": scp_name})
    scu = FdScu() if scu_name == FD else PyndScu()

    def cycle() -> None:
        assoc = scu.open(scp.port)
        if scu.echo(assoc):  # else a lost response (pynetdicom only) aborted the association
            scu.close(assoc)

    try:
        n = _calibrate(cycle, 5, MAX_ASSOCIATIONS)

        def cycles() -> None:
            for _ in range(n):
                cycle()

        benchmark.pedantic(cycles, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
        latency = _latency_info(cycle, min(n, 200))
    finally:
        lost = scu.finish()
    if benchmark.disabled:  # --benchmark-disable: ran once (statuses checked), nothing measured
        return
    rate, best = _rates(benchmark, n)
    benchmark.extra_info.update(
        {
            "associations_per_round": n,
            "associations_per_second": round(rate, 1),
            "associations_per_second_best": round(best, 1),
        }
    )
    benchmark.extra_info.update({**latency, **lost})
    note = _latency_note(latency, "ms", 1e3) + _lost_note(lost)
    rates.record(rates.ASSOC, scu_name, scp_name, rate, best, note)


@pytest.mark.parametrize("scp_name", DCMTK_ASSOC_SCPS, ids=[f"{DCMTK}->{s}" for s in DCMTK_ASSOC_SCPS])
def test_echoscu_process_per_association(benchmark: Any, rates: Any, scp: Any, scp_name: str) -> None:
    """DCMTK's echoscu opens one association per process: this rate includes process start-up."""
    benchmark.group = "echoscu process per association"
    benchmark.extra_info.update({"scu": DCMTK, "scp": scp_name})
    probe = 3
    n = _count_for(_time(lambda: [_echoscu(scp.port, 1) for _ in range(probe)]) / probe, 3, MAX_ASSOCIATIONS)

    def runs() -> None:
        for _ in range(n):
            _echoscu(scp.port, 1)

    benchmark.pedantic(runs, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    if benchmark.disabled:  # --benchmark-disable: ran once (statuses checked), nothing measured
        return
    rate, best = _rates(benchmark, n)
    benchmark.extra_info.update(
        {
            "associations_per_round": n,
            "associations_per_second": round(rate, 1),
            "associations_per_second_best": round(best, 1),
        }
    )
    rates.record(rates.ASSOC_DCMTK, DCMTK, scp_name, rate, best, "one echoscu process each")
