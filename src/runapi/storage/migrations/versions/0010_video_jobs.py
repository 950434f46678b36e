"""Video tasks (issue 21 item 4): the upstream job a task submitted, and the credit it holds.

- `upstream_state`: NULL (not submitted), `submitting` (recorded before the provider is called),
  `submitted` (the provider's job id is in `upstream_id`). A task found `submitting` after a crash
  is "submitted-unknown": it is failed free, never submitted again.
- `provider_name`, `upstream_model`: the deployment the job went to (polled there).
- `hold_nanos`, `price_nanos`, `units`: the durable credit hold taken at submission (a `hold` ledger
  entry) and the charge fixed then (units × unit price), so a restart settles the same amounts.
- `deadline_at`: when the job is given up (timeout, free); `polls`: status polls so far (backoff).

Revision ID: 0010
Revises: 0009 (usage roll-ups)
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_COLUMNS = ("upstream_id", "upstream_state", "provider_name", "upstream_model", "hold_nanos", "price_nanos",
            "units", "deadline_at", "polls")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("upstream_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("upstream_state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("provider_name", sa.String(200), nullable=True))
        batch.add_column(sa.Column("upstream_model", sa.String(200), nullable=True))
        batch.add_column(sa.Column("hold_nanos", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("price_nanos", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("units", sa.Integer, nullable=True))
        batch.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("polls", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
