"""schemathesis against a running collector (real uvicorn on loopback, SQLite and
PostgreSQL): every operation of its OpenAPI schema, called with the owner's key on objects
that exist, with generated and with invalid input, with NUL in every string, with every
field null, with a body one byte over the route's limit, with another partner's key, the
wrong kind of key, a made-up key and no key, and finally from a throttled address. No
answer may be a server error, every answer must be one the schema documents (status code,
content type, body), and no 2xx to another partner may carry the first partner's ids."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import pytest
from schemathesis import GenerationMode

from collector.api.limits import body_limit
from tests.collector.conftest import icmp, new_tenant
from tests.security.fuzz import (
    Run,
    Tally,
    fuzz_operation,
    load_schema,
    operations,
    oversized_body,
    throttle_check,
)

# Examples per (operation, run). The whole run stays near 15-30 s per database on a
# 2-core machine; `make fuzz` multiplies them by QS_FUZZ_SCALE to dig deeper (the generation
# is derandomized, so a given number always generates the same requests).
SCALE = int(os.environ.get("QS_FUZZ_SCALE", "1"))
OWNER_VALID = 5 * SCALE
OWNER_GENERATED_IDS = 3 * SCALE
OWNER_INVALID = 4 * SCALE
OTHERS = 2 * SCALE

AGENT_PATHS = ("/api/v1/enroll", "/api/v1/agent/", "POST /api/v1/results")
SCRAPE_TOKEN = "operator-scrape-token-" + "7" * 16
MASTER_KEY = "ZmFrZS1tYXN0ZXIta2V5LWZvci10ZXN0cy0wMTIzNDU="  # 32 bytes, url-safe base64


def _world(srv: Any) -> tuple[dict[str, str], dict[str, str]]:
    """Partner A with a customer, a site (with a probe profile), an agent, results, open
    tickets, a probe job and a readiness job; partner B with its own. Returns A's ids and
    the keys."""
    a = new_tenant(srv, "acme")
    b = new_tenant(srv, "globex")
    a.post(*[icmp(300, target="192.0.2.1", loss=50) for _ in range(5)])
    deadline = time.monotonic() + 30
    while not (tickets := a.partner.get("/api/v1/tickets").json()):
        assert time.monotonic() < deadline, "no ticket opened by 5 results of 50 % loss"
        time.sleep(0.05)
    spec = {"probe": "icmp", "targets": ["192.0.2.9"], "options": {"count": 5}}
    job = a.partner.post(f"/api/v1/sites/{a.site_id}/jobs", json={"kind": "probe", "spec": spec})
    assert job.status_code == 201, job.text
    rd = a.partner.post(
        f"/api/v1/sites/{a.site_id}/readiness", json={"options": {"responder": "192.0.2.7"}}
    )
    assert rd.status_code == 201, rd.text
    tok = a.partner.post(f"/api/v1/sites/{a.site_id}/tokens", json={})
    assert tok.status_code == 201, tok.text
    ping = {"probe": "icmp", "targets": ["192.0.2.9"], "interval_s": 60}
    prof = a.partner.put(f"/api/v1/profiles/site/{a.site_id}", json={"modules": {"p": ping}})
    assert prof.status_code == 200, prof.text
    psa = {
        "type": "connectwise", "name": "psa", "url": "https://psa.example.invalid/apis/3.0",
        "company": "acme", "client_id": "c", "public_key": "p", "private_key": "k",
        "board": "Voice",
    }  # fmt: skip
    ch = a.partner.post("/api/v1/channels", json=psa)
    assert ch.status_code == 201, ch.text
    mapped = a.partner.put(
        f"/api/v1/channels/{ch.json()['id']}/mappings/{a.site_id}", json={"company": "ACME"}
    )
    assert mapped.status_code == 200, mapped.text
    window = {"scope": "site", "scope_id": a.site_id, "schedule": {
        "kind": "weekly", "weekday": "sunday", "start": "02:30", "duration_min": 60,
        "timezone": "Europe/Berlin"}}  # fmt: skip
    maint = a.partner.post("/api/v1/maintenance", json=window)
    assert maint.status_code == 201, maint.text
    ids = {
        "channel_id": str(ch.json()["id"]),
        "window_id": maint.json()["id"],
        "customer_id": a.customer_id,
        "site_id": a.site_id,
        "agent_id": a.agent_id,
        "ticket_id": str(tickets[0]["id"]),
        "job_id": str(job.json()["id"]),
        "readiness_job_id": str(rd.json()["id"]),
        "token": tok.json()["token"],
        "scope_id": a.site_id,  # the profile routes: the site's profile; a channel's mapping
    }

    def key(client: httpx.Client) -> str:
        return str(client.headers["Authorization"]).removeprefix("Bearer ")

    keys = {
        "partner": key(a.partner),
        "agent": key(a.agent),
        "other_partner": key(b.partner),
        "other_agent": key(b.agent),
        "operator": SCRAPE_TOKEN,
    }
    return ids, keys


def _runs(label: str, keys: dict[str, str]) -> list[Run]:
    agent_op = any(label.startswith(p) or f" {p}" in label for p in AGENT_PATHS)
    owner, other, wrong = (
        ("agent", "other_agent", "partner") if agent_op else ("partner", "other_partner", "agent")
    )
    if label == "GET /metrics":  # the operator's scrape of every partner's series
        owner, other, wrong = "operator", "other_partner", "agent"
    pos, neg = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
    return [
        Run("owner key, valid input, real ids", keys[owner], pos, True, OWNER_VALID),
        Run("owner key, valid input", keys[owner], pos, False, OWNER_GENERATED_IDS),
        Run("owner key, invalid input", keys[owner], neg, False, OWNER_INVALID),
        Run("owner key, NUL in every string", keys[owner], pos, True, OTHERS, mutate="nul"),
        Run("owner key, every field null", keys[owner], pos, True, OTHERS, mutate="null"),
        Run("other partner's key, real ids", keys[other], pos, True, OTHERS, foreign=True),
        Run("wrong kind of key, real ids", keys[wrong], pos, True, OTHERS),
        Run("made-up key, real ids", "qs_" + "0" * 40, pos, True, OTHERS),
        Run("no key, real ids", None, pos, True, OTHERS),
    ]


def test_every_operation_answers_as_documented(
    make_store: Any,
    serve: Any,
    db_url: str,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The throttles would answer most of the run 429 (it fails authentication on purpose,
    # from one address): off here, and their own answers are checked at the end.
    unthrottled = {"auth_failures_max": 0, "partner_requests_per_s": 0}
    store = make_store(
        rules={"loss": {"trip_after": 1}},
        web=unthrottled,
        metrics={"token": SCRAPE_TOKEN},
        channels={"master_keys": [MASTER_KEY]},
    )
    srv = serve(store)
    ids, keys = _world(srv)
    schema = load_schema(srv.app)
    ops = operations(schema)
    tally = Tally()
    t0 = time.monotonic()
    for op in ops:
        label = f"{op.method.upper()} {op.path}"
        op_ids = dict(ids)
        if "/readiness/" in op.path:
            op_ids["job_id"] = ids["readiness_job_id"]
        runs = _runs(label, keys)
        for run in runs:
            fuzz_operation(op, run, srv.url, op_ids, tally)
        if op.method.upper() in ("POST", "PUT", "PATCH"):
            limit, _ = body_limit(srv.store.config.limits, op.path)
            oversized_body(op, str(runs[0].key), srv.url, op_ids, limit, tally)
    throttled = serve(
        make_store(channels={"master_keys": [MASTER_KEY]}), background=False
    )  # the same database, default throttles
    throttle_check(ops, throttled.url, keys["partner"], tally)
    elapsed = time.monotonic() - t0

    backend = db_url.split(":", 1)[0]
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(tally.by_status.items()))
    findings = tally.distinct()
    with capsys.disabled():
        print(
            f"\nschemathesis on {backend}: {len(ops)} operations, {tally.cases} generated "
            f"cases in {elapsed:.1f} s (answers {statuses}); {len(tally.findings)} failed "
            f"checks, {len(findings)} distinct"
        )
    assert len(tally.by_operation) == len(ops), "an operation generated no case"
    if findings:
        # Server errors first, then bodies against the schema, then undocumented statuses.
        order = {"Server error": 0, "Response violates schema": 1}
        findings.sort(key=lambda f: (order.get(f.title, 2), f.operation))
        lines = [f.line() for f in findings]
        report = tmp_path / "findings.txt"
        report.write_text("\n".join(lines) + "\n")
        shown = "\n".join(lines[:60])
        pytest.fail(f"{len(findings)} distinct findings (all in {report}):\n{shown}", False)
