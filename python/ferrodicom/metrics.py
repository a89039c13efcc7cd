"""A running node's figures: Prometheus text format over HTTP (prometheus_client), and a periodic one-line rate
summary for the log. The counters are kept in Rust where the events happen (``_core.Server.metrics()``) and by
the archive; they are read when scraped, so serving them costs nothing per message.

Families: ``ferrodicom_associations_total``, ``ferrodicom_associations_active``,
``ferrodicom_associations_rejected_total{result,source,reason}``, ``ferrodicom_responses_total{command,status}``,
``ferrodicom_instances_received_total``, ``ferrodicom_bytes_received_total``,
``ferrodicom_store_latency_seconds`` (histogram: C-STORE command read to response sent),
``ferrodicom_index_commits_total``, ``ferrodicom_index_rows_total``, ``ferrodicom_index_max_batch_rows``,
``ferrodicom_journal_*_total`` (records appended, appends refused, syncs, checkpoints).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger("ferrodicom.metrics")

#: Response command fields by name (PS3.7 E.1).
RESPONSES = {0x8001: "C-STORE", 0x8010: "C-GET", 0x8020: "C-FIND", 0x8021: "C-MOVE", 0x8030: "C-ECHO",
             0x8100: "N-EVENT-REPORT", 0x8110: "N-GET", 0x8120: "N-SET", 0x8130: "N-ACTION", 0x8140: "N-CREATE",
             0x8150: "N-DELETE"}  # fmt: skip


class NodeCollector(Collector):
    """Reads a server's and an archive's counters at each scrape."""

    def __init__(self, server: Any, archive: Any = None) -> None:
        self.server = server
        self.archive = archive

    def collect(self) -> Iterator[Any]:
        m = self.server.metrics()
        yield CounterMetricFamily("ferrodicom_associations", "Associations established", value=m["associations_total"])
        yield GaugeMetricFamily("ferrodicom_associations_active", "Associations open now",
                                value=m["associations_active"])  # fmt: skip
        rejected = CounterMetricFamily("ferrodicom_associations_rejected", "Association requests rejected, by "
                                       "A-ASSOCIATE-RJ result, source and reason (PS3.8 Table 9-21)",
                                       labels=["result", "source", "reason"])  # fmt: skip
        for (result, source, reason), n in sorted(m["rejected"].items()):
            rejected.add_metric([str(result), str(source), str(reason)], n)
        yield rejected
        responses = CounterMetricFamily("ferrodicom_responses", "DIMSE responses sent, by service and status",
                                        labels=["command", "status"])  # fmt: skip
        for (field, status), n in sorted(m["statuses"].items()):
            responses.add_metric([RESPONSES.get(field, f"0x{field:04X}"), f"0x{status:04X}"], n)
        yield responses
        yield CounterMetricFamily("ferrodicom_instances_received", "C-STORE data sets received",
                                  value=m["instances_received"])  # fmt: skip
        yield CounterMetricFamily("ferrodicom_bytes_received", "C-STORE data-set bytes received",
                                  value=m["bytes_received"])  # fmt: skip
        buckets, count, total = m["store_latency"]
        hist = HistogramMetricFamily("ferrodicom_store_latency_seconds",
                                     "C-STORE: from the command read to the response sent")  # fmt: skip
        hist.add_metric([], [(repr(le), n) for le, n in buckets] + [("+Inf", count)], sum_value=total)
        yield hist
        archive = self.archive
        if archive is None:
            return
        index = archive.stats
        yield CounterMetricFamily("ferrodicom_index_commits", "Index transactions committed (group commits)",
                                  value=index["commits"])  # fmt: skip
        yield CounterMetricFamily("ferrodicom_index_rows", "Instance rows written to the index", value=index["rows"])
        yield GaugeMetricFamily("ferrodicom_index_max_batch_rows", "Most rows committed at once",
                                value=index["max_batch"])  # fmt: skip
        journal = getattr(archive, "journal", None)
        if journal is not None:
            for key, text in (("appended", "records appended"), ("full", "appends refused, journal full"),
                              ("syncs", "fdatasync calls"), ("checkpoints", "checkpoints")):  # fmt: skip
                yield CounterMetricFamily(f"ferrodicom_journal_{key}", f"Journal: {text}",
                                          value=journal.stats.get(key, 0))  # fmt: skip


def serve_metrics(port: int, server: Any, archive: Any = None, host: str = "0.0.0.0") -> CollectorRegistry:
    """Exposes the node's figures on ``http://host:port/metrics``; returns the registry it serves."""
    registry = CollectorRegistry()
    registry.register(NodeCollector(server, archive))
    start_http_server(port, addr=host, registry=registry)
    return registry


class RateLog:
    """Logs one line every ``interval`` seconds (info level): instances and bytes received since the last line,
    their rates, associations open, responses that were not Success."""

    def __init__(self, server: Any, interval: float = 60.0) -> None:
        self.server = server
        self.interval = interval
        self._stop = threading.Event()
        self._last: Optional[tuple[float, dict]] = None
        self._thread = threading.Thread(target=self._run, name="ferrodicom-rates", daemon=True)

    def start(self) -> RateLog:
        self._last = (time.monotonic(), self.server.metrics())
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def line(self) -> str:
        now, m = time.monotonic(), self.server.metrics()
        t0, before = self._last or (now, m)
        self._last = (now, m)
        dt = max(now - t0, 1e-9)
        n = m["instances_received"] - before["instances_received"]
        b = m["bytes_received"] - before["bytes_received"]
        failed = sum(v for (_f, s), v in m["statuses"].items() if s not in (0x0000, 0xFF00, 0xFF01)) - sum(
            v for (_f, s), v in before["statuses"].items() if s not in (0x0000, 0xFF00, 0xFF01)
        )
        return (
            f"{n} instances ({n / dt:.1f}/s), {b / 1e6:.1f} MB ({b / 1e6 / dt:.1f} MB/s) in {dt:.0f} s; "
            f"{m['associations_active']} association(s) open; {failed} response(s) not Success"
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            log.info(self.line())
