"""Exact roll-ups for reports on a long history (issue 24 item 4): `usage_daily` and `account_balances`.

- `usage_daily`: one row per (account, UTC day, key, model, provider, upstream model, unit) with the
  counts, tokens, cost, units and write-offs of that group's generations, summed as `storage/usage.py`
  reports them (billed = succeeded or cancelled; failed generations counted apart, with nothing else).
- `account_balances`: Σ ledger per account.

The database keeps both, by triggers, in the transaction that writes the generations and ledger rows:
every writer (the SQLite and PostgreSQL settlement sinks, `Ledger`, `runapi db seed`, a COPY) keeps
them exact and none can forget. PostgreSQL: one statement-level trigger per table, grouping the
statement's transition table and upserting in key order (concurrent batches lock rows in one order).
SQLite: row triggers. Generations and ledger rows are never updated or deleted. The upgrade fills both
tables from the rows already there; `runapi db reconcile` checks them against the rows.

The wide covering indexes of 0008 on `generations` served only the reports, which now read the
roll-ups; they are replaced by the two narrow ones the generation listings need (cheaper inserts).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

KEY = ["account_id", "day", "key_id", "model", "provider", "upstream_model", "unit"]
TOKENS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"]
BILLED_SUMS = [*TOKENS, "cost_nanos", "units"]
SUMS = ["requests", "failed", *BILLED_SUMS, "write_off_nanos"]
BILLED = "('succeeded', 'cancelled')"
COLUMNS = ", ".join(KEY + SUMS)


def _key(table: str, day: str) -> str:
    """The roll-up key of a generations row of `table` (an alias, or "" for unqualified columns)."""
    prefix = f"{table}." if table else ""
    return ", ".join(day.format(f"{prefix}created_at") if name == "day" else f"{prefix}{name}" for name in KEY)


PG_DAY = "({} AT TIME ZONE 'UTC')::date"
SQLITE_DAY = "substr({}, 1, 10)"  # SQLite keeps UTC timestamps as ISO text


def _add(table: str, names: list[str]) -> str:
    return ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in names)


def _pg_generation_sums(source: str) -> str:
    """The grouped sums of the generations in `source`, in `usage_daily`'s column order."""
    billed = f"status IN {BILLED}"
    sums = [f"count(*) FILTER (WHERE {billed})", f"count(*) FILTER (WHERE NOT {billed})",
            *[f"coalesce(sum({name}) FILTER (WHERE {billed}), 0)" for name in BILLED_SUMS], "0"]
    key = _key("", PG_DAY)
    return f"SELECT {key}, {', '.join(sums)} FROM {source} GROUP BY {key} ORDER BY {key}"


def _pg_writeoff_sums(source: str) -> str:
    """The write-offs in the ledger rows of `source`, grouped by their generation's roll-up key."""
    key = _key("g", PG_DAY)
    zeros = ", ".join("0" for _ in SUMS[:-1])
    return (f"SELECT {key}, {zeros}, sum(w.amount_nanos) FROM {source} w "
            "JOIN generations g ON g.id = left(w.generation_id, -3) "
            f"WHERE w.kind = 'writeoff' GROUP BY {key} ORDER BY {key}")


def _pg_upsert(select: str, names: list[str]) -> str:
    return (f"INSERT INTO usage_daily AS u ({COLUMNS}) {select} "
            f"ON CONFLICT ON CONSTRAINT pk_usage_daily DO UPDATE SET {_add('u', names)}")


PG_BALANCES = ("INSERT INTO account_balances AS b (account_id, balance_nanos) "
               "SELECT account_id, sum(amount_nanos) FROM {source} GROUP BY account_id ORDER BY account_id "
               "ON CONFLICT (account_id) DO UPDATE SET balance_nanos = b.balance_nanos + excluded.balance_nanos")


def _pg_create() -> list[str]:
    return [
        ("CREATE FUNCTION runapi_rollup_generations() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"{_pg_upsert(_pg_generation_sums('new_generations'), SUMS[:-1])}; RETURN NULL; END $$"),
        ("CREATE TRIGGER rollup_generations AFTER INSERT ON generations REFERENCING NEW TABLE AS new_generations "
        "FOR EACH STATEMENT EXECUTE FUNCTION runapi_rollup_generations()"),
        # Write-offs first, then balances: one lock order (usage_daily, then account_balances) in every writer.
        ("CREATE FUNCTION runapi_rollup_ledger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"{_pg_upsert(_pg_writeoff_sums('new_entries'), ['write_off_nanos'])}; "
        f"{PG_BALANCES.format(source='new_entries')}; RETURN NULL; END $$"),
        ("CREATE TRIGGER rollup_ledger AFTER INSERT ON ledger REFERENCING NEW TABLE AS new_entries "
        "FOR EACH STATEMENT EXECUTE FUNCTION runapi_rollup_ledger()"),
    ]


def _sqlite_create() -> list[str]:
    billed = f"(NEW.status IN {BILLED})"
    values = ", ".join([_key("NEW", SQLITE_DAY), billed, f"NOT {billed}", *[f"NEW.{name} * {billed}" for name in BILLED_SUMS], "0"])
    key_list = ", ".join(KEY)
    g_key = _key("g", SQLITE_DAY)
    zeros = ", ".join("0" for _ in SUMS[:-1])
    return [
        ("CREATE TRIGGER rollup_generations AFTER INSERT ON generations BEGIN "
        f"INSERT INTO usage_daily ({COLUMNS}) VALUES ({values}) "
        f"ON CONFLICT ({key_list}) DO UPDATE SET {_add('usage_daily', SUMS[:-1])}; END"),
        ("CREATE TRIGGER rollup_writeoffs AFTER INSERT ON ledger WHEN NEW.kind = 'writeoff' BEGIN "
        f"INSERT INTO usage_daily ({COLUMNS}) SELECT {g_key}, {zeros}, NEW.amount_nanos FROM generations g "
        "WHERE g.id = substr(NEW.generation_id, 1, length(NEW.generation_id) - 3) "
        f"ON CONFLICT ({key_list}) DO UPDATE SET {_add('usage_daily', ['write_off_nanos'])}; END"),
        ("CREATE TRIGGER rollup_balances AFTER INSERT ON ledger BEGIN "
        "INSERT INTO account_balances (account_id, balance_nanos) VALUES (NEW.account_id, NEW.amount_nanos) "
        "ON CONFLICT (account_id) DO UPDATE SET balance_nanos = account_balances.balance_nanos "
        "+ excluded.balance_nanos; END"),
    ]


def _fill(dialect: str) -> list[str]:
    """Statements filling the roll-ups from the rows already there (before the triggers exist)."""
    if dialect == "postgresql":
        return [_pg_upsert(_pg_generation_sums("generations"), SUMS[:-1]),
                _pg_upsert(_pg_writeoff_sums("ledger"), ["write_off_nanos"]),
                PG_BALANCES.format(source="ledger")]
    billed = f"(status IN {BILLED})"
    key = _key("", SQLITE_DAY)
    sums = ", ".join([f"sum({billed})", f"sum(NOT {billed})", *[f"sum({name} * {billed})" for name in BILLED_SUMS],
                      "0"])
    g_key = _key("g", SQLITE_DAY)
    zeros = ", ".join("0" for _ in SUMS[:-1])
    return [
        f"INSERT INTO usage_daily ({COLUMNS}) SELECT {key}, {sums} FROM generations GROUP BY {key}",
        (f"INSERT INTO usage_daily ({COLUMNS}) SELECT {g_key}, {zeros}, sum(w.amount_nanos) FROM ledger w "
        "JOIN generations g ON g.id = substr(w.generation_id, 1, length(w.generation_id) - 3) "
        f"WHERE w.kind = 'writeoff' GROUP BY {g_key} "
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {_add('usage_daily', ['write_off_nanos'])}"),
        ("INSERT INTO account_balances (account_id, balance_nanos) "
        "SELECT account_id, sum(amount_nanos) FROM ledger GROUP BY account_id"),
    ]


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        *[sa.Column(name, sa.Date if name == "day" else sa.String(200), nullable=False) for name in KEY],
        *[sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in SUMS],
        sa.PrimaryKeyConstraint(*KEY, name="pk_usage_daily"),
    )
    op.create_index("ix_usage_daily_day", "usage_daily", ["day"])
    op.create_table(
        "account_balances",
        sa.Column("account_id", sa.String(40), primary_key=True),
        sa.Column("balance_nanos", sa.BigInteger, nullable=False, server_default="0"),
    )
    dialect = op.get_bind().dialect.name
    for statement in _fill(dialect):
        op.execute(statement)
    for statement in _pg_create() if dialect == "postgresql" else _sqlite_create():
        op.execute(statement)
    op.create_index("ix_generations_account_created", "generations", ["account_id", "created_at"])
    op.drop_index("ix_generations_account_usage", "generations")
    op.create_index("ix_generations_created", "generations", ["created_at"])
    op.drop_index("ix_generations_created_usage", "generations")


def downgrade() -> None:
    op.create_index("ix_generations_created_usage", "generations",
                    ["created_at", "model", "provider", "upstream_model", "status", *TOKENS, "cost_nanos", "unit",
                     "units"])
    op.drop_index("ix_generations_created", "generations")
    op.create_index("ix_generations_account_usage", "generations",
                    ["account_id", "created_at", "model", "status", "key_id", *TOKENS, "cost_nanos", "unit", "units"])
    op.drop_index("ix_generations_account_created", "generations")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER rollup_ledger ON ledger")
        op.execute("DROP TRIGGER rollup_generations ON generations")
        op.execute("DROP FUNCTION runapi_rollup_ledger()")
        op.execute("DROP FUNCTION runapi_rollup_generations()")
    else:
        for name in ("rollup_balances", "rollup_writeoffs", "rollup_generations"):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("account_balances")
    op.drop_index("ix_usage_daily_day", "usage_daily")
    op.drop_table("usage_daily")
