"""On-demand jobs (long poll) and /metrics names, over the HTTP API on both databases."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.collector.conftest import icmp, new_tenant, result

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_job_long_poll_wakes_on_new_job_and_tracks_status(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    t0 = time.monotonic()
    empty = t.agent.get("/api/v1/agent/jobs", params={"wait": 0.5})
    assert empty.json() == {"jobs": []} and time.monotonic() - t0 >= 0.45
    got: dict[str, object] = {}

    def poll() -> None:
        t1 = time.monotonic()
        got["resp"] = t.agent.get("/api/v1/agent/jobs", params={"wait": 20}).json()
        got["elapsed"] = time.monotonic() - t1

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.5)
    spec = {"probe": "icmp", "targets": ["192.0.2.9"], "options": {"count": 5}}
    job = t.partner.post(f"/api/v1/sites/{t.site_id}/jobs", json={"kind": "probe", "spec": spec})
    assert job.status_code == 201 and job.json()["state"] == "queued"
    th.join(25)
    [handed] = got["resp"]["jobs"]  # type: ignore[index]
    assert handed["id"] == job.json()["id"] and handed["spec"] == spec
    assert got["elapsed"] < 5  # woken by the new job, not by the 20 s timeout
    # Handed out once: the next poll does not get it again.
    assert t.agent.get("/api/v1/agent/jobs").json() == {"jobs": []}
    jid = handed["id"]
    r = t.agent.post(
        f"/api/v1/agent/jobs/{jid}/status",
        json={"state": "running", "progress": 0.5, "message": "pinging"},
    )
    assert r.status_code == 200 and r.json()["progress"] == 0.5
    t.post(icmp(10, job_id=jid))
    r = t.agent.post(
        f"/api/v1/agent/jobs/{jid}/status", json={"state": "done", "report": {"verdict": "pass"}}
    )
    assert r.json()["state"] == "done" and r.json()["progress"] == 1.0
    final = t.partner.get(f"/api/v1/jobs/{jid}").json()
    assert final["report"] == {"verdict": "pass"} and final["message"] == "pinging"
    again = t.agent.post(f"/api/v1/agent/jobs/{jid}/status", json={"state": "running"})
    assert again.status_code == 409
    rows = t.partner.get("/api/v1/results").json()
    assert rows[0]["job_id"] == jid
    bad = t.partner.post(f"/api/v1/sites/{t.site_id}/jobs", json={"kind": "probe", "spec": {}})
    assert bad.status_code == 422
    assert bad.json()["detail"] == "spec.probe: Field required; spec.targets: Field required"


def _samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_metrics_expose_every_documented_name(make_store, serve):
    hook = {"type": "webhook", "url": "http://127.0.0.1:9/never", "scope": "operator"}
    srv = serve(make_store(rules={"rtt": {"trip_after": 1}}, notifications=[hook]))
    t = new_tenant(
        srv, "acme", site={"contracted_down_bps": 100_000_000, "contracted_up_bps": 20_000_000}
    )
    voice = {
        "out": {"loss_pct": 0.5, "jitter_ms": 2.0, "mos": 4.3, "r_factor": 92.1},
        "back": {"loss_pct": 1.5, "jitter_ms": 3.0, "mos": 4.1, "r_factor": 88.0},
        "rtt_ms": {"avg": 20.0},
        "loss_pct": 2.0,
    }
    t.post(
        icmp(300, loss=1.0, jitter=4.0),
        result("udp", "198.51.100.7:862", voice),
        result(
            "bandwidth",
            "198.51.100.7",
            {
                "upload": {"throughput_bps": 1e7, "buffer_delay_pct": 250.0},
                "download": {"throughput_bps": 9e7},
            },
        ),
        result("sip_options", "sip:pbx.example.net", {"rtt_ms": 12.0, "status_code": 200}),
        result("sip_register", "sip:100@pbx.example.net", {"rrd_ms": 40.0}),
        result("sip_call", "sip:echo@pbx.example.net", {"srd_ms": 90.0, "sdd_ms": 15.0}),
        result("dns", "example.net", {"resolution_ms": 30.0}, success=False),
        result("mtu", "198.51.100.7", {"path_mtu": 1500}),
        result(
            "trace",
            "198.51.100.7",
            {"hop_count": 7, "loss_starts_at_hop": 5, "destination_loss_pct": 10.0},
        ),
        result("host", "local", {"cpu_pct": 12.0, "memory_used_pct": 40.0}),
        result("nat_binding", "198.51.100.7:8620", {"survived_s": 60.0}),
        {"schema_version": 7},
    )
    text = httpx.get(f"{srv.url}/metrics", headers=srv.scrape_headers).text
    s = _samples(text)
    documented = set(re.findall(r"^\| `(qos_scout_[a-z_]+)`", DOC.read_text(), re.M))
    assert len(documented) >= 17
    for name in documented:
        names = {name, name + "_total", name + "_bucket", name + "_count", name + "_sum"}
        assert names & set(s), f"{name} missing from /metrics"

    def val(name: str, **labels: str) -> float:
        hits = [x.value for x in s[name] if all(x.labels.get(k) == v for k, v in labels.items())]
        assert len(hits) == 1, (name, labels, hits)
        return hits[0]

    base = {"partner": "acme", "customer": "acme-customer", "site": "acme-hq", "agent": "acme-box"}
    assert val("qos_scout_rtt_ms", **base, probe="icmp", target="192.0.2.1", stat="avg") == 300
    assert val("qos_scout_mos", probe="udp", direction="back") == 4.1
    assert val("qos_scout_loss_pct", probe="udp", direction="rtt") == 2.0
    assert val("qos_scout_r_factor", probe="udp", direction="out") == 92.1
    assert val("qos_scout_jitter_ms", probe="icmp", direction="rtt") == 4.0
    assert val("qos_scout_throughput_bps", direction="down") == 9e7
    assert val("qos_scout_sip_timing_ms", metric="options_rtt") == 12.0
    assert val("qos_scout_sip_timing_ms", metric="rrd") == 40.0
    assert val("qos_scout_sip_timing_ms", metric="sdd") == 15.0
    assert val("qos_scout_probe_success", probe="dns") == 0.0
    assert val("qos_scout_contracted_bps", direction="up") == 20_000_000
    assert val("qos_scout_site_state", site="acme-hq") == 1.0  # rtt warning ticket
    assert val("qos_scout_open_tickets", partner="acme", severity="warning") == 1.0
    assert val("qos_scout_ingest_results_total", status="stored") == 11
    assert val("qos_scout_ingest_results_total", status="rejected") == 1
    assert val("qos_scout_ingest_request_seconds_count") >= 1
    assert val("qos_scout_outbox_pending") == 1  # the ticket's notification
    assert val("qos_scout_notifications_total", channel="webhook", status="sent") == 0
    seen = val("qos_scout_agent_last_seen_timestamp_seconds", agent="acme-box")
    assert abs(seen - time.time()) < 60
