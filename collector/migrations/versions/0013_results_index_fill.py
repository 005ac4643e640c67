"""results' site/time index packed full on PostgreSQL (fillfactor 100).

A site's entries arrive in time order and are never updated, so the room PostgreSQL leaves
in each page for later entries (10 %) stays empty. SQLite has no such setting: nothing to do.

Revision ID: 0013
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _recreate(fill: int | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_results_site_time", table_name="results")
    op.create_index(
        "ix_results_site_time", "results", ["site_id", "started_at"],
        postgresql_with={"fillfactor": fill} if fill else {},
    )  # fmt: skip


def upgrade() -> None:
    _recreate(100)


def downgrade() -> None:
    _recreate(None)  # PostgreSQL's default (90)
