"""PostgreSQL: the results table is partitioned by day of `started_at` (UTC).

Partition `results_pYYYYMMDD` holds [day, day + 1 day); `results_default` takes any row no
daily partition covers (a result far older than the partitions kept, or ahead of those
created). The worker creates the partitions ahead of time (`ensure`) and expiry drops whole
partitions (`drop_before`). A partition created for a day the default partition already
holds rows of takes those rows over in the same transaction, so creation never fails on
them. Both take a transaction-scoped advisory lock, so replicas doing it at once queue.
"""

from __future__ import annotations

import calendar
import time

import sqlalchemy as sa

DAY_S = 86400.0
PREFIX = "results_p"
DEFAULT = "results_default"
_LOCK = 0x7173_0004  # pg_advisory_xact_lock key of partition maintenance


def day_start(t: float) -> float:
    return (t // DAY_S) * DAY_S


def name_of(day: float) -> str:
    return PREFIX + time.strftime("%Y%m%d", time.gmtime(day))


def day_of(name: str) -> float | None:
    """The day a partition name covers, or None for a name that is not a daily partition."""
    if not name.startswith(PREFIX):
        return None
    try:
        return float(calendar.timegm(time.strptime(name[len(PREFIX) :], "%Y%m%d")))
    except ValueError:
        return None


def existing(conn: sa.Connection) -> dict[float, str]:
    """Daily partitions of `results`: day start -> table name."""
    rows = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'results'"
    )
    out: dict[float, str] = {}
    for (name,) in rows:
        day = day_of(name)
        if day is not None:
            out[day] = name
    return out


def ensure(conn: sa.Connection, first: float, last: float) -> list[str]:
    """Create the daily partitions of the days from `first` to `last` (times) that are
    missing; returns the names created."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK})")
    have = existing(conn)
    made = []
    day = day_start(first)
    while day <= last:
        if day not in have:
            create(conn, day)
            made.append(name_of(day))
        day += DAY_S
    return made


def create(conn: sa.Connection, day: float) -> None:
    """One daily partition, taking over the rows of its day from the default partition."""
    name, lo, hi = name_of(day), repr(day), repr(day + DAY_S)
    conn.exec_driver_sql(
        f"CREATE TABLE {name} (LIKE results INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )
    conn.exec_driver_sql(
        f"WITH moved AS (DELETE FROM {DEFAULT} WHERE started_at >= {lo} AND started_at < {hi} "
        f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"
    )
    conn.exec_driver_sql(
        f"ALTER TABLE results ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})"
    )


def drop_before(conn: sa.Connection, cutoff: float) -> list[str]:
    """Drop the daily partitions that end at or before `cutoff`, and delete the default
    partition's rows older than it; returns the names dropped."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK})")
    dropped = []
    for day, name in sorted(existing(conn).items()):
        if day + DAY_S <= cutoff:
            conn.exec_driver_sql(f"DROP TABLE {name}")
            dropped.append(name)
    conn.exec_driver_sql(f"DELETE FROM {DEFAULT} WHERE started_at < {cutoff!r}")
    return dropped
