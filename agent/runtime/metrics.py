"""The agent's own `/metrics` (optional): health (spool depth, last ship, probe failures) and
the latest result of each module and target, for sites that run their own Prometheus.

Families are built at scrape time by a collector object registered in an injected registry;
nothing here touches prometheus_client's global registry. prometheus_client is imported
only when metrics are served (an agent without a metrics port never loads it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.runtime.shipper import ShipStats
from agent.runtime.spool import SpoolStats
from agent.wire.lite import ProbeResult

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry

P = "qos_scout_agent_"


@dataclass
class ResultBook:
    """Counts probe runs and keeps the latest result per (module, probe, target)."""

    runs: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    latest: dict[tuple[str, str, str], ProbeResult] = field(default_factory=dict)

    def observe(self, r: ProbeResult) -> None:
        module = r.module or (f"job:{r.job_id}" if r.job_id else "")
        self.runs[(module, r.probe, "success" if r.success else "failure")] += 1
        if not r.job_id:
            self.latest[(module, r.probe, r.target)] = r


def flatten(measurement: dict[str, Any] | None) -> Iterator[tuple[str, float]]:
    """Numeric fields of a measurement, one level of nesting spelt `rtt_ms.p95`."""
    for k, v in (measurement or {}).items():
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            yield k, float(v)
        elif isinstance(v, dict):
            for k2, v2 in v.items():
                if isinstance(v2, int | float) and not isinstance(v2, bool):
                    yield f"{k}.{k2}", float(v2)


class AgentCollector:
    """A prometheus_client collector (anything with `collect()`) over the agent's state."""

    def __init__(
        self,
        book: ResultBook,
        spool_stats: Callable[[], SpoolStats],
        ship_stats: Callable[[], ShipStats],
        restarts: Callable[[], dict[str, int]] = dict,
    ) -> None:
        self.book = book
        self.spool_stats = spool_stats
        self.ship_stats = ship_stats
        self.restarts = restarts

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        sp = self.spool_stats()
        yield GaugeMetricFamily(P + "spool_depth", "Results waiting to be shipped", value=sp.depth)
        yield GaugeMetricFamily(P + "spool_bytes", "Bytes of results in the spool", value=sp.bytes)
        yield GaugeMetricFamily(
            P + "spool_rejected",
            "Results given up (rejected by the collector or quarantined), kept for inspection",
            value=sp.rejected,
        )
        age = GaugeMetricFamily(P + "spool_oldest_age_seconds", "Age of the oldest spooled result")
        age.add_metric([], sp.oldest_age_s or 0.0)
        yield age
        dropped = CounterMetricFamily(
            P + "spool_dropped",
            "Results that left the spool unstored: by the bounds (age, size), refused by the "
            "collector (rejected), or isolated as failing the collector (quarantined)",
            labels=["reason"],
        )
        for reason, n in sp.dropped.items():
            dropped.add_metric([reason], n)
        yield dropped

        st = self.ship_stats()
        if st.last_success_unix is not None:
            yield GaugeMetricFamily(
                P + "last_ship_timestamp_seconds",
                "When the collector last acknowledged a batch",
                value=st.last_success_unix,
            )
        yield CounterMetricFamily(
            P + "ship_failures", "Failed shipping attempts", value=st.failures
        )
        kinds = CounterMetricFamily(
            P + "ship_errors",
            "Failed shipping attempts by kind: network (no answer), answer (not the ingest "
            "model), http_4xx, http_5xx, busy (429/503), auth (401/403)",
            labels=["kind"],
        )
        for kind, n in sorted(st.by_failure.items()):
            kinds.add_metric([kind], n)
        yield kinds
        yield GaugeMetricFamily(
            P + "ship_consecutive_failures",
            "Failed shipping attempts since the last accepted batch",
            value=st.consecutive_failures,
        )
        yield GaugeMetricFamily(
            P + "collector_auth_refused",
            "1 while the collector refuses this agent's key (revoked or replaced: enroll again)",
            value=1.0 if st.auth_refused else 0.0,
        )
        yield GaugeMetricFamily(
            P + "ship_batch_limit",
            "Results per batch now (below shipping.batch_size while isolating a failing result)",
            value=st.batch_limit,
        )
        yield GaugeMetricFamily(
            P + "ship_held_back",
            "Results that failed alone, held back from batches and retried alone",
            value=st.suspects,
        )
        restarts = CounterMetricFamily(
            P + "task_restarts", "Agent loops restarted after a crash", labels=["task"]
        )
        for task, n in sorted(self.restarts().items()):
            restarts.add_metric([task], n)
        yield restarts
        shipped = CounterMetricFamily(
            P + "shipped_results", "Results answered by the collector", labels=["status"]
        )
        for status, n in sorted(st.by_status.items()):
            shipped.add_metric([status], n)
        yield shipped

        runs = CounterMetricFamily(
            P + "probe_runs",
            "Probe runs by module and outcome",
            labels=["module", "probe", "result"],
        )
        for key, n in sorted(self.book.runs.items()):
            runs.add_metric(list(key), n)
        yield runs

        labels = ["module", "probe", "target"]
        ok = GaugeMetricFamily(P + "probe_success", "1 if the latest run succeeded", labels=labels)
        ts = GaugeMetricFamily(
            P + "result_timestamp_seconds", "When the latest run started", labels=labels
        )
        dur = GaugeMetricFamily(
            P + "probe_duration_seconds", "Latest run's duration", labels=labels
        )
        val = GaugeMetricFamily(
            P + "measurement", "Numeric fields of the latest measurement", labels=[*labels, "field"]
        )
        for key, r in sorted(self.book.latest.items()):
            ok.add_metric(list(key), 1.0 if r.success else 0.0)
            ts.add_metric(list(key), r.started_at.timestamp())
            dur.add_metric(list(key), r.duration_ms / 1000.0)
            for name, v in flatten(r.measurement):
                val.add_metric([*key, name], v)
        yield from (ok, ts, dur, val)


def serve(registry: CollectorRegistry, address: str, port: int) -> Any:
    """Serve `registry` on http://address:port/metrics in a daemon thread; returns the server."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server
