"""Billing units on generations: `unit`, `units` and `price_unit` (issue 21: media calls billed per
image, video or second; a media generation's cost = units × price_unit, reproducible from its row).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("unit", sa.String(16), nullable=False, server_default="tokens"))
        batch.add_column(sa.Column("units", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("price_unit", sa.String(32), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("price_unit")
        batch.drop_column("units")
        batch.drop_column("unit")
