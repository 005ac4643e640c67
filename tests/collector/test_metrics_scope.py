"""Who may read which metrics: the operator's /metrics needs the scrape token (401 naming
what is missing), a partner's /api/v1/metrics shows only that partner's series, the API
docs are served only when the operator turns them on, and a `collector serve` with a
metrics listener of its own serves /metrics there and nothing else."""

from __future__ import annotations

import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.config import ConfigFileError, MetricsConfig
from tests.collector.conftest import SCRAPE_TOKEN, icmp, new_tenant
from tests.collector.peers import start_collector
from tests.collector.pg import free_port


def _labels(text: str) -> list[dict[str, str]]:
    return [s.labels for f in text_string_to_metric_families(text) for s in f.samples]


def test_operator_metrics_need_the_scrape_token(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    t.post(icmp(12.5, target="192.0.2.10"))
    bare = httpx.get(f"{srv.url}/metrics")
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    assert bare.json()["detail"] == "/metrics needs 'Authorization: Bearer <scrape token>'"
    assert "qos_scout" not in bare.text
    wrong = httpx.get(f"{srv.url}/metrics", headers={"Authorization": "Bearer " + "x" * 30})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong scrape token for /metrics"
    # A partner key or an agent key is not the scrape token either.
    for client in (t.partner, t.agent):
        assert client.get("/metrics").status_code == 401
    ok = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")
    assert {"partner": "acme", "target": "192.0.2.10"}.items() <= next(
        lab for lab in _labels(ok.text) if lab.get("target") == "192.0.2.10"
    ).items()


def test_no_token_configured_means_no_operator_metrics(make_store, serve):
    srv = serve(make_store(metrics={}))
    r = httpx.get(f"{srv.url}/metrics", headers={"Authorization": "Bearer anything-at-all"})
    assert r.status_code == 401
    assert r.json()["detail"].startswith(
        "no scrape token is configured on this collector: the operator sets "
        "metrics.token_file (or QOS_SCOUT_METRICS_TOKEN)"
    )


def test_token_file_and_environment(tmp_path, monkeypatch):
    f = tmp_path / "token"
    f.write_text("  from-a-file-0123456789\n")
    assert MetricsConfig(token_file=f).scrape_token() == "from-a-file-0123456789"
    f.write_text("short\n")
    with pytest.raises(ConfigFileError, match="at least 16 characters"):
        MetricsConfig(token_file=f).scrape_token()
    with pytest.raises(ConfigFileError, match="cannot read"):
        MetricsConfig(token_file=tmp_path / "missing").scrape_token()
    monkeypatch.setenv("QOS_SCOUT_METRICS_TOKEN", "from-the-environment-0123")
    assert MetricsConfig().scrape_token() == "from-the-environment-0123"


def test_a_partner_scrapes_only_its_own_series(make_store, serve):
    srv = serve(make_store())
    a, b = new_tenant(srv, "acme"), new_tenant(srv, "globex")
    a.post(icmp(10, target="192.0.2.1"))
    b.post(icmp(20, target="198.51.100.2"))
    r = a.partner.get("/api/v1/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    labels = _labels(r.text)
    assert {"partner": "acme", "customer": "acme-customer", "site": "acme-hq",
            "agent": "acme-box", "probe": "icmp", "target": "192.0.2.1"} in labels  # fmt: skip
    seen = {v for lab in labels for v in lab.values()}
    assert not seen & {"globex", "globex-customer", "globex-hq", "globex-box", "198.51.100.2"}
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert "qos_scout_rtt_ms" in names and "qos_scout_open_tickets" in names
    # The process's own counters (every partner's traffic) are the operator's.
    assert not {"qos_scout_ingest_results", "qos_scout_outbox_pending"} & names
    rb = b.partner.get("/api/v1/metrics").text
    assert "198.51.100.2" in rb and "192.0.2.1" not in rb and "acme" not in rb
    assert httpx.get(f"{srv.url}/api/v1/metrics").status_code == 401
    assert a.agent.get("/api/v1/metrics").status_code == 401  # an agent key is not a partner's


def test_api_docs_only_when_turned_on(make_store, serve):
    srv = serve(make_store())
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{srv.url}{path}").status_code == 404
    paths = srv.app.openapi()["paths"]  # the schema is still there for tests and tools
    new = (
        "/api/v1/metrics",
        "/api/v1/tokens",
        "/api/v1/agents/{agent_id}/revoke",
        "/api/v1/agents/{agent_id}/rotate-key",
        "/api/v1/tokens/{token_id}/revoke",
    )
    for p in new:
        assert p in paths
    on = serve(make_store(api_docs=True))
    assert httpx.get(f"{on.url}/openapi.json").json()["paths"].keys() == paths.keys()


def test_serve_with_a_metrics_listener_of_its_own(tmp_path):
    token = tmp_path / "scrape-token"
    token.write_text("listener-token-0123456789\n")
    port, mport = free_port(), free_port()
    cfg = tmp_path / "collector.yml"
    cfg.write_text(f"metrics:\n  token_file: {token}\n  listen: 127.0.0.1:{mport}\n")
    proc = start_collector(port, "--config", str(cfg), "--db", f"sqlite:///{tmp_path}/c.db")
    try:
        side = f"http://127.0.0.1:{mport}"
        auth = {"Authorization": "Bearer listener-token-0123456789"}
        assert httpx.get(f"{side}/metrics").status_code == 401
        r = httpx.get(f"{side}/metrics", headers=auth)
        assert r.status_code == 200 and "qos_scout_ingest_results_total" in r.text
        for path in ("/api/v1/customers", "/healthz", "/docs", "/openapi.json"):
            assert httpx.get(f"{side}{path}", headers=auth).status_code == 404
        main = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{main}/metrics").status_code == 401
        assert httpx.get(f"{main}/metrics", headers=auth).status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0 and b"Traceback" not in err, err[-2000:]
    finally:
        proc.kill()


def test_serve_refuses_an_unreadable_token_file(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    cfg = tmp_path / "collector.yml"
    cfg.write_text(f"metrics:\n  token_file: {tmp_path}/nope\n")
    exe = str(Path(sys.executable).parent / "qos-scout")
    p = subprocess.run(
        [exe, "collector", "serve", "--config", str(cfg), "--db", f"sqlite:///{tmp_path}/c.db"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 2
    assert f"metrics.token_file {tmp_path}/nope: cannot read" in p.stderr
    assert "Traceback" not in p.stderr
