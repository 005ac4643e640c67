"""The portal: ticket SLA targets per partner and severity, and maintenance windows.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 07:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sla_targets",
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("response_s", sa.Float(), nullable=False),
        sa.Column("resolution_s", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(precision=53), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_sla_targets_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("partner_id", "severity", name=op.f("pk_sla_targets")),
    )
    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=36), nullable=False),
        sa.Column(
            "schedule",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.Float(precision=53), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
            name=op.f("fk_maintenance_windows_partner_id_partners"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_windows")),
    )
    op.create_index(
        "ix_maintenance_windows_partner", "maintenance_windows", ["partner_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_maintenance_windows_partner", table_name="maintenance_windows")
    op.drop_table("maintenance_windows")
    op.drop_table("sla_targets")
