"""Stored responses of `/v1/responses` (`responses`).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("generation_id", sa.String(40), nullable=False, unique=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("previous_response_id", sa.String(40), nullable=True),
        sa.Column("instructions", sa.Text, nullable=True),
        sa.Column("input_items", sa.Text, nullable=False),
        sa.Column("output_items", sa.Text, nullable=False),
        sa.Column("usage", sa.Text, nullable=True),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index("ix_responses_account_created", "responses", ["account_id", "created_at"])


def downgrade() -> None:
    op.drop_table("responses")
