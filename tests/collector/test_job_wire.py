"""Jobs on the wire, from both sides of a real collector: the API refuses a malformed spec or
an unknown schema_version with the field or the version named (422, never a 500), and the
agent's job runner fails a malformed job it is handed with the validation message."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa

from agent.runtime.client import CollectorClient
from agent.runtime.config import SiteConfig
from agent.runtime.jobs import JobRunner
from agent.runtime.scheduler import Scheduler
from agent.wire.jobs import JOB_SCHEMA_VERSION, Job, ProbeJobSpec
from agent.wire.results import ProbeResult
from collector.keys import new_id
from collector.schema import jobs
from tests.collector.conftest import LiveServer, Tenant, new_tenant


def _queue(t: Tenant, body: dict[str, Any]) -> Any:
    return t.partner.post(f"/api/v1/sites/{t.site_id}/jobs", json=body)


def test_a_malformed_job_spec_is_refused_with_the_field_named(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    refused = {
        "spec.targets: List should have at least 1 item after validation, not 0": {
            "kind": "probe", "spec": {"probe": "icmp", "targets": []}},
        "spec.probe: unknown probe 'pingg' (known: bandwidth, dns, host, icmp, mtu, nat_binding, "
        "sip_call, sip_options, sip_register, trace, udp)": {
            "kind": "probe", "spec": {"probe": "pingg", "targets": ["192.0.2.1"]}},
        "spec.targets.1: String should have at most 512 characters": {
            "kind": "probe", "spec": {"probe": "icmp", "targets": ["192.0.2.1", "x" * 513]}},
        "spec.options: Input should be a valid dictionary": {
            "kind": "probe", "spec": {"probe": "icmp", "targets": ["a"], "options": [1]}},
        "spec.colour: unknown key": {
            "kind": "probe", "spec": {"probe": "icmp", "targets": ["a"], "colour": "red"}},
        "spec.suite: Field required": {"kind": "suite", "spec": {"options": {}}},
    }  # fmt: skip
    for detail, body in refused.items():
        r = _queue(t, body)
        assert (r.status_code, r.json()["detail"]) == (422, detail), body
    with srv.store.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == 0
    ok = _queue(t, {"kind": "probe", "spec": {"probe": "icmp", "targets": [" 192.0.2.1 "]}})
    assert ok.status_code == 201
    assert ok.json()["spec"] == {"probe": "icmp", "targets": ["192.0.2.1"], "options": {}}
    assert ok.json()["schema_version"] == JOB_SCHEMA_VERSION


def test_an_unknown_job_schema_version_is_refused(make_store, serve):
    t = new_tenant(serve(make_store()), "acme")
    spec = {"probe": "icmp", "targets": ["192.0.2.1"]}
    r = _queue(t, {"schema_version": 9, "kind": "probe", "spec": spec})
    assert r.status_code == 422
    assert r.json()["detail"] == "schema_version 9 is not supported by this collector (known: 1)"
    job = _queue(t, {"kind": "probe", "spec": spec}).json()
    status = f"/api/v1/agent/jobs/{job['id']}/status"
    r = t.agent.post(status, json={"schema_version": 9, "state": "running"})
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "schema_version"]
    assert err["msg"].endswith("schema_version 9 is not supported (known: 1)")
    r = t.agent.post(status, json={"state": "running", "progress": 1.5})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "progress"]
    r = t.agent.post(status, json={"schema_version": 1, "state": "running", "progress": 0.5})
    assert r.status_code == 200 and r.json()["progress"] == 0.5


def _store_job(srv: LiveServer, t: Tenant, kind: str, spec: Any) -> str:
    """A job row as a collector of another version might have stored it (not validated)."""
    jid, now = new_id(), time.time()
    with srv.store.write() as c:
        c.execute(
            jobs.insert().values(
                id=jid, partner_id=t.partner_id, site_id=t.site_id, kind=kind, spec=spec,
                state="queued", progress=0.0, message="", report=None, created_at=now,
                updated_at=now,
            )
        )  # fmt: skip
    return jid


def test_the_agent_fails_a_malformed_job_with_the_validation_message(make_store, serve, tmp_path):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    bad = _store_job(srv, t, "probe", {"probe": "icmp", "targets": []})
    host = {"probe": "host", "targets": ["local"], "options": {"sample_s": 0.05}}
    good = _queue(t, {"kind": "probe", "spec": host}).json()["id"]
    key = str(t.agent.headers["Authorization"]).removeprefix("Bearer ")
    produced: list[ProbeResult] = []

    async def agent_side() -> list[dict[str, Any]]:
        client = CollectorClient(srv.url, key)
        runner = JobRunner(client, Scheduler({}, produced.append), SiteConfig())
        offered = await client.poll_jobs(0)
        for job in offered:
            await runner.execute(job)
        assert (runner.done, runner.failed) == (1, 1)
        return offered

    offered = asyncio.run(agent_side())
    assert {j["id"] for j in offered} == {bad, good}
    handed = Job.parse(next(j for j in offered if j["id"] == good))
    assert isinstance(handed.spec, ProbeJobSpec) and handed.spec.probe == "host"
    failed = t.partner.get(f"/api/v1/jobs/{bad}").json()
    assert failed["state"] == "failed"
    assert failed["message"] == (
        "malformed job: spec.targets: List should have at least 1 item after validation, not 0"
    )
    done = t.partner.get(f"/api/v1/jobs/{good}").json()
    assert done["state"] == "done" and done["report"]["results"] == 1
    assert [r.job_id for r in produced] == [good]


def test_the_agent_refuses_a_job_of_an_unknown_schema_version_by_name() -> None:
    job = {"schema_version": 2, "id": "j1", "kind": "suite", "spec": {"suite": "readiness"}}
    with pytest.raises(ValueError) as info:
        Job.parse(job, "this agent")
    assert str(info.value) == "schema_version 2 is not supported by this agent (known: 1)"
    with pytest.raises(ValueError, match=r"^spec: a suite job's spec must be a mapping$"):
        Job.parse({**job, "schema_version": 1, "spec": ["readiness"]})
    with pytest.raises(ValueError, match=r"^kind: Input should be 'probe' or 'suite'$"):
        Job.parse({**job, "schema_version": 1, "kind": "script"})
