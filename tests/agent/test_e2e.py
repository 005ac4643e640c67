"""End to end on loopback: real collector, responder and agent processes.

Results arrive; a strict rule opens a ticket that resolves by itself; an on-demand job runs
and a bad one fails with its reason; a collector outage and a SIGKILL of the agent lose
nothing and store nothing twice.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.cli.demo import DEMO_RULE, strict_rule
from agent.cli.stack import Stack, wait_for

pytestmark = pytest.mark.slow

FAST = {
    "ping": {
        "probe": "icmp",
        "targets": ["127.0.0.1"],
        "interval_s": 1,
        "options": {"count": 2, "interval_s": 0.05, "timeout_s": 0.5},
    },
    "host": {"probe": "host", "targets": ["local"], "interval_s": 1, "options": {"sample_s": 0.1}},
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


def start(stack: Stack, modules: dict[str, Any] = FAST) -> Path:
    stack.start_collector()
    token = stack.create_tenancy()
    config = stack.write_agent_config(modules)
    stack.enroll(config, token)
    return config


def produced(stack: Stack, name: str = "agent") -> int:
    log = stack.log_tail(name, 100_000)
    m = re.findall(r" INFO agent\.runtime\.loop: agent stopped: (\d+) results produced", log)
    assert m, f"no shutdown line (at INFO: a normal stop is no warning) in {name}.log:\n{log}"
    assert re.search(r" INFO agent\.runtime\.loop: agent \S+ started; modules: ", log), log
    return int(m[-1])


def stored_ids(stack: Stack) -> list[str]:
    return [r["id"] for r in stack.results()]


def collector_counter(stack: Stack, status: str) -> float:
    text = httpx.get(f"{stack.collector_url}/metrics", timeout=5).text
    m = re.search(rf'^qos_scout_ingest_results_total\{{status="{status}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def spool_ids(stack: Stack) -> set[str]:
    db = sqlite3.connect(stack.workdir / "spool.db")
    try:
        return {row[0] for row in db.execute("SELECT id FROM results WHERE rejected IS NULL")}
    finally:
        db.close()


def test_results_arrive_ticket_opens_and_resolves_jobs_run(stack: Stack) -> None:
    config = start(stack)
    stack.api(
        "PUT",
        "/api/v1/rules/overrides",
        json={"site_id": stack.site_id, "overrides": strict_rule(0.000001)},
    )
    stack.start_agent(config)

    def demo_tickets() -> list[dict[str, Any]]:
        return [t for t in stack.tickets() if t["rule_id"] == DEMO_RULE]

    ticket = wait_for("a ticket", demo_tickets, 60)[0]
    assert ticket["target"] == "127.0.0.1" and ticket["state"] == "open"
    assert (
        len(
            ticket_detail := stack.api("GET", f"/api/v1/tickets/{ticket['id']}")["evidence"][
                "results"
            ]
        )
        >= 2
    )
    assert all(r["probe"] == "icmp" for r in ticket_detail)

    ok = stack.api(
        "POST",
        f"/api/v1/sites/{stack.site_id}/jobs",
        json={
            "kind": "probe",
            "spec": {"probe": "host", "targets": ["local"], "options": {"sample_s": 0.1}},
        },
    )
    bad = stack.api(
        "POST",
        f"/api/v1/sites/{stack.site_id}/jobs",
        json={"kind": "suite", "spec": {"suite": "nosuch"}},
    )

    def finished(job_id: str) -> dict[str, Any] | None:
        j = stack.api("GET", f"/api/v1/jobs/{job_id}")
        return j if j["state"] in ("done", "failed") else None

    ok = wait_for("the probe job", lambda: finished(ok["id"]), 30)
    bad = wait_for("the suite job", lambda: finished(bad["id"]), 30)
    assert ok["state"] == "done" and ok["report"]["results"] == 1 and ok["report"]["failed"] == 0
    assert bad["state"] == "failed" and bad["message"].startswith("unknown suite 'nosuch'")
    job_result = ok["report"]["result_ids"][0]
    wait_for("the job's result", lambda: job_result in stored_ids(stack), 20)
    tagged = next(r for r in stack.results() if r["id"] == job_result)
    assert tagged["job_id"] == ok["id"]
    # Each job poll said how many results the agent held unshipped: the agent list shows it.
    [agent] = stack.api("GET", "/api/v1/agents")
    assert isinstance(agent["spool_depth"], int) and agent["spool_depth"] >= 0

    stack.api(
        "PUT",
        "/api/v1/rules/overrides",
        json={"site_id": stack.site_id, "overrides": strict_rule(10_000)},
    )
    wait_for(
        "the ticket to resolve",
        lambda: stack.api("GET", f"/api/v1/tickets/{ticket['id']}")["state"] == "resolved",
        60,
    )
    assert "qos_scout_agent_spool_depth" in stack.agent_metrics()
    assert stack.stop("agent") == 0
    ids = stored_ids(stack)
    assert len(ids) == len(set(ids)) == produced(stack)
    assert spool_ids(stack) == set()


def test_collector_outage_loses_nothing_and_stores_each_result_once(stack: Stack) -> None:
    config = start(stack)
    port = int(stack.collector_url.rsplit(":", 1)[1])
    stack.start_agent(config)
    wait_for("first results", lambda: len(stored_ids(stack)) >= 2, 30)
    stack.stop("collector")
    wait_for("results to pile up in the spool", lambda: len(spool_ids(stack)) >= 6, 30)
    stack.start_collector(port=port, name="collector2")
    wait_for("the spool to drain", lambda: not spool_ids(stack), 60)
    assert stack.stop("agent") == 0
    ids = stored_ids(stack)
    assert len(ids) == len(set(ids)) == produced(stack)


def test_sigkill_keeps_the_spool_and_acknowledged_results_are_not_resent(stack: Stack) -> None:
    config = start(stack)
    stack.start_agent(config)
    wait_for("first results", lambda: len(stored_ids(stack)) >= 2, 30)
    stack.stop("collector")  # so the spool holds something when the agent dies
    wait_for("a spool backlog", lambda: len(spool_ids(stack)) >= 4, 30)
    assert stack.stop("agent", sig=signal.SIGKILL) == -signal.SIGKILL
    pending = spool_ids(stack)
    before_kill = set(stored_ids_offline(stack))
    # What the spool holds was not acknowledged (an item the collector stored just as it
    # stopped, whose answer was lost, may be in both: it will come back as a duplicate).
    assert pending
    stack.start_collector(port=int(stack.collector_url.rsplit(":", 1)[1]), name="collector2")
    stack.start_agent(config, name="agent2")
    wait_for("the old backlog to arrive", lambda: pending <= set(stored_ids(stack)), 60)
    assert stack.stop("agent2") == 0
    ids = stored_ids(stack)
    assert len(ids) == len(set(ids))
    assert len(ids) == len(before_kill | pending) + produced(stack, "agent2")
    # Only what was in flight at the kill could be sent twice; nothing acknowledged was.
    assert collector_counter(stack, "duplicate") <= len(pending)


def stored_ids_offline(stack: Stack) -> list[str]:
    db = sqlite3.connect(stack.workdir / "collector.sqlite3")
    try:
        return [row[0] for row in db.execute("SELECT id FROM results")]
    finally:
        db.close()


def test_bad_config_and_missing_credentials_exit_with_meaningful_status(tmp_path: Path) -> None:
    s = Stack(tmp_path)
    bad = tmp_path / "bad.yml"
    bad.write_text("shipping:\n  batch_size: lots\n")
    out = s.run_cli("agent", "run", "--config", str(bad), check=False)
    assert out.returncode == 2
    assert f"{bad}: shipping.batch_size: Input should be a valid integer" in out.stderr
    out = s.run_cli("agent", "check-config", str(bad), check=False)
    assert out.returncode == 2 and "shipping.batch_size" in out.stderr
    good = tmp_path / "good.yml"
    good.write_text("collector: {credentials_file: nokey.json}\nspool: {path: s.db}\nmodules: {}\n")
    out = s.run_cli("agent", "run", "--config", str(good), check=False)
    assert out.returncode == 3
    assert "not enrolled" in out.stderr and "qos-scout agent enroll" in out.stderr
    (tmp_path / "nokey.json").write_text(
        '{"collector_url": "http://127.0.0.1:9", "agent_id": "a", "agent_key": "k", "site_id": "s"}'
    )
    blocked = tmp_path / "blocked.yml"
    blocked.write_text("collector: {credentials_file: nokey.json}\nspool: {path: good.yml/s.db}\n")
    out = s.run_cli("agent", "run", "--config", str(blocked), check=False)
    assert out.returncode == 4 and "cannot open the spool" in out.stderr
    t0 = time.monotonic()
    assert s.run_cli("agent", "check-config", str(good)).stdout.startswith(f"{good}: ok")
    assert time.monotonic() - t0 < 30


def test_enroll_stores_a_private_key_once_and_a_token_works_once(stack: Stack) -> None:
    stack.start_collector()
    token = stack.create_tenancy()
    config = stack.write_agent_config({})
    stack.enroll(config, token)
    creds = stack.workdir / "agent.json"
    assert creds.stat().st_mode & 0o777 == 0o600
    again = stack.run_cli("agent", "enroll", "--collector", stack.collector_url, "--token", token,
                          "--config", str(config), check=False)  # fmt: skip
    assert again.returncode == 2 and "already enrolled" in again.stderr
    reused = stack.run_cli("agent", "enroll", "--collector", stack.collector_url, "--token", token,
                           "--config", str(config), "--force", check=False)  # fmt: skip
    assert reused.returncode == 2
    assert re.search(r"enroll at \S+: 401 .*token", reused.stderr), reused.stderr
    assert creds.stat().st_mode & 0o777 == 0o600  # the first key is still there


def test_spool_full_during_an_outage_drops_oldest_and_counts_them(stack: Stack) -> None:
    stack.start_collector()
    token = stack.create_tenancy()
    config = stack.write_agent_config(FAST, spool={"max_mb": 0.004})  # room for a few results
    stack.enroll(config, token)
    port = int(stack.collector_url.rsplit(":", 1)[1])
    stack.start_agent(config)
    wait_for("first results", lambda: len(stored_ids(stack)) >= 2, 30)
    stack.stop("collector")

    def dropped() -> int:
        m = re.search(
            r'^qos_scout_agent_spool_dropped_total\{reason="size"\} (\S+)$',
            stack.agent_metrics(),
            re.M,
        )
        return int(float(m.group(1))) if m else 0

    wait_for("the spool to overflow", lambda: dropped() >= 3, 40)
    assert len(spool_ids(stack)) < 10  # bounded
    stack.start_collector(port=port, name="collector2")
    wait_for("the spool to drain", lambda: not spool_ids(stack), 60)
    assert stack.stop("agent") == 0
    db = sqlite3.connect(stack.workdir / "spool.db")
    counted = db.execute("SELECT value FROM counters WHERE name = 'dropped_size'").fetchone()[0]
    db.close()
    ids = stored_ids(stack)
    assert len(ids) == len(set(ids))
    # Every result arrived or was counted as dropped (one dropped while its batch was on the
    # wire may have arrived too).
    assert produced(stack) - counted <= len(ids) <= produced(stack)
    assert counted >= 3


async def test_shipper_against_the_collector_acks_stored_and_keeps_rejected(stack: Stack) -> None:
    import asyncio
    import uuid

    from agent.runtime.client import CollectorClient, enroll
    from agent.runtime.shipper import Shipper
    from agent.runtime.spool import Spool
    from agent.wire.results import ProbeResult, utcnow

    await asyncio.to_thread(stack.start_collector)
    token = await asyncio.to_thread(stack.create_tenancy)
    creds = await enroll(stack.collector_url, token)
    spool = Spool(stack.workdir / "s.db", max_bytes=10**6, max_age_s=3600)
    good = [
        ProbeResult(
            probe="icmp", target="192.0.2.1", started_at=utcnow(), duration_ms=1.0, success=True
        )
        for _ in range(3)
    ]
    bad = {**good[0].to_json_dict(), "id": str(uuid.uuid4()), "schema_version": 99}
    spool.put_many([g.to_json_dict() for g in good] + [bad], now=0.0)
    shipper = Shipper(spool, CollectorClient(creds.collector_url, creds.agent_key), batch_size=10)
    assert await shipper.ship_once() == 4
    assert shipper.stats.stored == 3 and shipper.stats.rejected == 1
    st = spool.stats(now=1.0)
    assert st.depth == 0 and st.rejected == 1  # kept for inspection, never re-sent
    spool.put(good[0].to_json_dict(), now=2.0)  # re-sent after a lost answer: harmless
    assert await shipper.ship_once() == 1 and shipper.stats.duplicates == 1
    stored = await asyncio.to_thread(stored_ids, stack)
    assert sorted(stored) == sorted(str(g.id) for g in good)


def test_metrics_port_in_use_is_a_config_error(stack: Stack) -> None:
    import socket as so

    from agent.runtime.client import Credentials

    with so.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        Credentials("http://127.0.0.1:9", "a", "k", "s").save(stack.workdir / "agent.json")
        cfg = stack.workdir / "m.yml"
        cfg.write_text(
            "collector: {credentials_file: agent.json}\nspool: {path: s.db}\n"
            f"metrics: {{port: {port}}}\nmodules: {{}}\n"
        )
        out = stack.run_cli("agent", "run", "--config", str(cfg), check=False, timeout_s=30)
    assert out.returncode == 2
    assert f"metrics: cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr
