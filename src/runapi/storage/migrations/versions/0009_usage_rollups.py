"""Exact roll-ups for reports on a long history (issue 24 item 4).

- `usage_daily`: per (account, UTC day, key, model, unit), the counts, tokens, cost and units of its
  generations, summed as `storage/usage.py` reports them (billed = succeeded or cancelled; failed
  generations counted apart, with nothing else): customer usage, dashboards, CSV export.
- `usage_daily_deployments`: the same per (UTC day, model, provider, upstream model, unit, shard) over
  every account, with the write-offs: the revenue report. `shard` (0-15, from the account ID on
  PostgreSQL; always 0 on SQLite, which has one writer) spreads concurrent settlements of many
  accounts over 16 rows instead of one hot row per deployment and day.
- `account_balances`: Σ ledger per account: the operator dashboard.

The database keeps them, by triggers, in the transaction that writes the generations and ledger rows:
every writer (the SQLite and PostgreSQL settlement sinks, `Ledger`, `runapi db seed`, a COPY) keeps
them exact and none can forget. PostgreSQL: one statement-level trigger per table, grouping the
statement's transition table and upserting in key order, tables always in the order usage_daily,
usage_daily_deployments, account_balances (concurrent batches lock rows in one order). SQLite: row
triggers. Generations and ledger rows are never updated or deleted. The upgrade fills the tables from
the rows already there; `runapi db reconcile` checks them against the rows (and `--rebuild`s them).

The wide covering indexes of 0008 on `generations` served only the reports, which now read the
roll-ups; they give way to the two narrow ones the generation listings need (cheaper inserts).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TOKENS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"]
BILLED_SUMS = [*TOKENS, "cost_nanos", "units"]
SUMS = ["requests", "failed", *BILLED_SUMS]
ACCOUNT_KEY = ["account_id", "day", "key_id", "model", "unit"]
DEPLOYMENT_KEY = ["day", "model", "provider", "upstream_model", "unit", "shard"]
BILLED = "('succeeded', 'cancelled')"
PG_DAY = "({} AT TIME ZONE 'UTC')::date"
SQLITE_DAY = "substr({}, 1, 10)"  # SQLite keeps UTC timestamps as ISO text
PG_SHARD = "(hashtext({}) & 15)"
SQLITE_SHARD = "0"


def _key(names: list[str], table: str, day: str, shard: str) -> str:
    """The roll-up key of a generations row of `table` (an alias, or "" for unqualified columns)."""
    prefix = f"{table}." if table else ""
    parts = {"day": day.format(f"{prefix}created_at"), "shard": shard.format(f"{prefix}account_id")}
    return ", ".join(parts.get(name, f"{prefix}{name}") for name in names)


def _add(table: str, names: list[str]) -> str:
    return ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in names)


def _upsert(table: str, key: list[str], columns: list[str], select: str, names: list[str]) -> str:
    return (f"INSERT INTO {table} ({', '.join(key + columns)}) {select} "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {_add(table, names)}")


def _pg_sums(key: list[str], source: str) -> str:
    """The grouped sums of the generations in `source`, in the roll-up's column order."""
    billed = f"status IN {BILLED}"
    sums = [f"count(*) FILTER (WHERE {billed})", f"count(*) FILTER (WHERE NOT {billed})",
            *[f"coalesce(sum({name}) FILTER (WHERE {billed}), 0)" for name in BILLED_SUMS]]
    grouped = _key(key, "", PG_DAY, PG_SHARD)
    return f"SELECT {grouped}, {', '.join(sums)} FROM {source} GROUP BY {grouped} ORDER BY {grouped}"


def _pg_writeoffs(source: str) -> str:
    """The write-offs among the ledger rows of `source`, grouped by their generation's deployment key."""
    grouped = _key(DEPLOYMENT_KEY, "g", PG_DAY, PG_SHARD)
    return (f"SELECT {grouped}, sum(w.amount_nanos) FROM {source} w "
            "JOIN generations g ON g.id = left(w.generation_id, -3) "
            f"WHERE w.kind = 'writeoff' GROUP BY {grouped} ORDER BY {grouped}")


PG_BALANCES = ("INSERT INTO account_balances AS b (account_id, balance_nanos) "
               "SELECT account_id, sum(amount_nanos) FROM {source} GROUP BY account_id ORDER BY account_id "
               "ON CONFLICT (account_id) DO UPDATE SET balance_nanos = b.balance_nanos + excluded.balance_nanos")


def _pg_statements(generations: str, entries: str) -> list[str]:
    """The upserts for the generations in `generations` and the ledger rows in `entries`, in lock order."""
    return [
        _upsert("usage_daily", ACCOUNT_KEY, SUMS, _pg_sums(ACCOUNT_KEY, generations), SUMS),
        _upsert("usage_daily_deployments", DEPLOYMENT_KEY, SUMS, _pg_sums(DEPLOYMENT_KEY, generations), SUMS),
        _upsert("usage_daily_deployments", DEPLOYMENT_KEY, ["write_off_nanos"], _pg_writeoffs(entries),
                ["write_off_nanos"]),
        PG_BALANCES.format(source=entries),
    ]


def _pg_function(name: str, statements: list[str]) -> str:
    return (f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"{'; '.join(statements)}; RETURN NULL; END $$")


def _pg_create() -> list[str]:
    on_generations = _pg_statements("new_generations", "new_entries")[:2]
    on_ledger = _pg_statements("new_generations", "new_entries")[2:]
    return [
        _pg_function("runapi_rollup_generations", on_generations),
        ("CREATE TRIGGER rollup_generations AFTER INSERT ON generations REFERENCING NEW TABLE AS new_generations "
         "FOR EACH STATEMENT EXECUTE FUNCTION runapi_rollup_generations()"),
        _pg_function("runapi_rollup_ledger", on_ledger),
        ("CREATE TRIGGER rollup_ledger AFTER INSERT ON ledger REFERENCING NEW TABLE AS new_entries "
         "FOR EACH STATEMENT EXECUTE FUNCTION runapi_rollup_ledger()"),
    ]


def _sqlite_values(key: list[str]) -> str:
    billed = f"(NEW.status IN {BILLED})"
    return ", ".join([_key(key, "NEW", SQLITE_DAY, SQLITE_SHARD), billed, f"NOT {billed}",
                      *[f"NEW.{name} * {billed}" for name in BILLED_SUMS]])


def _sqlite_create() -> list[str]:
    writeoff = _upsert("usage_daily_deployments", DEPLOYMENT_KEY, ["write_off_nanos"],
                       f"SELECT {_key(DEPLOYMENT_KEY, 'g', SQLITE_DAY, SQLITE_SHARD)}, NEW.amount_nanos "
                       "FROM generations g WHERE g.id = substr(NEW.generation_id, 1, length(NEW.generation_id) - 3)",
                       ["write_off_nanos"])
    return [
        ("CREATE TRIGGER rollup_generations AFTER INSERT ON generations BEGIN "
         f"{_upsert('usage_daily', ACCOUNT_KEY, SUMS, f'VALUES ({_sqlite_values(ACCOUNT_KEY)})', SUMS)}; "
         f"{_upsert('usage_daily_deployments', DEPLOYMENT_KEY, SUMS, f'VALUES ({_sqlite_values(DEPLOYMENT_KEY)})', SUMS)}; "
         "END"),
        f"CREATE TRIGGER rollup_writeoffs AFTER INSERT ON ledger WHEN NEW.kind = 'writeoff' BEGIN {writeoff}; END",
        ("CREATE TRIGGER rollup_balances AFTER INSERT ON ledger BEGIN "
         "INSERT INTO account_balances (account_id, balance_nanos) VALUES (NEW.account_id, NEW.amount_nanos) "
         "ON CONFLICT (account_id) DO UPDATE SET balance_nanos = account_balances.balance_nanos "
         "+ excluded.balance_nanos; END"),
    ]


def _sqlite_fill() -> list[str]:
    billed = f"(status IN {BILLED})"
    sums = ", ".join([f"sum({billed})", f"sum(NOT {billed})", *[f"sum({name} * {billed})" for name in BILLED_SUMS]])
    statements = []
    # GROUP BY leaves the constant shard out: SQLite reads a bare integer there as a column number.
    for table, key in (("usage_daily", ACCOUNT_KEY), ("usage_daily_deployments", DEPLOYMENT_KEY)):
        selected = _key(key, "", SQLITE_DAY, SQLITE_SHARD)
        grouped = _key([name for name in key if name != "shard"], "", SQLITE_DAY, SQLITE_SHARD)
        statements.append(f"INSERT INTO {table} ({', '.join(key + SUMS)}) "
                          f"SELECT {selected}, {sums} FROM generations GROUP BY {grouped}")
    selected = _key(DEPLOYMENT_KEY, "g", SQLITE_DAY, SQLITE_SHARD)
    grouped = _key(DEPLOYMENT_KEY[:-1], "g", SQLITE_DAY, SQLITE_SHARD)
    statements.append(_upsert(  # WHERE: SQLite's upsert after a SELECT needs one (a parsing ambiguity)
        "usage_daily_deployments", DEPLOYMENT_KEY, ["write_off_nanos"],
        f"SELECT {selected}, sum(w.amount_nanos) FROM ledger w "
        "JOIN generations g ON g.id = substr(w.generation_id, 1, length(w.generation_id) - 3) "
        f"WHERE w.kind = 'writeoff' GROUP BY {grouped}", ["write_off_nanos"]))
    statements.append("INSERT INTO account_balances (account_id, balance_nanos) "
                      "SELECT account_id, sum(amount_nanos) FROM ledger GROUP BY account_id")
    return statements


def _columns(key: list[str], sums: list[str]) -> list[sa.Column]:  # type: ignore[type-arg]
    kinds: dict[str, sa.types.TypeEngine] = {  # type: ignore[type-arg]
        "day": sa.Date(), "shard": sa.SmallInteger(), "account_id": sa.String(40), "key_id": sa.String(40),
        "unit": sa.String(16), "provider": sa.String(100)}
    return [*[sa.Column(name, kinds.get(name, sa.String(200)), nullable=False) for name in key],
            *[sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in sums]]


def upgrade() -> None:
    op.create_table("usage_daily", *_columns(ACCOUNT_KEY, SUMS),
                    sa.PrimaryKeyConstraint(*ACCOUNT_KEY, name="pk_usage_daily"))
    op.create_table("usage_daily_deployments", *_columns(DEPLOYMENT_KEY, [*SUMS, "write_off_nanos"]),
                    sa.PrimaryKeyConstraint(*DEPLOYMENT_KEY, name="pk_usage_daily_deployments"))
    op.create_table("account_balances", sa.Column("account_id", sa.String(40), primary_key=True),
                    sa.Column("balance_nanos", sa.BigInteger, nullable=False, server_default="0"))
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _pg_statements("generations", "ledger") if postgres else _sqlite_fill():
        op.execute(statement)
    for statement in _pg_create() if postgres else _sqlite_create():
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
    op.drop_table("usage_daily_deployments")
    op.drop_table("usage_daily")
