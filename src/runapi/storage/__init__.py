"""Storage: SQLite by default, PostgreSQL by URL, through SQLAlchemy Core."""

from runapi.storage.accounts import (
    KEY_LENGTH,
    KEY_PREFIX,
    AccountStore,
    hash_key,
    new_id,
)
from runapi.storage.background import stop_task
from runapi.storage.balance_snapshot import balance_snapshot
from runapi.storage.clock import as_utc, utcnow
from runapi.storage.database import (
    SchemaMismatch,
    check_schema,
    create_engine,
    is_sqlite,
    upgrade,
)
from runapi.storage.epoch import bump_epoch, read_epoch
from runapi.storage.feedback import (
    FEEDBACK_CATEGORIES,
    MAX_COMMENT_CHARS,
    MAX_REPORTS_LISTED,
    FeedbackReport,
    FeedbackStore,
    feedback_json,
)
from runapi.storage.idle_gate import ChangeProbe, IdleGate, poll
from runapi.storage.invalidation import Change, ChangeBus
from runapi.storage.ledger import WRITEOFF_SUFFIX, Ledger, Settlement
from runapi.storage.outage import REDIS_DOWN, store_outage
from runapi.storage.records import Account, ApiKey, Generation, KeyLimits, LedgerEntry
from runapi.storage.redis_client import Rider, per_group, redis_client, run_scripts
from runapi.storage.schema import (
    accounts,
    generations,
    idempotency_keys,
    ledger,
    server_secrets,
    task_outputs,
    tasks,
    webhook_deliveries,
    webhook_events,
    webhook_secrets,
)
from runapi.storage.settlement_sink import (
    SettlementSink,
    SqliteSettlementSink,
    create_settlement_sink,
    sqlite_file,
)
from runapi.storage.usage import (
    UsageFilter,
    UsageRow,
    usage_by_day_and_model,
    usage_by_deployment,
)

__all__ = [
    "FEEDBACK_CATEGORIES",
    "KEY_LENGTH",
    "KEY_PREFIX",
    "MAX_COMMENT_CHARS",
    "MAX_REPORTS_LISTED",
    "REDIS_DOWN",
    "WRITEOFF_SUFFIX",
    "Account",
    "AccountStore",
    "ApiKey",
    "Change",
    "ChangeBus",
    "ChangeProbe",
    "FeedbackReport",
    "FeedbackStore",
    "Generation",
    "IdleGate",
    "KeyLimits",
    "Ledger",
    "LedgerEntry",
    "Rider",
    "SchemaMismatch",
    "Settlement",
    "SettlementSink",
    "SqliteSettlementSink",
    "UsageFilter",
    "UsageRow",
    "accounts",
    "as_utc",
    "balance_snapshot",
    "bump_epoch",
    "check_schema",
    "create_engine",
    "create_settlement_sink",
    "feedback_json",
    "generations",
    "hash_key",
    "idempotency_keys",
    "is_sqlite",
    "ledger",
    "new_id",
    "per_group",
    "poll",
    "read_epoch",
    "redis_client",
    "run_scripts",
    "server_secrets",
    "sqlite_file",
    "stop_task",
    "store_outage",
    "task_outputs",
    "tasks",
    "upgrade",
    "usage_by_day_and_model",
    "usage_by_deployment",
    "utcnow",
    "webhook_deliveries",
    "webhook_events",
    "webhook_secrets",
]
