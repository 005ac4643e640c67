"""Every dashboard query and Prometheus rule names only series that exist: a family a
measurement model declares (with a label value it declares) or one the collector builds;
docs/metrics.md names every declared family, probe and label value; and a broken query is
caught, with a sentence that says what is wrong."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.series import Family, known_families, problems, result_families

ROOT = Path(__file__).resolve().parents[2]
# The boards on Prometheus (site-history reads PostgreSQL: test_site_history_board.py).
BOARDS = [
    p
    for p in sorted((ROOT / "dashboards" / "json").glob("*.json"))
    if json.loads(p.read_text())["panels"][0]["datasource"]["type"] == "prometheus"
]
PROMETHEUS = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Family]:
    return known_families(tmp_path_factory.mktemp("families"))


def board_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expression) of every panel query and template variable query of a board."""
    out = [
        (f"panel {p['title']!r}", t["expr"]) for p in board["panels"] for t in p.get("targets", [])
    ]
    out += [(f"variable ${v['name']}", v["query"]["query"]) for v in board["templating"]["list"]]
    return out


def board_problems(board: dict[str, Any], known: dict[str, Family]) -> list[str]:
    return [f"{where}: {p}" for where, expr in board_queries(board) for p in problems(expr, known)]


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_every_dashboard_query_names_declared_series(path: Path, known: dict[str, Family]) -> None:
    board = json.loads(path.read_text())
    assert len(board_queries(board)) >= 5
    assert board_problems(board, known) == []


def _rules() -> tuple[list[tuple[str, str]], frozenset[str]]:
    doc = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    exprs = [(r.get("record") or r["alert"], str(r["expr"])) for r in rules]
    return exprs, frozenset(r["record"] for r in rules if "record" in r)


def test_prometheus_rules_name_declared_series(known: dict[str, Family]) -> None:
    exprs, records = _rules()
    assert any("qos_scout_mos" in e for _, e in exprs)
    found = [f"{name}: {p}" for name, e in exprs for p in problems(e, known, records)]
    assert found == []


def test_rule_unit_tests_feed_declared_series(known: dict[str, Family]) -> None:
    """rules_test.yml's input series are series the collector really exposes."""
    _, records = _rules()
    doc = yaml.safe_load((PROMETHEUS / "rules_test.yml").read_text())
    series = [s["series"] for t in doc["tests"] for s in t["input_series"]]
    series += [e["expr"] for t in doc["tests"] for e in t.get("promql_expr_test", [])]
    assert any(s.startswith("qos_scout_mos{") for s in series)
    assert [p for s in series for p in problems(s, known, records)] == []


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ("qos_scout_moss", "qos_scout_moss: no measurement model declares it and the collector "
                           "does not build it (did you mean qos_scout_mos?)"),
        ('qos_scout_mos{direction="up"}', "no measurement declares direction='up' for "
                                          "qos_scout_mos (declared: back, out)"),
        ('qos_scout_jitter_ms{direction=~"out|bakc"}', "direction='bakc'"),
        ('qos_scout_mos{probe="icmp"}', "no measurement declares probe='icmp'"),
        ('qos_scout_loss_pct{probe="sip_call", direction="rtt"}',
         "no single probe declares this combination"),
        ('qos_scout_rtt_ms{stat="p99"}', "stat='p99'"),
        ('qos_scout_sip_timing_ms{metric="pdd"}', "metric='pdd'"),
        ('qos_scout_mos{dir="out"}', "qos_scout_mos: has no label 'dir'"),
        ("qos_scout_ingest_results", "did you mean qos_scout_ingest_results_total?"),
        ('qos_scout_site_state{probe="udp"}', "qos_scout_site_state: has no label 'probe'"),
        ("max by (sites) (qos_scout_mos)", "'sites' is not a label of qos_scout_mos"),
        ("label_values(qos_scout_site_state, target)",
         "'target' is not a label of qos_scout_site_state"),
        ("qos_scout:site_mos:avg", "qos_scout:site_mos:avg: no recording rule defines it"),
        ('qos_scout_probe_success{probe="ping"}', "probe='ping'"),
    ],
)  # fmt: skip
def test_a_broken_query_is_named_with_what_is_wrong(
    expr: str, complaint: str, known: dict[str, Family]
) -> None:
    _, records = _rules()
    found = problems(expr, known, records)
    assert any(complaint in p for p in found), found


@pytest.mark.parametrize(
    "expr",
    [
        'qos_scout_mos{partner=~"$partner", direction="out"}',
        'qos_scout_loss_pct{probe="udp", direction=~"rtt|out|back"}',
        'qos_scout_throughput_bps{direction="up"}',
        'qos_scout_sip_timing_ms{probe="sip_register", metric="rrd"}',
        "sum by (status) (rate(qos_scout_ingest_results_total[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(qos_scout_ingest_request_seconds_bucket[5m])))",
        'qos_scout_probe_success{probe="nat_binding"}',
        'qos_scout_contracted_bps{direction="down"}',
    ],
)
def test_a_sound_query_passes(expr: str, known: dict[str, Family]) -> None:
    assert problems(expr, known) == []


def test_a_board_with_one_wrong_label_value_fails(known: dict[str, Family]) -> None:
    board = json.loads((ROOT / "dashboards/json/site-detail.json").read_text())
    panel = next(p for p in board["panels"] if p["title"] == "MOS per direction")
    panel["targets"][0]["expr"] = panel["targets"][0]["expr"].replace(
        "qos_scout_mos{", 'qos_scout_mos{direction="forward", '
    )
    found = board_problems(board, known)
    assert len(found) == 1 and found[0].startswith("panel 'MOS per direction': "), found
    assert "direction='forward'" in found[0]


def test_docs_name_every_declared_family_probe_and_label_value() -> None:
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"^\| `(qos_scout_\w+)` \|.*$", (ROOT / "docs/metrics.md").read_text(),
                             re.M)
    }  # fmt: skip
    missing = []
    for name, fam in result_families().items():
        row = rows.get(name)
        if row is None:
            missing.append(f"{name}: no row")
            continue
        assert fam.declared is not None
        words = set(re.findall(r"`([^`]+)`", row))
        for decl in fam.declared:
            missing += [f"{name}: {v!r}" for v in decl.values() if v not in words]
    assert missing == []
