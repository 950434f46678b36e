"""The relational schema, shared by SQLite and PostgreSQL. Migrations live in `migrations/`."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("tier", sa.String(32), nullable=False, server_default="free"),
    sa.Column("created_at", Timestamp, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("revoked_at", Timestamp, nullable=True),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # topup | charge | refund | adjustment
    sa.Column("amount_nanos", sa.BigInteger, nullable=False),  # signed; charges are negative
    sa.Column("generation_id", sa.String(40), nullable=True, unique=True),  # one charge per generation
    sa.Column("note", sa.String(500), nullable=False, server_default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_ledger_account_id_id", "account_id", "id"),
)

generations = sa.Table(
    "generations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("key_id", sa.String(40), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(100), nullable=False),
    sa.Column("upstream_model", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # succeeded | failed | cancelled
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("input_tokens", sa.Integer, nullable=False),
    sa.Column("output_tokens", sa.Integer, nullable=False),
    sa.Column("cache_read_tokens", sa.Integer, nullable=False),
    sa.Column("cache_write_tokens", sa.Integer, nullable=False),
    sa.Column("reasoning_tokens", sa.Integer, nullable=False),
    # The prices applied (USD per 1M tokens, exact decimal text) so every cost is reproducible.
    sa.Column("price_input", sa.String(32), nullable=False),
    sa.Column("price_output", sa.String(32), nullable=False),
    sa.Column("price_cache_read", sa.String(32), nullable=False),
    sa.Column("price_cache_write", sa.String(32), nullable=False),
    sa.Column("cost_nanos", sa.BigInteger, nullable=False),
    sa.Column("estimated", sa.Boolean, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("ttft_ms", sa.Float, nullable=True),
    sa.Column("overhead_ms", sa.Float, nullable=True),
    sa.Column("error", sa.String(500), nullable=True),
    sa.Column("client_request_id", sa.String(200), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_generations_account_created", "account_id", "created_at"),
)

# One row; bumped by every change that caches elsewhere must notice (revocations, top-ups).
cache_epoch = sa.Table(
    "cache_epoch",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
