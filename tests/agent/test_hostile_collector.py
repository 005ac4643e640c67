"""A real agent process (`qos-scout agent run`) against collectors that misbehave: a hostile
HTTP server on loopback (garbage, wrong shapes, hangs, resets, an endless body, 500 forever
for batches holding one item, 400 for the whole batch when one item is in it, a revoked
key), and the real collector with poison items in the spool. The agent stays up, every
valid result arrives once, and each poison item is dropped and counted."""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli.stack import Stack, wait_for
from agent.runtime.client import Credentials
from agent.runtime.spool import Spool
from agent.wire.results import ProbeResult, utcnow
from collector.compact import uuid_bytes
from tests.agent.hostile import Hostile

pytestmark = pytest.mark.slow

HOST = {
    "host": {"probe": "host", "targets": ["local"], "interval_s": 1, "options": {"sample_s": 0.1}}
}
SHIPPING = {"batch_size": 16, "interval_s": 0.5, "backoff_initial_s": 0.2, "backoff_max_s": 1}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    h = Hostile()
    h.url = h.start()  # type: ignore[attr-defined]
    try:
        yield h
    finally:
        h.stop()


def seed(path: Path, n: int, *extra: dict[str, Any]) -> list[str]:
    """Put `n` valid results (and `extra` items as they are) in the agent's spool."""
    items = [
        ProbeResult(
            probe="icmp", target=f"192.0.2.{i}", started_at=utcnow(), duration_ms=1.0, success=True
        ).to_json_dict()
        for i in range(n)
    ]
    spool = Spool(path, max_bytes=10**7, max_age_s=10**6)
    spool.put_many([*items, *extra], now=time.time())
    spool.close()
    return [str(r["id"]) for r in items]


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def dropped(stack: Stack, reason: str) -> float:
    return metric(
        stack.agent_metrics(), f'qos_scout_agent_spool_dropped_total{{reason="{reason}"}}'
    )


def rejected_rows(stack: Stack) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(stack.workdir / "spool.db")
    try:
        return list(db.execute("SELECT id, kind, reason FROM rejected ORDER BY seq"))
    finally:
        db.close()


def produced(stack: Stack) -> int:
    m = re.findall(r"agent stopped: (\d+) results produced", stack.log_tail("agent", 50))
    assert m, stack.log_tail("agent")
    return int(m[-1])


def hostile_agent(stack: Stack, h: Hostile, key: str = "good-key") -> Path:
    stack.collector_url = h.url  # type: ignore[attr-defined]
    config = stack.write_agent_config(
        HOST, shipping=SHIPPING, collector={"timeout_s": 2}, jobs={"wait_s": 1}
    )
    Credentials(h.url, "agent-1", key, "site-1").save(stack.workdir / "agent.json")  # type: ignore[attr-defined]
    return config


def test_agent_survives_a_hostile_collector_and_every_valid_result_arrives_once(
    stack: Stack, hostile: Hostile
) -> None:
    poison = ProbeResult(
        probe="icmp", target="192.0.2.250", started_at=utcnow(), duration_ms=1.0, success=True
    ).to_json_dict()
    bad400, bad500, refused = (
        {**poison, "id": "00000000-0000-4000-8000-00000000040" + str(n)} for n in range(3)
    )
    valid = seed(stack.workdir / "spool.db", 50, bad500, bad400, refused)
    hostile.fail_batch = {bad500["id"]: 500, bad400["id"]: 400}
    hostile.reject = {refused["id"]: "probe 'icmp': target is not allowed"}
    hostile.faults = [
        "lots", "garbage", "hang", "reset", "huge", "short", "deep", "list", "no_items",
        "wrong_status", "stored_then_garbage", "html500", "busy",
    ]  # fmt: skip
    hostile.job_faults = ["garbage", "jobs_lots", "hang", "reset", "huge", "list"]
    hostile.hang_s = 4.0
    config = hostile_agent(stack, hostile)
    stack.start_agent(config)

    def done() -> bool:
        assert stack.alive("agent"), stack.log_tail("agent")
        kinds = {k for _, k, _ in rejected_rows(stack)}
        return (
            set(valid) <= set(hostile.stored)
            and kinds == {"rejected", "quarantined"}
            and (len(rejected_rows(stack)) == 3)
        )

    wait_for("valid results stored and the three poison items dropped", done, 120)
    assert not hostile.faults  # every fault was served
    rows = {i: (k, r) for i, k, r in rejected_rows(stack)}
    assert rows[bad500["id"]][0] == "quarantined" and "500" in rows[bad500["id"]][1]
    assert rows[bad400["id"]][0] == "quarantined" and "400" in rows[bad400["id"]][1]
    assert rows[refused["id"]] == ("rejected", "probe 'icmp': target is not allowed")
    assert dropped(stack, "quarantined") == 2 and dropped(stack, "rejected") == 1
    text = stack.agent_metrics()
    assert metric(text, 'qos_scout_agent_ship_errors_total{kind="answer"}') >= 7
    assert metric(text, 'qos_scout_agent_ship_errors_total{kind="network"}') >= 4
    assert "qos_scout_agent_task_restarts_total{" not in text  # no loop had to be restarted
    log = stack.log_tail("agent", 400)
    assert f"result {bad500['id']} dropped from the spool: quarantined" in log
    assert f"collector rejected result {refused['id']}, dropped from the spool" in log
    assert "Traceback" not in log
    assert stack.stop("agent") == 0
    new = set(hostile.stored) - set(valid)
    assert len(new) == produced(stack)  # the agent's own results too, each once
    poison_ids = {bad400["id"], bad500["id"], refused["id"]}
    assert not poison_ids & set(hostile.stored)


def test_a_revoked_key_keeps_the_agent_and_its_spool_until_it_is_enrolled_again(
    stack: Stack, hostile: Hostile
) -> None:
    hostile.keys = {"new-key"}
    hostile.revoked_detail = "agent agent-1 was revoked by its partner"
    config = hostile_agent(stack, hostile, key="old-key")
    stack.start_agent(config)

    def refused() -> bool:
        assert stack.alive("agent"), stack.log_tail("agent")
        text = stack.agent_metrics()
        return (
            metric(text, "qos_scout_agent_collector_auth_refused") == 1
            and metric(text, "qos_scout_agent_spool_depth") >= 3
        )

    wait_for("the refusal in the agent's metrics and a backlog", refused, 60)
    log = stack.log_tail("agent", 100)
    assert "(401: agent agent-1 was revoked by its partner)" in log
    assert "qos-scout agent enroll --collector URL --token TOKEN" in log
    assert not hostile.stored
    # What `qos-scout agent enroll --force` does: a new key in the credentials file.
    Credentials(hostile.url, "agent-2", "new-key", "site-1").save(stack.workdir / "agent.json")  # type: ignore[attr-defined]

    def drained() -> bool:
        assert stack.alive("agent"), stack.log_tail("agent")
        text = stack.agent_metrics()
        return (
            metric(text, "qos_scout_agent_collector_auth_refused") == 0 and len(hostile.stored) >= 3
        )

    wait_for("the backlog shipped with the new key", drained, 60)
    assert "using it" in stack.log_tail("agent", 100)
    assert stack.stop("agent") == 0
    assert len(hostile.stored) == produced(stack)


def test_a_spool_with_poison_items_ships_everything_else_to_the_real_collector(
    stack: Stack,
) -> None:
    """THE acceptance test, against the real collector: an item it rejects per item (an
    unknown schema version), one that failed its whole batch with 500 before validation was
    strict (`"schema_version": []`), and one whose every batch fails with 500 in the store
    (a trigger in the collector's database refuses its row): each is dropped from the spool
    and counted, all the other items are stored once, and the agent stays up."""
    stack.start_collector()
    token = stack.create_tenancy()
    config = stack.write_agent_config({}, shipping=SHIPPING)
    stack.enroll(config, token)
    template = ProbeResult(
        probe="icmp", target="192.0.2.99", started_at=utcnow(), duration_ms=1.0, success=True
    ).to_json_dict()
    unknown = {**template, "id": "00000000-0000-4000-8000-000000000099", "schema_version": 99}
    broken = {**template, "id": "00000000-0000-4000-8000-000000000098", "schema_version": []}
    failing = {**template, "id": "00000000-0000-4000-8000-000000000097"}
    db = sqlite3.connect(stack.workdir / "collector.sqlite3")
    db.execute(
        # results' ids are stored in 16 bytes (collector/compact.py)
        f"CREATE TRIGGER poison BEFORE INSERT ON results WHEN NEW.id = "
        f"X'{uuid_bytes(failing['id']).hex()}'"
        " BEGIN SELECT RAISE(ABORT, 'poison row'); END"
    )
    db.commit()
    db.close()
    valid = seed(stack.workdir / "spool.db", 40, unknown, failing, broken)
    stack.start_agent(config)

    def gone() -> bool:
        assert stack.alive("agent"), stack.log_tail("agent")
        return dropped(stack, "rejected") + dropped(stack, "quarantined") == 3

    wait_for("the three poison items dropped", gone, 120)
    stored = [r["id"] for r in stack.results()]
    assert sorted(stored) == sorted(valid)
    rows = {i: (k, r) for i, k, r in rejected_rows(stack)}
    assert rows[unknown["id"]][0] == "rejected"
    assert "schema_version 99 is not supported" in rows[unknown["id"]][1]
    assert broken["id"] in rows
    kind, reason = rows[failing["id"]]
    assert kind == "quarantined" and "500" in reason
    assert dropped(stack, "quarantined") == 1 + (rows[broken["id"]][0] == "quarantined")
    assert metric(stack.agent_metrics(), "qos_scout_agent_spool_depth") == 0
    log = stack.log_tail("agent", 300)
    assert f"collector rejected result {unknown['id']}, dropped from the spool" in log
    assert f"result {failing['id']} dropped from the spool: quarantined" in log
    assert stack.stop("agent", sig=signal.SIGTERM) == 0


def test_a_spool_that_fails_under_the_shipper_does_not_end_the_agent(
    stack: Stack, hostile: Hostile
) -> None:
    """A write to the spool that fails (here a trigger refuses to delete one row, as a
    failing disk would) is logged and retried; the agent used to exit with status 1."""
    valid = seed(stack.workdir / "spool.db", 5)
    db = sqlite3.connect(stack.workdir / "spool.db")
    db.execute(
        f"CREATE TRIGGER stuck BEFORE DELETE ON results WHEN OLD.id = '{valid[2]}'"
        " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    )
    db.commit()
    config = hostile_agent(stack, hostile)
    stack.start_agent(config)
    wait_for("the batch stored", lambda: set(valid) <= set(hostile.stored), 30)
    wait_for("two failed acknowledgements", lambda: len(hostile.seen) >= 3, 30)
    assert stack.alive("agent"), stack.log_tail("agent")
    assert "shipping crashed" in stack.log_tail("agent", 200)
    db.execute("DROP TRIGGER stuck")
    db.commit()
    db.close()
    wait_for("the spool drained", lambda: metric(stack.agent_metrics(),
             "qos_scout_agent_spool_depth") == 0, 30)  # fmt: skip
    assert stack.stop("agent") == 0
