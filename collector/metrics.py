"""Prometheus exposition: a collector object that builds metric families at scrape time
from the store (latest result per agent/probe/target, tickets, agents) and the process
counters. Registered on a registry the application owns, never the global one.

Result series come from the declarations on the measurement models
(`agent.wire.exposition`): a field marked as a gauge there is exported here, with the
labels its declaration gives; nothing here names a measurement field.

Scoping: with `partner_id` the collector yields only that partner's series (results, sites,
agents, its open tickets) and none of the process's own counters: what a partner's own
Prometheus scrapes from `GET /api/v1/metrics`. Without it, every partner's: the operator's
`/metrics`, behind the scrape token.

Cardinality: result series are one per (agent, probe, target) reported in the last
`metrics_stale_after_s` seconds, times the fixed `stat`/`direction`/`metric` values.

Sharding: with `shard=(i, n)` only the sites whose shard is `i` of `n` (the last two hex
digits of the site id, modulo `n`) are in the scrape, with all their series; the per-partner
ticket counts and the process's counters are in shard 0 only, so that the `n` scrapes
together hold every series once. `ExpositionCache` shares one build between the scrapes that
arrive while it runs (and for `metrics.cache_s` after).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from functools import partial
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from agent.wire.exposition import FAMILIES
from agent.wire.measurements import PROBE_KINDS, exported_series
from collector.outbox import pending_count
from collector.schema import agents, customers, latest, partners, sites
from collector.stats import LATENCY_BUCKETS, Stats
from collector.store import Store
from collector.tickets import OPEN_STATES, worst_open_by_site

_Q = TypeVar("_Q", bound=sa.Select[Any])

RESULT_LABELS = ["partner", "customer", "site", "agent", "probe", "target"]
SITE_LABELS = ["partner", "customer", "site"]
SEVERITY_VALUE = {"warning": 1, "critical": 2}
MAX_SHARDS = 256  # a site's bucket is the last two hex digits of its id


def shard_buckets(shard: int, shards: int) -> list[str]:
    """The site-id suffixes (two lowercase hex digits) of shard `shard` of `shards`."""
    if not 1 <= shards <= MAX_SHARDS or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: need 0 <= shard < shards <= {MAX_SHARDS}")
    return [f"{b:02x}" for b in range(MAX_SHARDS) if b % shards == shard]


def _series() -> dict[str, list[tuple[tuple[str, ...], str, list[str]]]]:
    """probe -> (path, family, values of the family's labels) for every declared series."""
    out: dict[str, list[tuple[tuple[str, ...], str, list[str]]]] = {}
    for probe in PROBE_KINDS:
        for s in exported_series(probe):
            labels = dict(s.labels)
            values = [labels[k] for k in FAMILIES[s.family].labels]
            out.setdefault(probe, []).append((s.path, s.family, values))
    return out


SERIES = _series()


def _at(m: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(m, dict):
            return None
        m = m.get(part)
    return m


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


class StoreCollector(Collector):
    def __init__(
        self, store: Store, stats: Stats, clock: Callable[[], float] = time.time,
        before: Callable[[], object] | None = None, partner_id: str | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.stats = stats
        self.clock = clock
        self.before = before  # e.g. write pending agent contacts first
        self.partner_id = partner_id  # only this partner's series, without process counters
        self.buckets = shard_buckets(*shard) if shard is not None else None
        self.first_shard = shard is None or shard[0] == 0  # tickets and own counters

    def _scoped(self, q: _Q) -> _Q:
        return q if self.partner_id is None else q.where(partners.c.id == self.partner_id)

    def _sharded(self, q: _Q) -> _Q:
        """`q` (which joins sites) limited to the sites of this shard."""
        if self.buckets is None:
            return q
        suffix = sa.func.lower(sa.func.substr(sites.c.id, sa.func.length(sites.c.id) - 1, 2))
        return q.where(suffix.in_(self.buckets))

    def collect(self) -> Iterator[Metric]:
        if self.before is not None:
            self.before()
        with self.store.read() as conn:
            yield from self._results(conn)
            yield from self._sites_and_agents(conn)
            if self.first_shard:
                yield from self._tickets(conn)
            own = self.partner_id is None and self.first_shard
            pending = pending_count(conn) if own else 0
        if own:
            yield from self._own(pending)

    def _results(self, conn: sa.Connection) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "qos_scout_probe_success", "1 if the latest result succeeded", labels=RESULT_LABELS
        )
        ts = GaugeMetricFamily(
            "qos_scout_result_timestamp_seconds",
            "When the latest result started (Unix time)",
            labels=RESULT_LABELS,
        )
        fams = {
            name: GaugeMetricFamily(
                f"qos_scout_{name}", fam.help, labels=[*RESULT_LABELS, *fam.labels]
            )
            for name, fam in FAMILIES.items()
        }
        q = (
            sa.select(
                partners.c.name, customers.c.name, sites.c.name, agents.c.hostname,
                latest.c.probe, latest.c.target, latest.c.started_at, latest.c.success,
                latest.c.measurement,
            )
            .join(agents, agents.c.id == latest.c.agent_id)
            .join(sites, sites.c.id == agents.c.site_id)
            .join(customers, customers.c.id == sites.c.customer_id)
            .join(partners, partners.c.id == sites.c.partner_id)
            .where(latest.c.started_at >= self.clock() - self.store.config.metrics_stale_after_s)
        )  # fmt: skip
        q = self._sharded(self._scoped(q))
        for pn, cn, sn, an, probe, target, started, ok, m in conn.execute(q):
            lab = [pn, cn, sn, an, probe, target]
            success.add_metric(lab, 1.0 if ok else 0.0)
            ts.add_metric(lab, started)
            if not m:
                continue
            for path, family, extra in SERIES.get(probe, ()):
                if (v := _num(_at(m, path))) is not None:
                    fams[family].add_metric([*lab, *extra], v)
        yield success
        yield ts
        yield from fams.values()

    def _sites_and_agents(self, conn: sa.Connection) -> Iterator[Metric]:
        worst = worst_open_by_site(conn)
        contracted = GaugeMetricFamily(
            "qos_scout_contracted_bps", "Contracted circuit speed",
            labels=[*SITE_LABELS, "direction"],
        )  # fmt: skip
        state = GaugeMetricFamily(
            "qos_scout_site_state", "0 ok, 1 warning, 2 critical (worst open ticket)",
            labels=SITE_LABELS,
        )  # fmt: skip
        q = (
            sa.select(
                sites.c.id, partners.c.name, customers.c.name, sites.c.name,
                sites.c.contracted_down_bps, sites.c.contracted_up_bps,
            )
            .join(customers, customers.c.id == sites.c.customer_id)
            .join(partners, partners.c.id == sites.c.partner_id)
        )  # fmt: skip
        q = self._sharded(self._scoped(q))
        for sid, pn, cn, sn, down, up in conn.execute(q):
            lab = [pn, cn, sn]
            if down:
                contracted.add_metric([*lab, "down"], float(down))
            if up:
                contracted.add_metric([*lab, "up"], float(up))
            state.add_metric(lab, float(SEVERITY_VALUE.get(worst.get(sid, ""), 0)))
        yield contracted
        yield state
        seen = GaugeMetricFamily(
            "qos_scout_agent_last_seen_timestamp_seconds", "Last contact from the agent",
            labels=[*SITE_LABELS, "agent"],
        )  # fmt: skip
        q2 = (
            sa.select(partners.c.name, customers.c.name, sites.c.name, agents.c.hostname,
                      agents.c.last_seen_at)
            .join(sites, sites.c.id == agents.c.site_id)
            .join(customers, customers.c.id == sites.c.customer_id)
            .join(partners, partners.c.id == sites.c.partner_id)
        )  # fmt: skip
        for pn, cn, sn, an, last in conn.execute(self._sharded(self._scoped(q2))):
            if last is not None:
                seen.add_metric([pn, cn, sn, an], last)
        yield seen

    def _tickets(self, conn: sa.Connection) -> Iterator[Metric]:
        from collector.schema import tickets

        fam = GaugeMetricFamily(
            "qos_scout_open_tickets", "Open and acknowledged tickets",
            labels=["partner", "severity"],
        )  # fmt: skip
        q = (
            sa.select(partners.c.name, tickets.c.severity, sa.func.count())
            .join(partners, partners.c.id == tickets.c.partner_id)
            .where(tickets.c.state.in_(OPEN_STATES))
            .group_by(partners.c.name, tickets.c.severity)
        )
        counts = {(pn, sev): n for pn, sev, n in conn.execute(self._scoped(q))}
        for pn in conn.execute(self._scoped(sa.select(partners.c.name))).scalars():
            for sev in ("warning", "critical"):
                fam.add_metric([pn, sev], float(counts.get((pn, sev), 0)))
        yield fam

    def _own(self, pending: int) -> Iterator[Metric]:
        snap = self.stats.snapshot()
        c = CounterMetricFamily("qos_scout_ingest_results", "Results received", labels=["status"])
        res: dict[str, int] = snap["ingest_results"]  # type: ignore[assignment]
        for s in ("stored", "duplicate", "rejected"):
            c.add_metric([s], float(res.get(s, 0)))
        yield c
        e = CounterMetricFamily(
            "qos_scout_ingest_errors", "Ingest requests refused as a whole", labels=["code"]
        )
        errors = {"413": 0, "422": 0, **cast(dict[str, int], snap["ingest_errors"])}
        for code, count in sorted(errors.items()):
            e.add_metric([code], float(count))
        yield e
        counts: list[int] = snap["latency_counts"]  # type: ignore[assignment]
        buckets, acc = [], 0
        for bound, n in zip([*LATENCY_BUCKETS, float("inf")], counts, strict=True):
            acc += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(acc)))
        yield HistogramMetricFamily(
            "qos_scout_ingest_request_seconds", "Ingest request latency",
            buckets=buckets, sum_value=float(snap["latency_sum"]),  # type: ignore[arg-type]
        )  # fmt: skip
        notif = CounterMetricFamily(
            "qos_scout_notifications", "Outbox deliveries", labels=["channel", "status"]
        )
        sent: dict[tuple[str, str], int] = {
            (ch.name, status): 0
            for ch in self.store.config.notifications
            for status in ("sent", "failed")
        }
        sent.update(cast(dict[tuple[str, str], int], snap["notifications"]))
        for (ch_name, status), v in sorted(sent.items()):
            notif.add_metric([ch_name, status], float(v))
        yield notif
        yield GaugeMetricFamily(
            "qos_scout_outbox_pending", "Notifications waiting for delivery", value=pending
        )
        yield CounterMetricFamily(
            "qos_scout_auth_failures",
            "Answers 401: a missing, unknown or revoked key, a wrong web login",
            value=float(cast(int, snap["auth_failures"])),
        )
        thr = CounterMetricFamily("qos_scout_throttled", "Requests answered 429", labels=["reason"])
        throttled = {
            "auth_failures": 0,
            "partner_rate": 0,
            **cast(dict[str, int], snap["throttled"]),
        }
        for reason, n in sorted(throttled.items()):
            thr.add_metric([reason], float(n))
        yield thr


class ExpositionCache:
    """The built exposition of each scrape scope (`key`), shared by every scrape that arrives
    while it is being built and, for `ttl_s` seconds after the build began, by later ones
    (0: only concurrent scrapes share). A scrape that goes away does not stop the build the
    others wait for."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.builds = 0
        self._done: dict[Hashable, tuple[float, bytes]] = {}
        self._building: dict[Hashable, asyncio.Future[bytes]] = {}

    async def get(self, key: Hashable, build: Callable[[], Awaitable[bytes]]) -> bytes:
        now = self.clock()
        hit = self._done.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        task = self._building.get(key)
        if task is None:
            task = asyncio.ensure_future(build())
            self.builds += 1
            self._building[key] = task
            task.add_done_callback(partial(self._built, key, now))
        return await asyncio.shield(task)

    def _built(self, key: Hashable, began: float, task: asyncio.Future[bytes]) -> None:
        self._building.pop(key, None)
        if task.cancelled() or task.exception() is not None or self.ttl_s <= 0:
            return
        now = self.clock()
        for k in [k for k, (t, _) in self._done.items() if now - t >= self.ttl_s]:
            del self._done[k]
        self._done[key] = (began, task.result())
