"""The contract harness: one real collector, one real Prometheus scraping it, and a site
with an enrolled agent per test.

A test runs a real probe, then `site.ship(result)` posts it as the agent's shipper does (the
agent's own client: gzip batch, agent key). The collector evaluates its rules at ingest, so
`site.ticket(rule, target)` can be read at once; `site.series(family, ...)` reads the
collector's /metrics; `site.panel(board, title, ...)` evaluates a dashboard panel's queries
in Prometheus with the board's variables set to this site, waiting for the scrape.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.cli.stack import Stack, StackError, free_port, wait_for
from agent.runtime.client import CollectorClient, Credentials, enroll
from collector.rules import field_value

ROOT = Path(__file__).resolve().parents[2]
BOARDS = ROOT / "dashboards" / "json"
PARTNER = "contract-partner"
CUSTOMER = "Contract Customer"


class Prometheus:
    """Debian's prometheus on a loopback port, scraping one target every second."""

    def __init__(self, work: Path, target: str, token_file: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cfg = work / "prometheus.yml"
        cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: qos-scout-collector\n"
            f"    authorization: {{credentials_file: '{token_file}'}}\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.log = work / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={work / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for("Prometheus to scrape the collector", self._scraped, 60.0, every_s=0.5)

    def _scraped(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
        # Until its storage is open Prometheus answers queries with a plain-text 503.
        if httpx.get(f"{self.url}/-/ready", timeout=5).status_code != 200:
            return False
        return bool(self.query('up{job="qos-scout-collector"} == 1'))

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        return list(body["data"]["result"])

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Contract:
    """The collector (a real `qos-scout collector serve`), its partner and customer, and the
    Prometheus scraping it (None where prometheus is not installed)."""

    def __init__(self, work: Path) -> None:
        self.stack = Stack(work)
        self.prom: Prometheus | None = None
        self.stack.start_collector()
        out = self.stack.run_cli(
            "collector", "partner", "create", PARTNER, "--db", self.stack.db_url, "--json"
        )
        self.stack.partner_key = str(json.loads(out.stdout)["api_key"])
        self.customer_id = self.stack.api("POST", "/api/v1/customers", json={"name": CUSTOMER})[
            "id"
        ]
        if shutil.which("prometheus"):
            host_port = self.stack.collector_url.removeprefix("http://")
            self.prom = Prometheus(work, host_port, self.stack.metrics_token_file)

    def close(self) -> None:
        if self.prom is not None:
            self.prom.close()
        self.stack.close()

    def site(self, name: str, **fields: Any) -> Site:
        """A new site of the customer (fields: contracted speeds ...) with an enrolled agent."""
        body = {"customer_id": self.customer_id, "name": name, **fields}
        site_id = str(self.stack.api("POST", "/api/v1/sites", json=body)["id"])
        token = self.stack.api("POST", f"/api/v1/sites/{site_id}/tokens", json={})["token"]
        creds = asyncio.run(enroll(self.stack.collector_url, token))
        return Site(self, name, site_id, creds)


@dataclass
class Site:
    contract: Contract
    name: str
    id: str
    creds: Credentials

    @property
    def agent(self) -> str:
        """The agent label: the host name the agent enrolled with."""
        return socket.gethostname()

    # ---------------------------------------------------------------- ingest

    def ship(self, *results: dict[str, Any], copies: int = 1) -> list[dict[str, Any]]:
        """Post each result as the agent's shipper does, one batch each; with `copies` > 1
        each is followed by `copies - 1` later runs carrying the same measurement (new id,
        started one second apart), as a probe that keeps measuring the same thing would send.
        Returns what was posted, in order."""
        sent = []
        for result in results:
            start = datetime.fromisoformat(result["started_at"])
            for i in range(copies):
                again = {
                    **result,
                    "id": str(uuid.uuid4()),
                    "started_at": (start + timedelta(seconds=i)).isoformat(),
                }
                sent.append(result if i == 0 else again)
        client = CollectorClient(self.creds.collector_url, self.creds.agent_key)
        for r in sent:
            answer = asyncio.run(client.post_results([str(r["id"])], [json.dumps(r).encode()]))
            assert [i.status for i in answer.items] == ["stored"], answer
        return sent

    def override_rules(self, overrides: dict[str, dict[str, Any]]) -> None:
        body = {"site_id": self.id, "overrides": overrides}
        self.contract.stack.api("PUT", "/api/v1/rules/overrides", json=body)

    # ---------------------------------------------------------------- tickets

    def tickets(self) -> list[dict[str, Any]]:
        got = self.contract.stack.api("GET", "/api/v1/tickets", params={"site_id": self.id})
        return list(got)

    def ticket(
        self, rule: str, target: str, evidence: list[dict[str, Any]], among: int = 1
    ) -> dict[str, Any]:
        """The one ticket of the site for (rule, target), asserting that the site has `among`
        tickets in all and that its evidence is exactly the results `evidence`."""
        tickets = self.tickets()
        assert len(tickets) == among, tickets
        mine = [t for t in tickets if (t["rule_id"], t["target"]) == (rule, target)]
        assert len(mine) == 1, tickets
        t = self.contract.stack.api("GET", f"/api/v1/tickets/{mine[0]['id']}")
        assert t["state"] == "open"
        ev = t["evidence"]
        assert (ev["rule"]["id"], ev["target"]) == (rule, target)
        assert [r["id"] for r in ev["results"]] == [r["id"] for r in evidence]
        for got, sent in zip(ev["results"], evidence, strict=True):
            assert (got["probe"], got["success"]) == (sent["probe"], sent["success"])
            assert got["measurement"] == sent["measurement"]
        return dict(t)

    # ---------------------------------------------------------------- /metrics

    def labels(self, probe: str, target: str, **extra: str) -> dict[str, str]:
        return {"partner": PARTNER, "customer": CUSTOMER, "site": self.name, "agent": self.agent,
                "probe": probe, "target": target, **extra}  # fmt: skip

    def series(self, family: str, probe: str, target: str, **extra: str) -> float:
        """The value of the one /metrics sample of `family` with exactly these labels."""
        text = self.contract.stack.collector_metrics()
        want = self.labels(probe, target, **extra)
        found, near = [], []
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name != family or s.labels.get("site") != self.name:
                    continue
                (found if s.labels == want else near).append(s)
        assert len(found) == 1, f"{family}{want}: {len(found)} samples; the site has {near}"
        return float(found[0].value)

    # ---------------------------------------------------------------- dashboards

    def panel(
        self, board: str, title: str, probe: str, target: str, expect: list[float], *,
        by: tuple[str, ...] = (), **extra: str,
    ) -> None:  # fmt: skip
        """Evaluate every query of the panel in Prometheus with the board's variables set to
        this site (and `target`), as Grafana does, until the queries that return the series
        of (probe, target, extra), with all its labels (only the labels `by` for a panel
        that aggregates by them), return the values `expect` (one per such query, any order).
        It waits for the scrape after the last shipped result; a value that never comes
        fails with what the panel showed last.

        Skips (after everything else the test checked) where prometheus is not installed."""
        prom = self.contract.prom
        if prom is None:
            pytest.skip("prometheus is not installed (.ci/run installs it): panel not evaluated")
        exprs = panel_queries(board, title, self.variables(board, target))
        want = self.labels(probe, target, **extra)
        if by:
            want = {k: want[k] for k in by}
        shown: dict[str, float] = {}

        def returned() -> bool:
            shown.clear()
            for expr in exprs:
                for r in prom.query(expr):
                    metric = {k: v for k, v in r["metric"].items() if k != "__name__"}
                    if all(metric.get(k) == v for k, v in want.items()):
                        shown[expr] = float(r["value"][1])
            return sorted(shown.values()) == sorted(expect)

        try:
            wait_for(f"{board}: {title!r} to show {expect}", returned, 30.0, every_s=0.5)
        except StackError as exc:
            raise AssertionError(f"{exc}; {want} showed {shown}") from None

    def variables(self, board: str, target: str) -> dict[str, str]:
        literal = {"partner": PARTNER, "customer": CUSTOMER, "site": self.name, "target": target}
        data = json.loads((BOARDS / f"{board}.json").read_text())
        names = [v["name"] for v in data["templating"]["list"]]
        return {n: promql_regex(literal[n]) for n in names}


def promql_regex(value: str) -> str:
    """A literal value as a regex inside a double-quoted PromQL string (backslashes doubled)."""
    return re.escape(value).replace("\\", "\\\\")


def panel_queries(board: str, title: str, variables: dict[str, str]) -> list[str]:
    """The panel's query expressions with `$variable`s filled in."""
    data = json.loads((BOARDS / f"{board}.json").read_text())
    panels = [p for p in data["panels"] if p["title"] == title]
    assert len(panels) == 1, f"{board} has {len(panels)} panels titled {title!r}"
    out = []
    for t in panels[0]["targets"]:
        expr = t["expr"]
        for name, value in variables.items():
            expr = expr.replace(f"${name}", value)
        assert "$" not in expr, f"unfilled variable in {expr}"
        out.append(expr)
    return out


def measured(result: dict[str, Any], path: str) -> float:
    """The number at `path` of a result's measurement."""
    v = field_value(result["measurement"], path)
    assert isinstance(v, int | float), (path, v)
    return float(v)
