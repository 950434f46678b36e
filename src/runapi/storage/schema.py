"""The relational schema, shared by SQLite and PostgreSQL. Migrations live in `migrations/`."""

from __future__ import annotations

from typing import Any

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
    # An operator-pinned tier is not changed by automatic promotion.
    sa.Column("tier_pinned", sa.Boolean, nullable=False, server_default=sa.false()),
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
    # Per-key limits, narrower than the account's tier; NULL means "the tier decides".
    sa.Column("rpm_limit", sa.Integer, nullable=True),
    sa.Column("tpm_limit", sa.Integer, nullable=True),
    sa.Column("concurrency_limit", sa.Integer, nullable=True),
    sa.Column("spend_cap_nanos", sa.BigInteger, nullable=True),
    sa.Column("monthly_spend_cap_nanos", sa.BigInteger, nullable=True),
    sa.Column("allowed_models", sa.Text, nullable=True),  # JSON array of public model IDs
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # topup | charge | refund | adjustment | writeoff | hold | release
    sa.Column("amount_nanos", sa.BigInteger, nullable=False),  # signed; charges are negative
    sa.Column("generation_id", sa.String(40), nullable=True, unique=True),  # one charge per generation
    sa.Column("note", sa.String(500), nullable=False, server_default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    # Covering (migration 0008): an account's balance, spend and entries are read from the index alone.
    sa.Index("ix_ledger_account_covering", "account_id", "id", "amount_nanos", "kind", "created_at"),
    # The few write-offs by time, for the revenue report (migration 0008).
    sa.Index("ix_ledger_writeoffs", "created_at", postgresql_where=sa.text("kind = 'writeoff'"),
             sqlite_where=sa.text("kind = 'writeoff'")),
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
    # The billing unit (tokens | image | video | second), how many were billed and the USD price of one
    # (media modes; token calls keep their four token prices above and 0 units).
    sa.Column("unit", sa.String(16), nullable=False, server_default="tokens"),
    sa.Column("units", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("price_unit", sa.String(32), nullable=False, server_default="0"),
    sa.Index("ix_generations_account_created", "account_id", "created_at"),
    sa.Index("ix_generations_created", "created_at"),
    sa.Index("ix_generations_key_created", "key_id", "created_at"),
)

# Roll-ups the reports read (migration 0009), kept exact by triggers in the transaction that writes the
# generations and ledger rows, with the sums of `storage/usage.py` (billed = succeeded or cancelled;
# failed generations only counted). `usage_daily`: per account, UTC day, key, model and unit (customer
# usage); `usage_daily_deployments`: per UTC day and deployment over all accounts, in 16 shards by
# account on PostgreSQL (the revenue report).
ROLLUP_SUMS = ("requests", "failed", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
               "reasoning_tokens", "cost_nanos", "units")
ACCOUNT_ROLLUP_KEY = ("account_id", "day", "key_id", "model", "unit")
DEPLOYMENT_ROLLUP_KEY = ("day", "model", "provider", "upstream_model", "unit", "shard")
_ROLLUP_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "day": sa.Date(), "shard": sa.SmallInteger(), "account_id": sa.String(40), "key_id": sa.String(40),
    "unit": sa.String(16), "provider": sa.String(100)}


def _rollup_columns(key: tuple[str, ...], sums: tuple[str, ...]) -> list[sa.Column[Any]]:
    return [*[sa.Column(name, _ROLLUP_TYPES.get(name, sa.String(200)), nullable=False) for name in key],
            *[sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in sums]]


usage_daily = sa.Table(
    "usage_daily",
    metadata,
    *_rollup_columns(ACCOUNT_ROLLUP_KEY, ROLLUP_SUMS),
    sa.PrimaryKeyConstraint(*ACCOUNT_ROLLUP_KEY, name="pk_usage_daily"),
)

usage_daily_deployments = sa.Table(
    "usage_daily_deployments",
    metadata,
    *_rollup_columns(DEPLOYMENT_ROLLUP_KEY, (*ROLLUP_SUMS, "write_off_nanos")),
    sa.PrimaryKeyConstraint(*DEPLOYMENT_ROLLUP_KEY, name="pk_usage_daily_deployments"),
)

# Σ ledger per account (migration 0009), kept by a trigger on the ledger.
account_balances = sa.Table(
    "account_balances",
    metadata,
    sa.Column("account_id", sa.String(40), primary_key=True),
    sa.Column("balance_nanos", sa.BigInteger, nullable=False, server_default="0"),
)

# One row; bumped by every change that caches elsewhere must notice (revocations, top-ups).
cache_epoch = sa.Table(
    "cache_epoch",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

# Asynchronous tasks (migration 0003). A task is claimed by a worker with a lease (`locked_until`);
# a lapsed lease is taken over. Each run's generation ID derives from the task's, and a re-run after a
# charged run reuses that run's ID, so the ledger's unique generation_id never lets it be charged twice.
tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("key_id", sa.String(40), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("endpoint", sa.String(40), nullable=False),  # chat.completions | messages | videos
    sa.Column("request", sa.Text, nullable=False),  # the input, JSON
    sa.Column("callback_url", sa.String(2000), nullable=True),
    sa.Column("metadata_json", sa.Text, nullable=True),
    sa.Column("origin", sa.String(500), nullable=False, server_default=""),  # base URL for output links
    sa.Column("status", sa.String(16), nullable=False),  # queued | running | succeeded | failed | cancelled
    sa.Column("runs", sa.Integer, nullable=False, server_default="0"),
    sa.Column("run_after", Timestamp, nullable=False),
    sa.Column("locked_until", Timestamp, nullable=True),
    sa.Column("worker", sa.String(100), nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("generation_id", sa.String(40), nullable=True, unique=True),  # the latest run's
    sa.Column("cost_nanos", sa.BigInteger, nullable=True),
    sa.Column("error", sa.Text, nullable=True),  # OpenAI-shaped error object, JSON
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("started_at", Timestamp, nullable=True),
    sa.Column("finished_at", Timestamp, nullable=True),
    # Video jobs (migration 0010): the upstream job, and the credit held for it from submission.
    sa.Column("upstream_id", sa.String(200), nullable=True),
    sa.Column("upstream_state", sa.String(16), nullable=True),  # NULL | submitting | submitted
    sa.Column("provider_name", sa.String(200), nullable=True),
    sa.Column("upstream_model", sa.String(200), nullable=True),
    sa.Column("hold_nanos", sa.BigInteger, nullable=True),  # the `hold` ledger entry's amount
    sa.Column("price_nanos", sa.BigInteger, nullable=True),  # the charge on success (units × unit price)
    sa.Column("units", sa.Integer, nullable=True),
    sa.Column("deadline_at", Timestamp, nullable=True),  # given up (free) after this
    sa.Column("polls", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_tasks_status_run_after", "status", "run_after"),
    sa.Index("ix_tasks_account_created", "account_id", "created_at"),
    sa.Index("ix_tasks_key_id", "key_id"),  # a key's video tasks in flight, for its spend cap (migration 0011)
)

# A finished task's output, served at its signed URL until `expires_at`, then purged.
task_outputs = sa.Table(
    "task_outputs",
    metadata,
    sa.Column("task_id", sa.String(40), sa.ForeignKey("tasks.id"), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False, index=True),
)

# One signing secret per account; a rotated-out secret keeps signing until `previous_until`.
webhook_secrets = sa.Table(
    "webhook_secrets",
    metadata,
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("secret", sa.String(100), nullable=False),
    sa.Column("previous_secret", sa.String(100), nullable=True),
    sa.Column("previous_until", Timestamp, nullable=True),
    sa.Column("rotated_at", Timestamp, nullable=False),
)

# The webhook outbox: written in the task's final transaction, delivered (and retried) by a sender.
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # the `webhook-id` header, the same on every retry
    sa.Column("task_id", sa.String(40), nullable=False, index=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Timestamp, nullable=False),
    sa.Column("locked_until", Timestamp, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Index("ix_webhook_events_status_next", "status", "next_attempt_at"),
)

# Every delivery attempt, as it happened.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(40), nullable=False, index=True),
    sa.Column("task_id", sa.String(40), nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.String(500), nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # delivered | retrying | failed
    sa.Column("created_at", Timestamp, nullable=False),
)

# `Idempotency-Key` requests: the first response, replayed to retries with the same key and body.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("account_id", sa.String(40), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),  # SHA-256 of the endpoint and canonical body
    sa.Column("status", sa.String(16), nullable=False),  # pending | done
    sa.Column("resource_id", sa.String(40), nullable=True),
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("response_headers", sa.Text, nullable=True),
    sa.Column("response_body", sa.LargeBinary, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False, index=True),
)

# Secrets the gateway generates once and every instance shares (e.g. the output URL signing key).
server_secrets = sa.Table(
    "server_secrets",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

# Quality reports on generations (migration 0005): one per generation (a new report replaces it), filed by
# the generation's own account; `model` is copied from the generation so operators list reports by model.
generation_feedback = sa.Table(
    "generation_feedback",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("generation_id", sa.String(40), nullable=False, unique=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("key_id", sa.String(40), nullable=True),  # the key (API or dashboard session) that filed it
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("comment", sa.String(2000), nullable=False, server_default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_generation_feedback_model_updated", "model", "updated_at"),
)

# Stored `/v1/responses` answers (migration 0006), readable by their own account only. The ID is the generation's
# (`resp_<hex>` for `gen-<hex>`); a follow-up turn (`previous_response_id`) replays the chain's inputs and outputs.
# JSON texts: `input_items` and `output_items` (lists of items), `usage` (with `cost`), `params` (the echoed request
# parameters). `instructions` is kept apart: it does not carry over to a follow-up turn.
responses = sa.Table(
    "responses",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("generation_id", sa.String(40), nullable=False, unique=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # completed | incomplete
    sa.Column("previous_response_id", sa.String(40), nullable=True),
    sa.Column("instructions", sa.Text, nullable=True),
    sa.Column("input_items", sa.Text, nullable=False),
    sa.Column("output_items", sa.Text, nullable=False),
    sa.Column("usage", sa.Text, nullable=True),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_responses_account_created", "account_id", "created_at"),
)
