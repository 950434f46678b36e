"""Quality reports on generations (`generation_feedback`).

Revision ID: 0005
Revises: 0003 (0004 on main: re-chain `down_revision` to "0004" when both are merged)
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "generation_feedback",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("generation_id", sa.String(40), nullable=False, unique=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("comment", sa.String(2000), nullable=False, server_default=""),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_generation_feedback_model_updated", "generation_feedback", ["model", "updated_at"])


def downgrade() -> None:
    op.drop_table("generation_feedback")
