"""The SQL board (site-history) names only tables and columns that exist in
collector/schema.py and that the read-only role may read (collector/readonly.READS); a
renamed column or a table the role cannot read is caught with a sentence naming it; every
query expands with Grafana's macros and variables. Running them on PostgreSQL:
tests/collector/test_site_history_board.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from collector.readonly import READS
from collector.schema import metadata
from tests.contract.grafana_sql import ExpandError, board_sql, expand, is_sql_board, names

ROOT = Path(__file__).resolve().parents[2]
BOARDS = [
    p
    for p in sorted((ROOT / "dashboards" / "json").glob("*.json"))
    if is_sql_board(json.loads(p.read_text()))
]


def sql_problems(board: dict[str, Any]) -> list[str]:
    out = []
    for where, sql in board_sql(board):
        aliases, pairs, problems = names(sql)
        out += [f"{where}: {p}" for p in problems]
        for table in aliases.values():
            if table not in metadata.tables:
                out.append(f"{where}: table {table!r} is not in collector/schema.py")
            elif table not in READS:
                out.append(f"{where}: table {table!r} is not readable by the read-only role")
        for table, column in sorted(pairs):
            if table not in metadata.tables:
                continue
            if column not in metadata.tables[table].c:
                out.append(f"{where}: column {table}.{column} is not in collector/schema.py")
            elif column not in READS.get(table, ()):
                out.append(f"{where}: column {table}.{column} is not readable by the role")
    return out


def test_the_sql_board_is_site_history() -> None:
    assert [p.stem for p in BOARDS] == ["site-history"]


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_every_sql_query_names_existing_readable_columns(path: Path) -> None:
    board = json.loads(path.read_text())
    queries = board_sql(board)
    assert len(queries) >= 9
    assert sql_problems(board) == []
    used = {pair for _, sql in queries for pair in names(sql)[1]}
    assert {("rollups", "p95"), ("rollups", "ok"), ("sites", "name")} <= used
    # nothing granted that no query reads
    assert {(t, c) for t, cols in READS.items() for c in cols} == used


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("r.p95", "r.p96", "column rollups.p96 is not in collector/schema.py"),
        ("JOIN sites s", "JOIN site s", "table 'site' is not in collector/schema.py"),
        ("p.name IN", "p.key_hash IN", "column partners.key_hash is not readable by the role"),
        ("FROM rollups r", "FROM results r", "table 'results' is not readable by the read-only"),
        ("s.name IN", "x.name IN", "x.name: 'x' is no table of the query"),
    ],
)
def test_a_broken_query_is_named(old: str, new: str, complaint: str) -> None:
    board = json.loads(BOARDS[0].read_text())
    target = board["panels"][0]["targets"][0]
    assert old in target["rawSql"]
    target["rawSql"] = target["rawSql"].replace(old, new)
    found = sql_problems(board)
    assert any(complaint in p for p in found), found
    assert all(p.startswith(f"panel {board['panels'][0]['title']!r}") for p in found)


def test_every_query_expands_and_the_expander_refuses_what_it_does_not_know() -> None:
    board = json.loads(BOARDS[0].read_text())
    values = {"partner": ["O'Brien MSP"], "customer": ["c"], "site": ["s"], "target": ["a", "b"]}
    for _, sql in board_sql(board):
        assert "$" not in expand(sql, 1_700_000_000, 1_700_086_400, values)
    sql = "SELECT 1 WHERE p.name IN ($partner) AND $__timeFilter(t) AND x > $__unixEpochFrom()"
    assert expand(sql, 1_700_000_000.7, 1_700_003_600, values) == (
        "SELECT 1 WHERE p.name IN ('O''Brien MSP') AND t BETWEEN '2023-11-14T22:13:20Z' AND "
        "'2023-11-14T23:13:20Z' AND x > 1700000000"
    )
    with pytest.raises(ExpandError, match=r"variable \$agent has no value"):
        expand("SELECT $agent", 0, 1, values)
    with pytest.raises(ExpandError, match="macro \\$__timeGroup\\(t, '1h'\\) is not one"):
        expand("SELECT $__timeGroup(t, '1h')", 0, 1, values)
