"""The site-history board (dashboards/json/site-history.json) on a real PostgreSQL: results
of the real default mix stored through ingest and rolled up by the worker; every variable
query and panel SQL expanded as Grafana expands it (tests/contract/grafana_sql.py) and run.
Each panel answers Grafana's time-series shape (a `time` column, a `metric`, numeric
values), from the hourly roll-ups for a range of hours and from the daily ones for a range
over 31 days, with the figures computed here from the raw rows of each bucket; the
variables chain partner -> customer -> site -> target, and another partner's site of the
same names shows nothing of this one. The read-only role (`qos-scout collector
grafana-role`) runs all of it and can change nothing, nor read what the board does not."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from collector import readonly, retention, rollups
from collector.config import CollectorConfig
from collector.evaluation import RuleBook
from collector.ingest import ingest
from collector.schema import results
from collector.store import Store
from tests.collector.conftest import TEMPLATE_DB
from tests.collector.pg import PgCluster
from tests.collector.test_retention import DAY, HOUR, _agent, _items
from tests.collector.test_retention import D as DAY0
from tests.contract.grafana_sql import board_sql, expand, panel_queries, variable_queries

ROOT = Path(__file__).resolve().parents[2]
BOARD = json.loads((ROOT / "dashboards" / "json" / "site-history.json").read_text())
EXE = str(Path(sys.executable).parent / "qos-scout")
# What each value column of a panel is, as computed here from a bucket's raw values.
STAT = {
    "r.p50": lambda v, n, ok: _rank(v, 50),
    "r.p95": lambda v, n, ok: _rank(v, 95),
    "r.min": lambda v, n, ok: min(v),
    "r.max": lambda v, n, ok: max(v),
    "100.0 * r.ok / r.count": lambda v, n, ok: 100.0 * ok / n,
}
# What a value column's name says it is.
MEANS = {
    "median": "r.p50",
    "p95": "r.p95",
    "lowest": "r.min",
    "worst": "r.max",
    "availability": "100.0 * r.ok / r.count",
}


def _rank(values: list[float], q: int) -> float:
    return float(np.percentile(np.array(values), q, method="inverted_cdf"))


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    with pg_cluster.database("hist", TEMPLATE_DB) as url:
        yield url


@pytest.fixture
def fed(pg_url: str) -> Iterator[tuple[Store, dict[str, Any]]]:
    """Two partners, each a customer "c" with a site "s"; the first's agent ran the default
    mix over three hours of the first day and two of the next, the second's one hour;
    everything rolled up (hours and days)."""
    store = Store(CollectorConfig(db=pg_url, retention={"grace_s": 60}))
    store.migrate()
    retention.ensure_partitions(store, DAY0)
    rng = random.Random(7)
    mine, other = _agent(store, "hist-a"), _agent(store, "hist-b")
    times = [DAY0 + i * 75.0 + rng.uniform(0, 60) for i in range(144)]
    times += [DAY0 + DAY + 5 * HOUR + i * 90.0 for i in range(80)]
    for agent, ts in ((mine, times), (other, times[:40])):
        out = ingest(store, RuleBook(store.config), agent, _items(rng, ts), DAY0 + 2 * DAY)
        assert out.rejected == 0 and out.stored == len(ts), out.items
    assert rollups.roll_due(store, DAY0 + 2 * DAY + 61) > 0
    yield store, mine
    store.dispose()


def _run(conn: sa.Connection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    res = conn.exec_driver_sql(sql)
    return list(res.keys()), [tuple(r) for r in res]


def _variables(conn: sa.Connection, since: float, until: float, partner: str) -> dict[str, Any]:
    """Each variable's values from its query, in the board's order; partner, customer and
    site single-valued (the first partner named `partner`), target "All" (every value)."""
    chosen: dict[str, list[str]] = {}
    options: dict[str, list[str]] = {}
    for name, sql in variable_queries(BOARD):
        if any(not v for v in chosen.values()):
            break  # nothing to choose above: Grafana shows the variable empty
        cols, rows = _run(conn, expand(sql, since, until, chosen))
        assert len(cols) == 1, f"${name}: one column of values"
        options[name] = [r[0] for r in rows]
        assert options[name] == sorted(set(options[name])), f"${name}: sorted and distinct"
        chosen[name] = [partner] if name == "partner" else options[name][:1]
        if name == "target":
            chosen[name] = options[name]
    return {"chosen": chosen, "options": options}


def _expected(
    conn: sa.Connection, site: str, where: dict[str, str], metric: str, values: list[str],
    size: float, lo: float, hi: float,
) -> list[tuple[Any, ...]]:  # fmt: skip
    """The rows a panel should answer for [lo, hi], computed from the raw rows."""
    raw = conn.execute(sa.select(results).where(results.c.site_id == site)).all()
    counts: dict[tuple[float, str, str], list[int]] = defaultdict(lambda: [0, 0])
    vals: dict[tuple[float, str, str, str], list[float]] = defaultdict(list)
    field, direction = where["field"], where.get("direction")
    for r in raw:
        b = (r.started_at // size) * size
        if not lo - size < b <= hi:
            continue
        counts[(b, r.probe, r.target)][0] += 1
        counts[(b, r.probe, r.target)][1] += r.success
        for f in rollups.figures(r.probe):
            if f.field != field or (direction is not None and f.direction != direction):
                continue
            node: Any = r.measurement
            for key in f.path:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, int | float) and not isinstance(node, bool):
                vals[(b, r.probe, r.target, f.direction)].append(float(node))
    if field == "":
        vals = {(b, p, t, ""): [] for (b, p, t) in counts}
    out = []
    for (b, probe, target, d), v in vals.items():
        n, ok = counts[(b, probe, target)]
        name = f"{probe} {d} → {target}" if "r.direction" in metric else f"{probe} → {target}"
        stats = [round(float(STAT[e](v, n, ok)), 9) for e in values]
        out.append((datetime.fromtimestamp(b, UTC), name, *stats))
    return sorted(out)


def _panel_shape(sql: str) -> tuple[dict[str, str], str, list[str]]:
    """What a panel's SQL selects: its figure (field, direction), the metric expression and
    the value expressions, read from the generated SQL."""
    import re

    where = dict(re.findall(r"r\.(field|direction) = '([^']*)'", sql))
    metric = re.search(r"\n\s+(.*) AS metric,", sql)
    assert metric, sql
    named = re.findall(r"\n\s+(r\.\w+|100\.0 \* r\.ok / r\.count) AS \"(\w+)\"", sql)
    assert named and all(MEANS[name] == expr for expr, name in named), named
    return where, metric.group(1), [expr for expr, _ in named]


@pytest.mark.parametrize(
    ("span", "size"),
    [
        pytest.param((0.0, 5 * HOUR), HOUR, id="hours"),
        pytest.param((-40 * DAY, 2 * DAY), DAY, id="40-days-daily"),
    ],
)
def test_every_panel_answers_the_rolled_up_figures(fed, span, size) -> None:
    store, agent = fed
    since, until = DAY0 + span[0], DAY0 + span[1]
    with store.read() as conn:
        var = _variables(conn, since, until, "hist-a")
        assert var["options"]["partner"] == ["hist-a", "hist-b"]
        assert var["chosen"]["customer"] == ["c"] and var["chosen"]["site"] == ["s"]
        targets = set(conn.execute(
            sa.select(results.c.target).where(results.c.site_id == agent["site_id"])
        ).scalars())  # fmt: skip
        assert set(var["options"]["target"]) == targets
        checked = 0
        for title, target in panel_queries(BOARD):
            sql = expand(target["rawSql"], since, until, var["chosen"])
            cols, rows = _run(conn, sql)
            assert cols[:2] == ["time", "metric"] and len(cols) > 2, title
            assert rows, f"{title}: no rows"
            assert all(isinstance(r[0], datetime) for r in rows), title
            assert [r[0] for r in rows] == sorted(r[0] for r in rows), f"{title}: time order"
            assert all(isinstance(v, float | int | Decimal) for r in rows for v in r[2:]), title
            # hourly buckets for hours, daily ones past 31 days
            assert {r[0].timestamp() % size for r in rows} == {0.0}, title
            if size == DAY:
                assert len({r[0] for r in rows}) == 2, f"{title}: the two days"
            where, metric, values = _panel_shape(target["rawSql"])
            got = sorted((r[0], r[1], *(round(float(v), 9) for v in r[2:])) for r in rows)
            want = _expected(conn, agent["site_id"], where, metric, values, size, since, until)
            assert got == want, title
            checked += 1
        assert checked == len(panel_queries(BOARD)) == 5


def test_another_partners_site_of_the_same_names_shows_only_its_own(fed) -> None:
    store, _ = fed
    since, until = DAY0, DAY0 + 5 * HOUR
    with store.read() as conn:
        a = _variables(conn, since, until, "hist-a")
        b = _variables(conn, since, until, "hist-b")
        assert a["chosen"]["site"] == b["chosen"]["site"] == ["s"]
        [(_, avail)] = [q for q in panel_queries(BOARD) if q[0].startswith("Availability")]
        counts = {}
        for name, v in (("a", a), ("b", b)):
            _, rows = _run(conn, expand(avail["rawSql"], since, until, v["chosen"]))
            counts[name] = len(rows)
        # b's agent ran 40 results in the first hour; a's 144 over three hours
        assert 0 < counts["b"] < counts["a"]
        # a partner with no site of that name: the chain gives nothing to choose
        none = _variables(conn, since, until, "no-such-partner")
        assert none["options"]["customer"] == []


def _grafana_role(url: str, role: str, password_file: Path) -> subprocess.CompletedProcess[str]:
    cmd = [EXE, "collector", "grafana-role", "--db", url, "--role", role]
    cmd += ["--password-file", str(password_file), "--json"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_the_read_only_role_runs_every_query_and_changes_nothing(fed, pg_url, tmp_path) -> None:
    store, agent = fed
    role = "qs_grafana_" + agent["site_id"][:8].replace("-", "")
    secret = tmp_path / "grafana_db_password"
    secret.write_text("correct-horse-battery-staple\n")
    made = _grafana_role(pg_url, role, secret)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["select"]["partners"] == ["id", "name"]
    # run again: the same role is brought to the same grants (and a new password)
    secret.write_text("another-long-password-0123\n")
    assert _grafana_role(pg_url, role, secret).returncode == 0
    assert _verifies(_stored_password(pg_url, role), "another-long-password-0123")
    ro = sa.create_engine(pg_url.replace("postgres@", f"{role}:another-long-password-0123@"))
    try:
        since, until = DAY0 - 40 * DAY, DAY0 + 2 * DAY
        with ro.connect() as conn:
            var = _variables(conn, since, until, "hist-a")
            for where, sql in board_sql(BOARD):
                _, rows = _run(conn, expand(sql, since, until, var["chosen"]))
                assert rows, where
        refused = [
            "INSERT INTO rollups (period, bucket, site_id, probe, target, field, direction, "
            "count, ok, n) VALUES ('hour', 0, 'x', 'icmp', 't', '', '', 1, 1, 0)",
            "UPDATE rollups SET p95 = 0",
            "DELETE FROM rollups",
            "DELETE FROM sites",
            "SELECT key_hash FROM partners",
            "SELECT count(*) FROM results",
            "SELECT hist FROM rollups",
            "CREATE TABLE mine (x int)",
        ]
        for stmt in refused:
            with ro.connect() as conn:
                # even with the read-only default lifted: the privileges refuse it
                conn.exec_driver_sql("SET TRANSACTION READ WRITE")
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    conn.exec_driver_sql(stmt)
        with ro.connect() as conn:
            assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "30s"
    finally:
        ro.dispose()
        with store.write() as c:
            c.exec_driver_sql(f"DROP OWNED BY {role}")
        admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def _stored_password(url: str, role: str) -> str:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            q = "SELECT rolpassword FROM pg_authid WHERE rolname = %(r)s"
            return str(c.exec_driver_sql(q, {"r": role}).scalar())
    finally:
        eng.dispose()


def _verifies(stored: str, password: str) -> bool:
    """Whether PostgreSQL's stored SCRAM verifier is the one of `password`."""
    head, _ = stored.split("$", 2)[1:]
    iterations, salt = head.split(":")
    mine = readonly.scram_verifier(password, base64.b64decode(salt), int(iterations))
    return mine == stored


def test_the_verifier_is_the_one_postgresql_makes(pg_url) -> None:
    password = "a-long-enough-password-0123"
    eng = sa.create_engine(pg_url)
    try:
        with eng.begin() as c:
            c.exec_driver_sql("SET password_encryption = 'scram-sha-256'")
            c.exec_driver_sql(f"CREATE ROLE qs_scram_probe PASSWORD '{password}'")
    finally:
        eng.dispose()
    stored = _stored_password(pg_url, "qs_scram_probe")
    assert stored.startswith("SCRAM-SHA-256$4096:")
    assert _verifies(stored, password) and not _verifies(stored, password + "x")
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.exec_driver_sql("DROP ROLE qs_scram_probe")
    eng.dispose()


def test_the_role_command_refuses_with_a_reason(pg_url, tmp_path) -> None:
    short = tmp_path / "short"
    short.write_text("tooshort")
    p = _grafana_role(pg_url, "qs_grafana_x", short)
    assert p.returncode == 2 and "password is shorter than 16 characters" in p.stderr
    good = tmp_path / "good"
    good.write_text("a-long-enough-password-0123")
    p = _grafana_role(pg_url, "Robert'); DROP TABLE sites;--", good)
    assert p.returncode == 2 and "use 1 to 63 lower-case letters" in p.stderr
    spaced = tmp_path / "spaced"
    spaced.write_text("a long enough password with spaces")
    p = _grafana_role(pg_url, "qs_grafana_x", spaced)
    assert p.returncode == 2 and "use printable ASCII" in p.stderr
    p = _grafana_role(pg_url, "qs_grafana_x", tmp_path / "missing")
    assert p.returncode == 2 and "--password-file" in p.stderr and "cannot read" in p.stderr
    p = _grafana_role(f"sqlite:///{tmp_path}/c.sqlite3", "qs_grafana_x", good)
    assert p.returncode == 2 and "the read-only role is for PostgreSQL" in p.stderr
