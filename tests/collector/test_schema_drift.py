"""The tables the code describes (collector/schema.py) are the tables the migrations make:
a column, index or table added to one and not the other fails here, on both databases,
before a query names something that does not exist."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from collector import partitions
from collector.schema import metadata


def _ours(name: str | None, kind: str, parent: object) -> bool:
    """Not the results table's day partitions (PostgreSQL): collector/partitions.py makes
    them as time goes on, in the parent's image."""
    return not (
        kind == "table"
        and name is not None
        and (name == partitions.DEFAULT or partitions.day_of(name) is not None)
    )


def test_the_migrations_make_the_schema_the_code_describes(make_store):
    store = make_store()
    with store.read() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_name": _ours})
        diffs = compare_metadata(ctx, metadata)
    assert diffs == [], "\n".join(str(d) for d in diffs[:20])
