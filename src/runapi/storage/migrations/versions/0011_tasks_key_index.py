"""Tasks by key (`ix_tasks_key_id`): a key's spend cap counts the video tasks it has in flight
(`limits/spend.py` joins the key's tasks to their `hold`/`release` ledger entries), read with an index
instead of a scan of every task.

Revision ID: 0011
Revises: 0010 (video jobs)
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_key_id", "tasks", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_key_id", "tasks")
