"""The config epoch: one row every collector process reads once a second, bumped with any
change to what an agent's effective config is made of (a probe profile, a site's customer),
so replicas drop their cached config versions together.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 19:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    epoch = op.create_table(
        "config_epoch",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_epoch")),
    )
    op.bulk_insert(epoch, [{"id": 1, "epoch": 0, "changed_at": 0.0}])


def downgrade() -> None:
    op.drop_table("config_epoch")
