"""Probe profiles (central agent configuration) and what each agent reports running.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 04:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "probe_profiles",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=36), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(precision=53), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_probe_profiles_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("scope", "scope_id", name=op.f("pk_probe_profiles")),
    )
    with op.batch_alter_table("probe_profiles", schema=None) as batch_op:
        batch_op.create_index("ix_probe_profiles_partner", ["partner_id"], unique=False)
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("config_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("config_reported_at", sa.Float(precision=53), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("config_reported_at")
        batch_op.drop_column("config_error")
        batch_op.drop_column("config_version")
    with op.batch_alter_table("probe_profiles", schema=None) as batch_op:
        batch_op.drop_index("ix_probe_profiles_partner")
    op.drop_table("probe_profiles")
