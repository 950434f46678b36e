"""Storage: SQLite by default, PostgreSQL by URL, through SQLAlchemy Core."""

from runapi.storage.accounts import (
    KEY_LENGTH,
    KEY_PREFIX,
    AccountStore,
    hash_key,
    new_id,
)
from runapi.storage.auto_pipeline import AutoPipeline
from runapi.storage.background import stop_task
from runapi.storage.balance_snapshot import balance_snapshot
from runapi.storage.database import (
    SchemaMismatch,
    check_schema,
    create_engine,
    is_sqlite,
    read_one,
    reader,
    upgrade,
)
from runapi.storage.epoch import bump_epoch, read_epoch
from runapi.storage.feedback import (
    FEEDBACK_CATEGORIES,
    MAX_COMMENT_CHARS,
    MAX_REPORTS_LISTED,
    Feedback,
    FeedbackReport,
    FeedbackStore,
    check_feedback,
    feedback_json,
)
from runapi.storage.idle_gate import MAX_IDLE_S, ChangeProbe, IdleGate, poll
from runapi.storage.invalidation import Change, ChangeBus
from runapi.storage.ledger import HOLD_PREFIX, RELEASE_PREFIX, TASK_ID_PREFIX, WRITEOFF_SUFFIX, Ledger, Settlement
from runapi.storage.records import Account, ApiKey, Generation, KeyLimits, LedgerEntry
from runapi.storage.redis_client import Rider, per_group, redis_client, run_scripts
from runapi.storage.responses import ResponseStore, StoredResponse, timestamp
from runapi.storage.rollups import RollupMismatch, rebuild_rollups, rollup_mismatches
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
from runapi.storage.seed import (
    SeedModel,
    SeedPlan,
    SeedResult,
    has_traffic,
    seed,
    unreconciled,
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
    balances_by_account,
    spend_by_account,
    usage_by_day_and_model,
    usage_by_deployment,
)

__all__ = [
    "FEEDBACK_CATEGORIES",
    "KEY_LENGTH",
    "KEY_PREFIX",
    "MAX_COMMENT_CHARS",
    "MAX_IDLE_S",
    "MAX_REPORTS_LISTED",
    "HOLD_PREFIX",
    "RELEASE_PREFIX",
    "TASK_ID_PREFIX",
    "WRITEOFF_SUFFIX",
    "Account",
    "AccountStore",
    "ApiKey",
    "AutoPipeline",
    "Change",
    "ChangeBus",
    "ChangeProbe",
    "Feedback",
    "FeedbackReport",
    "FeedbackStore",
    "Generation",
    "IdleGate",
    "KeyLimits",
    "Ledger",
    "LedgerEntry",
    "ResponseStore",
    "Rider",
    "RollupMismatch",
    "SchemaMismatch",
    "SeedModel",
    "SeedPlan",
    "SeedResult",
    "Settlement",
    "SettlementSink",
    "SqliteSettlementSink",
    "StoredResponse",
    "UsageFilter",
    "UsageRow",
    "accounts",
    "balance_snapshot",
    "balances_by_account",
    "bump_epoch",
    "check_feedback",
    "check_schema",
    "create_engine",
    "create_settlement_sink",
    "feedback_json",
    "generations",
    "has_traffic",
    "hash_key",
    "idempotency_keys",
    "is_sqlite",
    "ledger",
    "new_id",
    "per_group",
    "poll",
    "read_epoch",
    "read_one",
    "reader",
    "rebuild_rollups",
    "redis_client",
    "rollup_mismatches",
    "run_scripts",
    "seed",
    "server_secrets",
    "spend_by_account",
    "sqlite_file",
    "stop_task",
    "task_outputs",
    "tasks",
    "timestamp",
    "unreconciled",
    "upgrade",
    "usage_by_day_and_model",
    "usage_by_deployment",
    "webhook_deliveries",
    "webhook_events",
    "webhook_secrets",
]
