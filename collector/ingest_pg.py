"""PostgreSQL ingest in one statement: store the new results and keep `latest` together.

The batch travels as one JSON array parameter (`json_to_recordset`), so the statement text is
the same for every batch size: psycopg caches its conversion and prepares it on the server
after a few uses, the rows are serialised by the C JSON encoder in one call, and the whole
batch costs one round trip instead of one per table.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import sqlalchemy as sa

from collector import compact

# (column, PostgreSQL type in the record); a JSON null becomes SQL NULL
_COLUMNS = [
    ("id", "uuid"),
    ("site_id", "uuid"),
    ("agent_id", "uuid"),
    ("schema_version", "int4"),
    ("probe", "text"),
    ("target", "text"),
    ("module", "text"),
    ("started_at", "float8"),
    ("duration_ms", "float8"),
    ("success", "bool"),
    ("error", "jsonb"),
    ("measurement", "jsonb"),
    ("job_id", "text"),
    ("tags", "jsonb"),
    ("received_at", "float8"),
]
_NAMES_LIST = [name for name, _ in _COLUMNS]
_NAMES = ", ".join(name for name, _ in _COLUMNS)
# The results row takes the measurement in its compact form (collector/compact.py), sent
# beside the JSON one (which `latest` keeps) as bytea text.
_RECORD = [*_COLUMNS, ("mz", "bytea")]
_RESULT_NAMES = ", ".join(name for name, _ in _COLUMNS)
_RESULT_VALUES = ", ".join("mz" if name == "measurement" else name for name, _ in _COLUMNS)
_LATEST_SET = ", ".join(
    f"{c} = excluded.{c}" for c in ("site_id", "result_id", "started_at", "success", "measurement")
)

# `latest` takes, per (agent, probe, target), the newest of the rows actually inserted (the
# first of equal times in batch order), and never overwrites a newer stored one.
INSERT_SQL = f"""
WITH v AS (
    SELECT * FROM ROWS FROM (
        json_to_recordset(%s::json) AS ({", ".join(f"{n} {k}" for n, k in _RECORD)})
    ) WITH ORDINALITY AS v({_NAMES}, mz, ord)
), ins AS (
    INSERT INTO results ({_RESULT_NAMES}) SELECT {_RESULT_VALUES} FROM v
    ON CONFLICT (id, started_at) DO NOTHING RETURNING id
), pend AS (
    INSERT INTO rollup_pending (period, bucket, site_id, seq)
    SELECT DISTINCT 'hour', floor(v.started_at / 3600) * 3600, v.site_id, 1
    FROM v JOIN ins ON ins.id = v.id
    ON CONFLICT (period, bucket, site_id) DO UPDATE SET seq = rollup_pending.seq + 1
), lat AS (
    INSERT INTO latest (agent_id, probe, target, site_id, result_id, started_at, success,
                        measurement)
    SELECT DISTINCT ON (v.agent_id, v.probe, v.target)
           v.agent_id, v.probe, v.target, v.site_id, v.id, v.started_at, v.success,
           v.measurement
    FROM v JOIN ins ON ins.id = v.id
    ORDER BY v.agent_id, v.probe, v.target, v.started_at DESC, v.ord
    ON CONFLICT (agent_id, probe, target) DO UPDATE SET {_LATEST_SET}
    WHERE excluded.started_at >= latest.started_at
)
SELECT id FROM ins
"""


def insert_results_and_latest(
    conn: sa.Connection, rows: list[dict[str, Any]], finite: bool = False
) -> set[str] | None:
    """Insert the rows that are new (by id), update `latest` from them; returns their ids.
    None when a value has no JSON form (an infinite float): the caller then uses the
    statement per table, which passes such floats as parameters. `finite=True` promises
    there is none (the fast encoder would write null for it)."""
    records = [{n: r[n] for n in _NAMES_LIST} for r in rows]
    for rec in records:
        rec["tags"] = rec["tags"] or None  # stored as NULL (compact.EmptyAsNull)
        m = rec["measurement"]
        rec["mz"] = None if m is None else "\\x" + compact.encode(m).hex()
    if finite:
        doc = orjson.dumps(records).decode()
    else:
        try:
            doc = json.dumps(records, allow_nan=False)
        except ValueError:
            return None
    return {str(r[0]) for r in conn.exec_driver_sql(INSERT_SQL, (doc,))}
