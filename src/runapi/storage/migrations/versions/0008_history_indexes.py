"""Indexes for reports on a long history (issue 24): usage, dashboards, CSV export, revenue report.

- `ix_generations_account_usage` replaces `ix_generations_account_created` (the same leading columns)
  and carries every column the per-account usage aggregate reads: an index-only scan, no table rows.
- `ix_generations_created_usage`: the same for the operator's reports over all accounts by period.
- `ix_ledger_account_covering` replaces `ix_ledger_account_id_id` (the same leading columns) and carries
  the amount, kind and time: an account's balance and its month's spend are index-only scans.
- `ix_ledger_writeoffs`: a partial index of the (rare) write-off rows by time, for the revenue report.
Query plans: docs/sizing.md. On a big PostgreSQL table, create them beforehand with CREATE INDEX
CONCURRENTLY under the same names if the write lock of a plain CREATE INDEX is too long.

Revision ID: 0008
Revises: 0007 (the covering indexes carry its `unit` and `units` columns)
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TOKENS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"]
WRITEOFF = sa.text("kind = 'writeoff'")


def upgrade() -> None:
    op.create_index("ix_generations_account_usage", "generations",
                    ["account_id", "created_at", "model", "status", "key_id", *TOKENS, "cost_nanos", "unit", "units"])
    op.drop_index("ix_generations_account_created", "generations")
    op.create_index("ix_generations_created_usage", "generations",
                    ["created_at", "model", "provider", "upstream_model", "status", *TOKENS, "cost_nanos", "unit",
                     "units"])
    op.create_index("ix_ledger_account_covering", "ledger", ["account_id", "id", "amount_nanos", "kind", "created_at"])
    op.drop_index("ix_ledger_account_id_id", "ledger")
    op.create_index("ix_ledger_writeoffs", "ledger", ["created_at"], postgresql_where=WRITEOFF, sqlite_where=WRITEOFF)


def downgrade() -> None:
    op.drop_index("ix_ledger_writeoffs", "ledger")
    op.create_index("ix_ledger_account_id_id", "ledger", ["account_id", "id"])
    op.drop_index("ix_ledger_account_covering", "ledger")
    op.drop_index("ix_generations_created_usage", "generations")
    op.create_index("ix_generations_account_created", "generations", ["account_id", "created_at"])
    op.drop_index("ix_generations_account_usage", "generations")
