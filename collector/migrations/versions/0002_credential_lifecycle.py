"""Credential lifecycle: agents can be disabled, revoked and rekeyed, enrollment tokens
revoked, and a one-row credentials epoch tells every collector process when to drop its
key cache.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 16:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.Float(precision=53), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.Float(precision=53), nullable=True))
        batch_op.add_column(sa.Column("key_rotated_at", sa.Float(precision=53), nullable=True))
    with op.batch_alter_table("enrollment_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.Float(precision=53), nullable=True))
    epoch = op.create_table(
        "credentials_epoch",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credentials_epoch")),
    )
    op.bulk_insert(epoch, [{"id": 1, "epoch": 0, "changed_at": 0.0}])


def downgrade() -> None:
    op.drop_table("credentials_epoch")
    with op.batch_alter_table("enrollment_tokens", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("key_rotated_at")
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("disabled_at")
