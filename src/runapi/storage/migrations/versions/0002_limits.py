"""Usage tiers and limits: per-key limits, pinned tiers, cumulative top-ups.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("tier_pinned", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("rpm_limit", sa.Integer, nullable=True))
        batch.add_column(sa.Column("tpm_limit", sa.Integer, nullable=True))
        batch.add_column(sa.Column("concurrency_limit", sa.Integer, nullable=True))
        batch.add_column(sa.Column("spend_cap_nanos", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("monthly_spend_cap_nanos", sa.BigInteger, nullable=True))
        # JSON array of public model IDs; NULL means every model.
        batch.add_column(sa.Column("allowed_models", sa.Text, nullable=True))
    op.create_index("ix_generations_key_created", "generations", ["key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_generations_key_created", table_name="generations")
    with op.batch_alter_table("api_keys") as batch:
        for column in (
            "allowed_models",
            "monthly_spend_cap_nanos",
            "spend_cap_nanos",
            "concurrency_limit",
            "tpm_limit",
            "rpm_limit",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("tier_pinned")
