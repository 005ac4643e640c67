"""Grafana's SQL datasource as the tests need it: a board's SQL (panel targets, variable
queries), its macros and variables expanded the way Grafana expands them, and the tables
and columns a query names.

Expansion follows Grafana's PostgreSQL datasource (docs: grafana.com/docs/grafana/latest/
datasources/postgres/query-editor, "Macros"; pkg/tsdb/grafana-postgresql-datasource/
macros.go): the frontend first replaces template variables, a value of a SQL datasource's
variable quoted as a string literal (`'it''s'`) and several values (or "All", which is
every value of the variable's query when it has no custom all value) joined by commas;
then the backend replaces the macros with the dashboard's time range:

| macro | becomes |
|---|---|
| `$__timeFilter(col)` | `col BETWEEN '2026-01-02T03:04:05Z' AND '...'` |
| `$__timeFrom()`, `$__timeTo()` | `'2026-01-02T03:04:05Z'` |
| `$__unixEpochFilter(col)` | `col >= 1767323045 AND col <= 1767326645` |
| `$__unixEpochFrom()`, `$__unixEpochTo()` | `1767323045` (whole seconds) |

A macro or variable not in the table is refused (a board that starts using one needs it
added here), not passed to PostgreSQL half-expanded.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

MACRO = re.compile(r"\$__(\w+)\(([^)]*)\)")
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
SQL_TYPES = {"grafana-postgresql-datasource", "postgres"}


class ExpandError(ValueError):
    """A query uses a macro or variable the expander does not know."""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def expand(sql: str, since: float, until: float, variables: dict[str, list[str]]) -> str:
    """`sql` with its variables replaced by `variables` (name -> the selected values) and
    its macros by the range [since, until] (Unix seconds)."""

    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name.startswith("__"):
            raise ExpandError(f"macro ${name} without its parentheses")
        if name not in variables:
            raise ExpandError(f"variable ${name} has no value")
        values = variables[name]
        if not values:
            raise ExpandError(f"variable ${name} has no value selected")
        return ",".join(quote(v) for v in values)

    def macro(m: re.Match[str]) -> str:
        name, arg = m.group(1), m.group(2).strip()
        lo, hi = int(since), int(until)
        if name == "timeFilter":
            return f"{arg} BETWEEN '{_iso(since)}' AND '{_iso(until)}'"
        if name in ("timeFrom", "timeTo") and not arg:
            return f"'{_iso(since if name == 'timeFrom' else until)}'"
        if name == "unixEpochFilter":
            return f"{arg} >= {lo} AND {arg} <= {hi}"
        if name in ("unixEpochFrom", "unixEpochTo") and not arg:
            return str(lo if name == "unixEpochFrom" else hi)
        raise ExpandError(f"macro $__{name}({arg}) is not one the expander knows")

    # Variables first (Grafana's frontend), then macros (the datasource's backend); `$__`
    # names are left to the second step.
    sql = re.sub(r"\$\{(\w+)\}|\$(?!__)(\w+)", var, sql)
    out = MACRO.sub(macro, sql)
    if "$" in out:
        raise ExpandError(f"left unexpanded: {out[out.index('$') :][:40]!r}")
    return out


def is_sql_board(board: dict[str, Any]) -> bool:
    return any(
        t.get("datasource", {}).get("type") in SQL_TYPES
        for p in board["panels"]
        for t in p.get("targets", [])
    )


def panel_queries(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every SQL target of a board."""
    return [
        (p["title"], t)
        for p in board["panels"]
        for t in p.get("targets", [])
        if t.get("datasource", {}).get("type") in SQL_TYPES
    ]


def variable_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, SQL) of every query variable on a SQL datasource, in the board's order (each
    may use the ones before it)."""
    return [
        (v["name"], v["query"])
        for v in board["templating"]["list"]
        if v.get("type") == "query" and v.get("datasource", {}).get("type") in SQL_TYPES
    ]


def board_sql(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, SQL) of every query of a board: panels, then variables."""
    out = [(f"panel {title!r}", t["rawSql"]) for title, t in panel_queries(board)]
    out += [(f"variable ${name}", q) for name, q in variable_queries(board)]
    return out


_FROM = re.compile(
    r"\b(?:FROM|JOIN)\s+(\w+)(?:\s+(?!ON\b|WHERE\b|JOIN\b|ORDER\b|GROUP\b)(\w+))?", re.I
)
_CTE = re.compile(r"\b(?:WITH|,)\s*(\w+)\s*(?:\([^)]*\))?\s+AS\s*\(", re.I)
_QUALIFIED = re.compile(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)\b")


def names(sql: str) -> tuple[dict[str, str], set[tuple[str, str]], list[str]]:
    """What a query names: alias -> table (a table without alias is its own alias), the
    (table, column) pairs of its qualified column references, and problems: an alias that
    is no table nor CTE of the query. Columns are expected qualified (`r.p95`)."""
    ctes = {m.group(1).lower() for m in _CTE.finditer(sql)}
    aliases: dict[str, str] = {}
    for m in _FROM.finditer(sql):
        table = m.group(1)
        if table.lower() in ctes:
            continue
        aliases[m.group(2) or table] = table
    pairs: set[tuple[str, str]] = set()
    problems = []
    # string literals hold no references ('rtt_ms.avg' is a figure's name)
    code = re.sub(r"'(?:[^']|'')*'", "''", sql)
    for m in _QUALIFIED.finditer(code):
        alias, column = m.group(1), m.group(2)
        if alias.lower() in ctes:
            continue
        if alias not in aliases:
            problems.append(f"{alias}.{column}: {alias!r} is no table of the query")
            continue
        pairs.add((aliases[alias], column))
    return aliases, pairs, problems
