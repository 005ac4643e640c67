"""Partners' own channels (PSA, chat, paging) with encrypted credentials, their
customer/site mappings to PSA ids, and the PSA tickets made of ours.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 07:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
Time = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "partner_channels",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("routing", JSON, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_channels")),
        sa.UniqueConstraint("partner_id", "name", name="uq_partner_channels_partner_name"),
    )
    op.create_table(
        "channel_mappings",
        sa.Column("channel_id", sa.String(36), nullable=False),
        sa.Column("scope_id", sa.String(36), nullable=False),
        sa.Column("values", JSON, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "scope_id", name=op.f("pk_channel_mappings")),
    )
    op.create_table(
        "external_tickets",
        sa.Column("ticket_id", sa.String(36), nullable=False),
        sa.Column("channel_id", sa.String(36), nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", "channel_id", name=op.f("pk_external_tickets")),
    )


def downgrade() -> None:
    op.drop_table("external_tickets")
    op.drop_table("channel_mappings")
    op.drop_table("partner_channels")
