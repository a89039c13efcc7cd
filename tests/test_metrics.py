"""``serve --metrics-port``: Prometheus text format whose counts are what was sent (scraped during and after a
DCMTK storescu run), and the periodic rate line of the log."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request

from test_storage import make_instance

from conftest import dcmtk, dcmtk_env, ferrodicom_cli, free_port, wait_for_port
from ferrodicom.metrics import RateLog

N = 12


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_count_what_storescu_sent(tmp_path):
    files = tmp_path / "in"
    files.mkdir()
    for i in range(N):
        make_instance(files / f"{i}.dcm")
    port, mport = free_port(), free_port()
    proc = subprocess.Popen(
        [*ferrodicom_cli(), "serve", "--bind", "127.0.0.1", "--port", str(port), "--metrics-port", str(mport),
         "--aet", "FERRO", "--require-called-aet", "--durability", "none", str(tmp_path / "arc")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, proc)
        wait_for_port(mport, proc)
        before = scrape(mport)
        assert before["ferrodicom_instances_received_total"] == 0
        store = subprocess.Popen(
            [dcmtk("storescu"), "-aec", "FERRO", "--scan-directories", "127.0.0.1", str(port), str(files)],
            env=dcmtk_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        during = []
        while store.poll() is None:
            during.append(scrape(mport)["ferrodicom_instances_received_total"])
            time.sleep(0.01)
        assert store.returncode == 0, store.stdout.read()
        assert during == sorted(during), "counters only grow"
        subprocess.run([dcmtk("echoscu"), "-aec", "FERRO", "127.0.0.1", str(port)], env=dcmtk_env(), check=True)
        rejected = subprocess.run([dcmtk("echoscu"), "-aec", "WRONG", "127.0.0.1", str(port)], env=dcmtk_env())
        assert rejected.returncode != 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            after = scrape(mport)
            if after["ferrodicom_associations_active"] == 0:
                break
            time.sleep(0.05)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert f"metrics on port {mport}" in out
    size = sum(f.stat().st_size for f in files.iterdir())
    assert after["ferrodicom_instances_received_total"] == N
    # The data sets, without the 132-byte preamble and File Meta of each file (storescu sends no File Meta).
    assert 0 < size - after["ferrodicom_bytes_received_total"] < N * 400
    assert after['ferrodicom_responses_total{command="C-STORE",status="0x0000"}'] == N
    assert after['ferrodicom_responses_total{command="C-ECHO",status="0x0000"}'] == 1
    assert after["ferrodicom_associations_total"] == 2
    assert after['ferrodicom_associations_rejected_total{reason="7",result="1",source="1"}'] == 1
    assert after["ferrodicom_store_latency_seconds_count"] == N
    assert after['ferrodicom_store_latency_seconds_bucket{le="+Inf"}'] == N
    assert 0 < after["ferrodicom_store_latency_seconds_sum"] < 10
    assert after["ferrodicom_index_rows_total"] == N
    assert any(re.match(r'ferrodicom_store_latency_seconds_bucket\{le="0\.00025"\}', k) for k in after)


class _FakeServer:
    """Counters as a server reports them, moved forward by hand."""

    def __init__(self) -> None:
        self.m = {"instances_received": 0, "bytes_received": 0, "associations_active": 0, "statuses": {}}

    def metrics(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.m.items()}


def test_the_rate_line_says_what_happened_since_the_last():
    server = _FakeServer()
    rates = RateLog(server, interval=3600)
    rates._last = (time.monotonic() - 2.0, server.metrics())
    server.m.update(instances_received=100, bytes_received=52_000_000, associations_active=2,
                    statuses={(0x8001, 0x0000): 98, (0x8001, 0xA700): 2})  # fmt: skip
    line = rates.line()
    assert re.match(r"100 instances \(\d+\.\d/s\), 52\.0 MB \(\d+\.\d MB/s\) in 2 s; 2 association\(s\) open; "
                    r"2 response\(s\) not Success$", line), line  # fmt: skip
    assert rates.line().startswith("0 instances")
