"""Every dashboard panel's query returns data from a real Prometheus scraping a real collector
fed by a real agent (which probes a real responder and a real DNS server), with the template
variables filled in from Prometheus itself, as Grafana would; and the same from a real
VictoriaMetrics (Debian `victoria-metrics`) scraping the same collector in two shards
(`/metrics?shard=i&shards=2`, docs/metrics.md), the set-up docs/deploy.md gives for large
fleets.

On this healthy loopback path some families have no series by design: the first hop of
persistent loss (none), and without root the mtu and trace probes (raw sockets) fail, so
their panels stay empty; tests/contract/ shows each of them with data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.cli.demo import responder_plan
from agent.cli.stack import Stack, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "net"))
from dnsserver import ZoneServer  # noqa: E402

# The boards on Prometheus (site-history reads PostgreSQL: test_site_history_board.py).
BOARDS = [
    p
    for p in sorted((ROOT / "dashboards" / "json").glob("*.json"))
    if json.loads(p.read_text())["panels"][0]["datasource"]["type"] == "prometheus"
]
ROOT_ONLY = ("mtu", "trace")  # raw ICMP sockets
PROBES = ("icmp", "udp", "bandwidth", "sip_options", "sip_call", "dns", "host", "nat_binding",
          *(ROOT_ONLY if os.geteuid() == 0 else ()))  # fmt: skip
# Families without a series on a healthy path, or without the probes that need root.
EMPTY_HERE = {"qos_scout_trace_loss_start_hop"} | (
    set()
    if os.geteuid() == 0
    else {
        "qos_scout_path_mtu_bytes",
        "qos_scout_trace_hops",
        "qos_scout_trace_destination_loss_pct",
    }
)
ZONE = """
$TTL 300
@    IN SOA ns.e2e.test. admin.e2e.test. 1 3600 600 86400 60
@    IN NS  ns.e2e.test.
ns   IN A   127.0.0.1
pbx  IN A   127.0.0.1
"""

# The time-series databases the panels are proven against (each skips when not installed;
# .ci/run installs both).
BACKENDS = ("prometheus", "victoria-metrics")


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _modules(ports: dict[str, int], dns_port: int) -> dict[str, Any]:
    responder = "127.0.0.1"
    sip = f"sip:echo@127.0.0.1:{ports['sip']}"
    root_only: dict[str, Any] = {
        "mtu": {"probe": "mtu", "targets": [responder], "interval_s": 60,
                "options": {"timeout_s": 0.3}},
        "trace": {"probe": "trace", "targets": [responder], "interval_s": 60,
                  "options": {"rounds": 2, "timeout_s": 0.3}},
    }  # fmt: skip
    return {
        **{k: v for k, v in root_only.items() if v["probe"] in PROBES},
        "dns": {
            "probe": "dns",
            "targets": ["pbx.e2e.test"],
            "interval_s": 30,
            "options": {"server": "127.0.0.1", "server_port": dns_port, "record_types": ["A"]},
        },
        "host": {
            "probe": "host",
            "targets": ["local"],
            "interval_s": 30,
            "options": {"sample_s": 0.2},
        },
        "nat": {
            "probe": "nat_binding",
            "targets": [f"127.0.0.1:{ports['natprobe']}"],
            "interval_s": 60,
            "options": {"intervals_s": [0.2, 0.5]},
        },
        "ping": {
            "probe": "icmp",
            "targets": [responder],
            "interval_s": 30,
            "options": {"count": 5, "interval_s": 0.05, "timeout_s": 1},
        },
        "voice": {
            "probe": "udp",
            "targets": [f"127.0.0.1:{ports['twamp']}"],
            "interval_s": 60,
            "options": {"duration_s": 2},
        },
        "bandwidth": {
            "probe": "bandwidth",
            "targets": [responder],
            "interval_s": 120,
            "options": {"port": ports["bandwidth"], "duration_s": 1, "streams": 1},
        },
        "sip_options": {"probe": "sip_options", "targets": [sip], "interval_s": 30},
        "sip_call": {
            "probe": "sip_call",
            "targets": [sip],
            "interval_s": 120,
            "options": {"duration_s": 2},
        },
    }


@pytest.fixture(scope="module")
def fed_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A collector with a stored result of every probe from a real agent, still running."""
    work = tmp_path_factory.mktemp("prom-e2e")
    stack = Stack(work)
    dns = ZoneServer("e2e.test.", ZONE).__enter__()
    try:
        stack.start_collector()
        token = stack.create_tenancy(partner="e2e-partner", site="e2e-site")
        stack.api(
            "PATCH",
            f"/api/v1/sites/{stack.site_id}",
            json={"contracted_down_bps": 100_000_000, "contracted_up_bps": 20_000_000},
        )
        args, ports = responder_plan()
        stack.start_responder(args, lambda: _tcp_open(ports["bandwidth"]))
        config = stack.write_agent_config(_modules(ports, dns.port))
        stack.enroll(config, token)
        stack.start_agent(config)

        def every_probe_stored() -> bool:
            got = {r["probe"] for r in stack.results() if r["success"]}
            return set(PROBES) <= got

        wait_for("a stored result of every probe", every_probe_stored, 120.0, every_s=1.0)
        yield stack
    finally:
        stack.close()
        dns.__exit__(None, None, None)


def _scrape_config(stack: Stack, backend: str) -> str:
    """Prometheus scrapes /metrics whole; VictoriaMetrics scrapes it as two shards (two
    targets of one job, told apart by `instance`)."""
    target = stack.collector_url.removeprefix("http://")
    evaluation = ", evaluation_interval: 1s" if backend == "prometheus" else ""
    head = (
        f"global: {{scrape_interval: 1s{evaluation}}}\n"
        "scrape_configs:\n"
        "  - job_name: qos-scout-collector\n"
        f"    authorization: {{credentials_file: '{stack.metrics_token_file}'}}\n"
    )
    if backend == "prometheus":
        return head + f"    static_configs: [{{targets: ['{target}']}}]\n"
    shards = "".join(
        f"      - targets: ['{target}']\n"
        f"        labels: {{instance: 'collector-shard-{i}', __param_shard: '{i}',"
        " __param_shards: '2'}\n"
        for i in range(2)
    )
    return head + "    static_configs:\n" + shards


def _start(backend: str, work: Path, cfg: Path, port: int) -> subprocess.Popen[bytes]:
    if backend == "prometheus":
        cmd = [
            "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
    else:
        cmd = [
            "victoria-metrics",
            f"-promscrape.config={cfg}",
            f"-storageDataPath={work / 'vmdata'}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-retentionPeriod=1d",
            "-search.latencyOffset=0s",  # answer with the newest samples (default: 30 s old)
            "-search.disableCache",
        ]
    log = open(work / f"{backend}.log", "wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module", params=BACKENDS)
def prometheus_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The query API of a time-series database (Prometheus or VictoriaMetrics) that has
    scraped the fed collector long enough for the dashboards' rate() windows."""
    backend: str = request.param
    if shutil.which(backend) is None:
        pytest.skip(f"{backend} is not installed (.ci/run installs it)")
    stack: Stack = request.getfixturevalue("fed_collector")
    work = tmp_path_factory.mktemp(backend)
    cfg = work / "scrape.yml"
    cfg.write_text(_scrape_config(stack, backend))
    port = free_port()
    proc = _start(backend, work, cfg, port)
    url = f"http://127.0.0.1:{port}"
    try:

        def scraped_enough() -> bool:
            # rate() over the dashboards' windows needs several samples of each series.
            try:
                answer = httpx.get(
                    f"{url}/api/v1/query",
                    params={"query": 'count_over_time(up{job="qos-scout-collector"}[1m])'},
                    timeout=5,
                )
            except httpx.HTTPError:
                assert proc.poll() is None, f"{backend} exited: see {work}/{backend}.log"
                return False
            if answer.status_code != 200:  # still starting: "Service Unavailable", not JSON
                return False
            r = answer.json()
            res = r["data"]["result"]
            want = 1 if backend == "prometheus" else 2
            return len(res) == want and all(float(x["value"][1]) >= 5 for x in res)

        wait_for(f"{backend} to scrape the collector", scraped_enough, 60.0, every_s=1.0)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def _query(url: str, expr: str, *, instant: bool) -> list[Any]:
    if instant:
        resp = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    else:
        now = time.time()
        resp = httpx.get(
            f"{url}/api/v1/query_range",
            params={"query": expr, "start": now - 120, "end": now, "step": "2s"},
            timeout=10,
        )
    body = resp.json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    return list(body["data"]["result"])


def _promql_regex(value: str) -> str:
    """A literal value as a regex inside a double-quoted PromQL string (backslashes doubled)."""
    return re.escape(value).replace("\\", "\\\\")


def _fill_variables(url: str, board: dict[str, Any]) -> dict[str, str]:
    """Fill the variables as a support engineer opening one site would: partner, customer
    and site are chosen (each `label_values(selector, label)` query evaluated in order, its
    first value taken); `target` stays at its default, All."""
    values: dict[str, str] = {}
    for var in board["templating"]["list"]:
        if var["name"] == "target":
            assert var["current"]["value"] == "$__all"
            values["target"] = var["allValue"]
            continue
        query = var["query"]["query"]
        m = re.fullmatch(r"label_values\((.*), (\w+)\)", query)
        assert m, f"unexpected variable query {query!r}"
        selector, label = m.groups()
        for name, value in values.items():
            selector = selector.replace(f"${name}", value)
        resp = httpx.get(
            f"{url}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10
        ).json()
        assert resp["status"] == "success" and resp["data"], f"variable {var['name']}: no values"
        values[var["name"]] = _promql_regex(sorted(resp["data"])[0])
    return values


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_every_panel_query_returns_data(prometheus_url: str, path: Path) -> None:
    board = json.loads(path.read_text())
    values = _fill_variables(prometheus_url, board)
    empty = []
    checked = 0
    panels = [p for p in board["panels"] if p["type"] != "row"]
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in values.items():
                expr = expr.replace(f"${name}", value)
            assert "$" not in expr, f"unfilled variable in {expr}"
            result = _query(prometheus_url, expr, instant=bool(target.get("instant")))
            checked += 1
            if not result and not any(f"{name}{{" in expr for name in EMPTY_HERE):
                empty.append(f"{panel['title']}: {expr}")
    assert checked >= len(panels)
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_rules_evaluate_against_live_metrics(prometheus_url: str) -> None:
    """The recording rules' expressions select live series (names and labels match)."""
    import yaml

    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
    for group in rules["groups"]:
        if group["name"] != "qos-scout-recording":
            continue
        for rule in group["rules"]:
            assert _query(prometheus_url, rule["expr"], instant=True), rule["record"]


def test_each_series_is_scraped_once(prometheus_url: str, request: pytest.FixtureRequest) -> None:
    """With two shard targets (VictoriaMetrics here), the one site's result series come from
    one shard and the process's counters from shard 0 only: no series is stored twice."""
    if request.node.callspec.params["prometheus_url"] == "prometheus":
        pytest.skip("Prometheus scrapes /metrics whole here")

    def instances(expr: str) -> set[str]:
        return {r["metric"]["instance"] for r in _query(prometheus_url, expr, instant=True)}

    assert instances("count by (instance) (qos_scout_ingest_results_total)") == {
        "collector-shard-0"
    }
    assert len(instances("count by (instance) (qos_scout_probe_success)")) == 1
    assert len(instances("count by (instance) (qos_scout_site_state)")) == 1
    assert not _query(
        prometheus_url, "count by (partner, site, agent, probe, target) "
        "(qos_scout_probe_success) > 1", instant=True,
    )  # fmt: skip
