"""Readiness through the collector with a real agent: queue, progress, report, ticket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.readiness.stackfix import ReadinessStack, readiness_stack


@pytest.fixture
def rs(tmp_path: Path) -> Iterator[ReadinessStack]:
    yield from readiness_stack(tmp_path)


def _wait_done(rs: ReadinessStack, test_id: str) -> tuple[dict[str, Any], list[str]]:
    messages: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        r = rs.api("GET", f"/api/v1/readiness/{test_id}")
        assert r.status_code == 200, r.text
        v = r.json()
        if v["message"] and v["message"] not in messages:
            messages.append(v["message"])
        if v["state"] in ("done", "failed"):
            return v, messages
        time.sleep(0.2)
    raise AssertionError(f"readiness test did not finish: {messages}")


def test_a_failed_readiness_test_reports_progress_opens_a_ticket_with_the_report(
    rs: ReadinessStack,
) -> None:
    site = rs.stack.site_id
    body = {"options": rs.options, "call_info": {"user": "Alice", "caller_number": "+4930123"}}
    r = rs.api("POST", f"/api/v1/sites/{site}/readiness", json=body)
    assert r.status_code == 201, r.text
    test = r.json()
    assert test["state"] == "queued" and test["verdict"] is None
    v, messages = _wait_done(rs, test["id"])
    assert v["state"] == "done", v["message"]
    assert any(m.startswith("voice stream") for m in messages), messages
    assert v["verdict"] == "fail"
    checks = {c["id"]: c for c in v["report"]["checks"]}
    assert checks["voice.jitter.out"]["status"] == "fail"
    assert checks["voice.jitter.out"]["value"] > 30.0
    assert checks["voice.jitter.back"]["status"] == "pass"
    assert checks["nat.binding"]["details"]["survived_s"] == 0.5
    assert v["report"]["call_info"]["user"] == "Alice"
    # the failed test opened its ticket, with the report as evidence
    assert v["ticket_id"]
    t = rs.api("GET", f"/api/v1/tickets/{v['ticket_id']}").json()
    assert t["state"] == "open" and t["severity"] == "critical" and t["rule_id"] == "readiness"
    assert "Jitter upstream" in t["title"]
    assert t["evidence"]["readiness"]["verdict"] == "fail"
    failed = [c["id"] for c in t["evidence"]["failed_checks"]]
    # the upstream MOS may fail too: the jitter buffer drops late packets (random schedule)
    assert failed[0] == "voice.jitter.out" and set(failed) <= {"voice.jitter.out", "voice.mos.out"}
    # opening it again answers the same ticket
    again = rs.api("POST", f"/api/v1/readiness/{test['id']}/ticket")
    assert again.status_code == 201 and again.json()["ticket_id"] == v["ticket_id"]
    # call info can be added to the ticket
    ci = rs.api("PUT", f"/api/v1/tickets/{v['ticket_id']}/call_info",
                json={"callee_number": "+4940999", "firewall": "FortiGate 60F"})  # fmt: skip
    assert ci.status_code == 200, ci.text
    assert ci.json()["evidence"]["call_info"]["firewall"] == "FortiGate 60F"
    assert ci.json()["events"][-1]["kind"] == "call_info"
    # the report as a self-contained page, and the agent's probe results tagged with the job
    page = rs.api("GET", f"/api/v1/readiness/{test['id']}/report.html")
    assert page.status_code == 200 and "Not ready for voice" in page.text
    assert "<script" not in page.text and "http://" not in page.text.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        res = rs.api("GET", "/api/v1/results", params={"site_id": site, "probe": "udp"}).json()
        if any(x.get("job_id") == test["id"] for x in res):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the voice stream result never reached the collector")
    listed = rs.api("GET", f"/api/v1/sites/{site}/readiness").json()
    assert [x["id"] for x in listed] == [test["id"]]
    # bad options are refused with the key named; unknown tests are 404
    bad = rs.api("POST", f"/api/v1/sites/{site}/readiness", json={"options": {"voice_sec": 3}})
    assert bad.status_code in (400, 422) and "voice_sec" in bad.text, bad.text
    other = rs.api("GET", "/api/v1/readiness/00000000-0000-0000-0000-000000000000")
    assert other.status_code == 404
