"""The rules epoch: one row every collector process reads once a second, bumped with any
change to a site or to rule overrides, so replicas drop their cached rules together.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 04:15:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    epoch = op.create_table(
        "rules_epoch",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rules_epoch")),
    )
    op.bulk_insert(epoch, [{"id": 1, "epoch": 0, "changed_at": 0.0}])


def downgrade() -> None:
    op.drop_table("rules_epoch")
