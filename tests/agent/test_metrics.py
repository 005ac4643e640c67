"""Local /metrics: health and latest results from a collector object in an injected registry."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from agent.runtime.metrics import AgentCollector, ResultBook, flatten
from agent.runtime.shipper import ShipStats
from agent.runtime.spool import Spool
from agent.wire.results import ProbeErrorInfo, ProbeResult, utcnow


def result(success: bool, module: str | None = "ping", job_id: str | None = None) -> ProbeResult:
    return ProbeResult(
        probe="icmp",
        target="192.0.2.1",
        module=module,
        job_id=job_id,
        started_at=utcnow(),
        duration_ms=1500.0,
        success=success,
        measurement={"loss_pct": 20.0, "rtt_ms": {"avg": 12.5, "p95": None}, "address": "x"}
        if success
        else None,
        error=None
        if success
        else ProbeErrorInfo(error_class="ProbeTimeoutError", category="timeout", message="late"),
    )


def test_health_and_latest_results_exposed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=1000, max_age_s=60)
    spool.put_many([{"id": str(i), "pad": "x" * 400} for i in range(4)], now=100.0)  # 2 dropped
    book = ResultBook()
    book.observe(result(False))
    book.observe(result(True))
    book.observe(result(True, module=None, job_id="j1"))  # job results count but are not "latest"
    ship = ShipStats(failures=3, last_success_unix=1234.5, by_status={"stored": 7, "duplicate": 1})
    reg = CollectorRegistry()
    reg.register(AgentCollector(book, lambda: spool.stats(110.0), lambda: ship))
    text = generate_latest(reg).decode()
    lines = set(text.splitlines())
    assert "qos_scout_agent_spool_depth 2.0" in lines
    assert 'qos_scout_agent_spool_dropped_total{reason="size"} 2.0' in lines
    assert "qos_scout_agent_spool_oldest_age_seconds 10.0" in lines
    assert "qos_scout_agent_ship_failures_total 3.0" in lines
    assert "qos_scout_agent_last_ship_timestamp_seconds 1234.5" in lines
    assert 'qos_scout_agent_shipped_results_total{status="stored"} 7.0' in lines
    assert (
        'qos_scout_agent_probe_runs_total{module="ping",probe="icmp",result="failure"} 1.0' in lines
    )
    assert (
        'qos_scout_agent_probe_runs_total{module="ping",probe="icmp",result="success"} 1.0' in lines
    )
    assert (
        'qos_scout_agent_probe_runs_total{module="job:j1",probe="icmp",result="success"} 1.0'
        in lines
    )
    assert (
        'qos_scout_agent_probe_success{module="ping",probe="icmp",target="192.0.2.1"} 1.0' in lines
    )
    assert (
        'qos_scout_agent_probe_duration_seconds{module="ping",probe="icmp",target="192.0.2.1"} 1.5'
        in lines
    )
    labels = 'field="rtt_ms.avg",module="ping",probe="icmp",target="192.0.2.1"'
    assert f"qos_scout_agent_measurement{{{labels}}} 12.5" in lines


def test_flatten_keeps_numbers_one_level_deep() -> None:
    got = dict(flatten({"a": 1, "b": True, "c": {"d": 2.5, "e": "x", "f": {"g": 1}}, "h": [1]}))
    assert got == {"a": 1.0, "c.d": 2.5}
