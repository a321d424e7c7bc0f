"""Prometheus metrics of the fires, on an optional local HTTP port.

Uses the standard client library, ``prometheus-client`` (``pip install 'subminute[metrics]'``). Metrics,
each labelled with ``schedule_id`` and ``schedule`` (the name)::

    subminute_fires_total{status}              every record: ok, error, timeout, skipped, missed, invalid
    subminute_fire_errors_total                fires that ended in error or timeout
    subminute_missed_slots_total               slots that passed without a fire (misfire grace exceeded)
    subminute_dispatch_lateness_seconds        histogram: hand-over time minus slot time
    subminute_target_latency_seconds           histogram: how long the target ran
    subminute_last_fire_timestamp_seconds      gauge: the slot of the last fire

Feed it every fire record. The complete feed is the record sink (the dispatcher writes the results of
fires there, the controller its skipped/missed/invalid records), so wrap the sink::

    metrics = Metrics()
    metrics.serve(9464)                      # http://127.0.0.1:9464/metrics
    sink = MetricsSink(SqliteSink(db), metrics)

``Metrics.observe`` also fits the controller's ``on_record`` hook, which sees the controller's own
records only (skipped, missed, invalid).
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import ConfigError
from ..results.records import FireRecord
from .logs import SinkWrapper

__all__ = ["LATENCY_BUCKETS", "LATENESS_BUCKETS", "Metrics", "MetricsSink"]

LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RAN = frozenset(("ok", "error", "timeout"))


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError("metrics", "prometheus", "install the metrics extra: pip install "
                                                   "'subminute[metrics]' (the prometheus-client package)") from None
    return prometheus_client


class Metrics:
    """The metric families, in their own registry (so that several controllers in one process, or
    tests, do not collide). ``per_schedule=False`` labels everything ``schedule="all"`` to keep the
    number of series small when there are thousands of schedules."""

    def __init__(self, registry: Any = None, *, per_schedule: bool = True) -> None:
        pc = _client()
        self.registry = registry if registry is not None else pc.CollectorRegistry()
        self.per_schedule = per_schedule
        labels = ["schedule_id", "schedule"]
        reg = self.registry
        self.fires = pc.Counter("subminute_fires", "Fire records by status", [*labels, "status"], registry=reg)
        self.errors = pc.Counter("subminute_fire_errors", "Fires that ended in error or timeout", labels,
                                 registry=reg)
        self.missed = pc.Counter("subminute_missed_slots", "Slots that passed without a fire", labels,
                                 registry=reg)
        self.lateness = pc.Histogram("subminute_dispatch_lateness_seconds",
                                     "Dispatch lateness: hand-over time minus slot time", labels,
                                     buckets=LATENESS_BUCKETS, registry=reg)
        self.latency = pc.Histogram("subminute_target_latency_seconds", "How long the target ran", labels,
                                    buckets=LATENCY_BUCKETS, registry=reg)
        self.last_fire = pc.Gauge("subminute_last_fire_timestamp_seconds", "Slot time of the last fire", labels,
                                  registry=reg)
        self._children: dict[tuple[int, str], tuple[Any, ...]] = {}
        self._status: dict[tuple[int, str, str], Any] = {}
        self._lock = threading.Lock()
        self._server: Any = None

    def _for(self, record: FireRecord) -> tuple[Any, ...]:
        key = (record.schedule_id, record.name) if self.per_schedule else (0, "all")
        found = self._children.get(key)
        if found is None:
            with self._lock:
                values = (str(key[0]) if self.per_schedule else "all", key[1])
                found = (self.errors.labels(*values), self.missed.labels(*values), self.lateness.labels(*values),
                         self.latency.labels(*values), self.last_fire.labels(*values), values)
                self._children[key] = found
        return found

    def observe(self, record: FireRecord) -> None:
        """Count one fire record (thread-safe; a few microseconds)."""
        errors, missed, lateness, latency, last_fire, values = self._for(record)
        skey = (record.schedule_id, record.name, record.status)
        counter = self._status.get(skey)
        if counter is None:
            counter = self._status[skey] = self.fires.labels(*values, record.status)
        counter.inc()
        status = record.status
        if status in _RAN:
            if status != "ok":
                errors.inc()
            if record.lateness_ms is not None:
                lateness.observe(record.lateness_ms / 1000)
            if record.latency_ms is not None:
                latency.observe(record.latency_ms / 1000)
            last_fire.set(record.slot_ms / 1000)
        elif status == "missed":
            missed.inc(int(record.detail.get("missed", 1)) if record.detail else 1)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread (``port=0``: any free port); return
        the port. Local only by default: pass ``addr="0.0.0.0"`` to let other hosts scrape."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError("metrics_port", port, "use a port number from 1 to 65535 (0: any free port)")
        pc = _client()
        try:
            server, _thread = pc.start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError("metrics_port", port, f"use a free port ({exc.strerror or exc})") from None
        self._server = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def text(self) -> str:
        """The exposition text, as a scrape would see it."""
        return bytes(_client().generate_latest(self.registry)).decode()


class MetricsSink(SinkWrapper):
    """A record sink that counts every record in :class:`Metrics`, then passes it on."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        super().__init__(inner)
        self.metrics = metrics

    def see(self, record: FireRecord) -> None:
        self.metrics.observe(record)
