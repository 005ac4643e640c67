"""SLA and quality reports: the roll-ups' time inside thresholds (`good`) and value
histograms (`hist`), the reports kept, and each customer's monthly schedule.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 07:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Time = sa.Float(precision=53)


def upgrade() -> None:
    # Plain ALTERs: a batch would copy the table on SQLite (the roll-ups can be large).
    op.add_column("rollups", sa.Column("good", sa.Integer(), nullable=True))
    op.add_column("rollups", sa.Column("hist", JSON, nullable=True))
    op.create_table(
        "reports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("site_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("since", Time, nullable=False),
        sa.Column("until", Time, nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=True),
        sa.Column("emailed_to", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_reports_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_reports_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    op.create_index("ix_reports_partner", "reports", ["partner_id", "created_at"])
    op.create_index(
        "uq_reports_monthly",
        "reports",
        ["customer_id", "since"],
        unique=True,
        sqlite_where=sa.text("kind = 'monthly'"),
        postgresql_where=sa.text("kind = 'monthly'"),
    )
    op.create_table(
        "report_schedules",
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("day_of_month", sa.Integer(), nullable=False),
        sa.Column("recipients", JSON, nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_report_schedules_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
            name=op.f("fk_report_schedules_partner_id_partners"),
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_report_schedules")),
    )


def downgrade() -> None:
    op.drop_table("report_schedules")
    op.drop_index("uq_reports_monthly", table_name="reports")
    op.drop_index("ix_reports_partner", table_name="reports")
    op.drop_table("reports")
    # Not a batch: on SQLite that copies the table (SQLite >= 3.35 drops columns in place).
    op.execute("ALTER TABLE rollups DROP COLUMN hist")
    op.execute("ALTER TABLE rollups DROP COLUMN good")
