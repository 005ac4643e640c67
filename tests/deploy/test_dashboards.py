"""Dashboards: generated from code, valid Grafana dashboard models, consistent datasources."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BOARDS = sorted((ROOT / "dashboards" / "json").glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that show data (a row only groups the panels below it)."""
    return [p for p in board["panels"] if p["type"] != "row"]


def _queries(board: dict[str, Any]) -> list[str]:
    """The PromQL of a board's panels (site-history's SQL: tests/contract/test_sql_queries.py)."""
    return [
        t["expr"]
        for p in _panels(board)
        for t in p["targets"]
        if t["datasource"]["type"] == "prometheus"
    ]


def test_the_five_boards_exist() -> None:
    assert [p.stem for p in BOARDS] == [
        "fleet-overview", "site-detail", "site-history", "tickets", "voice-quality"
    ]  # fmt: skip


def test_site_detail_links_to_the_site_history_with_its_variables() -> None:
    detail = _load(ROOT / "dashboards/json/site-detail.json")
    history = _load(ROOT / "dashboards/json/site-history.json")
    [link] = detail["links"]
    assert link["title"] == "long range: site history"
    assert link["url"] == f"/d/{history['uid']}" and link["includeVars"] is True
    names = [v["name"] for v in detail["templating"]["list"]]
    assert names == [v["name"] for v in history["templating"]["list"]]
    # every panel of the SQL board is a time series in Grafana's time-series format, unit set
    for p in _panels(history):
        assert p["type"] == "timeseries" and p["fieldConfig"]["defaults"]["unit"], p["title"]
        assert {t["format"] for t in p["targets"]} == {"time_series"}


def test_the_sql_datasource_reads_with_the_read_only_role_and_a_secret_file() -> None:
    prov = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/qos-scout.yml").read_text())
    [pg] = [d for d in prov["datasources"] if d["uid"] == "qos-scout-pg"]
    assert pg["type"] == "grafana-postgresql-datasource"
    assert pg["secureJsonData"]["password"] == "$__file{/run/secrets/grafana_db_password}"
    compose = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    env = grafana["environment"]
    assert env["QOS_SCOUT_GRAFANA_DB_USER"] == "qos_scout_grafana"
    for key in ("url", "user"):
        assert pg[key].lstrip("$") in env
    assert pg["jsonData"]["database"].lstrip("$") in env
    assert "grafana_db_password" in grafana["secrets"]


def test_committed_json_matches_the_generator() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "dashboards" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_board_round_trips_through_grafanas_dashboard_model(path: Path) -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    data = _load(path)
    again = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    assert again == data, "fields unknown to Grafana's dashboard schema, or of the wrong type"


def test_model_check_catches_an_unknown_field() -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    data = _load(BOARDS[0])
    data["panels"][0]["colour"] = "red"
    again = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    assert again != data


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_panel_ids_unique_and_every_panel_queries(path: Path) -> None:
    board = _load(path)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in _panels(board):
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)) and all(refs)


def test_boards_use_only_provisioned_datasources() -> None:
    prov = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/qos-scout.yml").read_text())
    uids = {d["uid"] for d in prov["datasources"]}
    used = set()
    for path in BOARDS:
        board = _load(path)
        for p in _panels(board):
            used.add(p["datasource"]["uid"])
            used.update(t["datasource"]["uid"] for t in p["targets"])
        used.update(v["datasource"]["uid"] for v in board["templating"]["list"])
    assert used and used <= uids


def test_boards_use_only_documented_metrics() -> None:
    documented = set(re.findall(r"`(qos_scout_[a-z_]+)`", (ROOT / "docs/metrics.md").read_text()))
    used = set()
    for path in BOARDS:
        for expr in _queries(_load(path)):
            used.update(re.findall(r"\bqos_scout_[a-z_]+", expr))
    assert used and used <= documented, used - documented


def test_dashboard_provider_points_where_compose_mounts_the_json() -> None:
    prov = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/qos-scout.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    compose = (ROOT / "deploy/docker-compose.yml").read_text()
    assert f"../dashboards/json:{path}:ro" in compose
