"""Retention and roll-ups: the partner's raw retention, the roll-up tables, and results in
their compact form, keyed by (id, started_at) and, on PostgreSQL, partitioned by day.

The existing results are copied into the new table in chunks (the measurement re-encoded
by collector.compact, the ids kept in 16 bytes; the partner column dropped: it is the
site's), nothing lost.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 04:00:00

"""

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from collector import partitions
from collector.compact import CompactJSON, EmptyAsNull, UuidKey

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
CHUNK = 2000
AHEAD_DAYS = 3


def _results_columns(new: bool) -> list[sa.Column[Any]]:
    """The results columns, of 0004 (`new`) or of 0003."""
    cols: list[sa.Column[Any]] = [
        sa.Column("id", UuidKey() if new else sa.String(length=36), nullable=False),
        sa.Column("started_at", sa.Float(precision=53), nullable=False),
        sa.Column("site_id", UuidKey() if new else sa.String(length=36), nullable=False),
        sa.Column("agent_id", UuidKey() if new else sa.String(length=36), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("probe", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("module", sa.String(length=128), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("error", JSON, nullable=True),
        sa.Column("measurement", CompactJSON() if new else JSON, nullable=True),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("tags", EmptyAsNull() if new else JSON, nullable=new),
        sa.Column("received_at", sa.Float(precision=53), nullable=False),
    ]
    if not new:
        cols.insert(2, sa.Column("partner_id", sa.String(length=36), nullable=False))
        return cols
    # 0004: fixed-width columns first, 8-byte ones leading, so PostgreSQL pads no column
    first = ["started_at", "duration_ms", "received_at", "id", "site_id", "agent_id",
             "schema_version", "success"]  # fmt: skip
    return sorted(cols, key=lambda c: first.index(c.name) if c.name in first else len(first))


def _copy(src: sa.Table, dst: sa.Table, partner_of: dict[str, str] | None = None) -> None:
    """Copy every row of `src` into `dst` in chunks of CHUNK, in id order; `partner_of`
    (site -> partner) fills a partner column `src` lacks."""
    conn = op.get_bind()
    cols = [src.c[c.name] for c in dst.c if c.name in src.c]
    last: tuple[str, float] | None = None
    while True:
        q = sa.select(*cols).order_by(src.c.id, src.c.started_at).limit(CHUNK)
        if last is not None:
            after = sa.tuple_(
                sa.bindparam(None, last[0], type_=src.c.id.type),
                sa.bindparam(None, last[1], type_=src.c.started_at.type),
            )
            q = q.where(sa.tuple_(src.c.id, src.c.started_at) > after)
        rows = [dict(r._mapping) for r in conn.execute(q)]
        if not rows:
            return
        if partner_of is not None:
            for r in rows:
                r["partner_id"] = partner_of.get(r["site_id"], "")
        conn.execute(dst.insert(), rows)
        last = (rows[-1]["id"], rows[-1]["started_at"])


def _create_results(pg: bool, days: list[float]) -> sa.Table:
    kw: dict[str, Any] = {"postgresql_partition_by": "RANGE (started_at)"} if pg else {}
    table = op.create_table(
        "results",
        *_results_columns(new=True),
        sa.PrimaryKeyConstraint("id", "started_at", name=op.f("pk_results")),
        **kw,
    )
    op.create_index("ix_results_site_time", "results", ["site_id", "started_at"])
    if pg:
        op.execute(f"CREATE TABLE {partitions.DEFAULT} PARTITION OF results DEFAULT")
        for day in days:
            op.execute(
                f"CREATE TABLE {partitions.name_of(day)} PARTITION OF results "
                f"FOR VALUES FROM ({day!r}) TO ({day + partitions.DAY_S!r})"
            )
    assert table is not None
    return table


def upgrade() -> None:
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_retention_days", sa.Integer(), nullable=True))

    op.create_table(
        "rollups",
        sa.Column("period", sa.String(length=4), nullable=False),
        sa.Column("bucket", sa.Float(precision=53), nullable=False),
        sa.Column("site_id", sa.String(length=36), nullable=False),
        sa.Column("probe", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("min", sa.Float(), nullable=True),
        sa.Column("p50", sa.Float(), nullable=True),
        sa.Column("p95", sa.Float(), nullable=True),
        sa.Column("max", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint(
            "period", "bucket", "site_id", "probe", "target", "field", "direction",
            name=op.f("pk_rollups"),
        ),
    )  # fmt: skip
    op.create_index("ix_rollups_site", "rollups", ["site_id", "period", "bucket"])
    op.create_table(
        "rollup_pending",
        sa.Column("period", sa.String(length=4), nullable=False),
        sa.Column("bucket", sa.Float(precision=53), nullable=False),
        sa.Column("site_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("period", "bucket", "site_id", name=op.f("pk_rollup_pending")),
    )

    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    op.drop_index("ix_results_site_time", table_name="results")
    op.drop_index("ix_results_partner_time", table_name="results")
    op.rename_table("results", "results_old")
    if pg:
        op.execute("ALTER TABLE results_old RENAME CONSTRAINT pk_results TO pk_results_old")
    old = sa.Table("results_old", sa.MetaData(), *_results_columns(new=False))
    days: list[float] = []
    if pg:
        have = conn.execute(
            sa.select(sa.func.floor(old.c.started_at / partitions.DAY_S)).distinct()
        ).scalars()
        today = partitions.day_start(time.time())
        wanted = {float(d) * partitions.DAY_S for d in have}
        wanted |= {today + k * partitions.DAY_S for k in range(-1, AHEAD_DAYS + 1)}
        days = sorted(wanted)
    new = _create_results(pg, days)
    _copy(old, new)
    op.drop_table("results_old")


def downgrade() -> None:
    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    op.drop_index("ix_results_site_time", table_name="results")
    op.rename_table("results", "results_new")
    if pg:
        op.execute("ALTER TABLE results_new RENAME CONSTRAINT pk_results TO pk_results_new")
    new = sa.Table("results_new", sa.MetaData(), *_results_columns(new=True))
    old = op.create_table(
        "results",
        *_results_columns(new=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
    )
    assert old is not None
    rows = op.get_bind().execute(sa.text("SELECT id, partner_id FROM sites")).all()
    owner = {site: partner for site, partner in rows}
    _copy(new, old, partner_of=owner)
    op.drop_table("results_new")  # on PostgreSQL its partitions go with it
    op.create_index("ix_results_site_time", "results", ["site_id", "started_at"])
    op.create_index("ix_results_partner_time", "results", ["partner_id", "started_at"])
    op.drop_table("rollup_pending")
    op.drop_index("ix_rollups_site", table_name="rollups")
    op.drop_table("rollups")
    # Not a batch: on SQLite that copies the table, which its foreign keys refuse.
    op.execute("ALTER TABLE partners DROP COLUMN raw_retention_days")
