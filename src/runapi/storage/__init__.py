"""Storage: SQLite by default, PostgreSQL by URL, through SQLAlchemy Core."""

from runapi.storage.accounts import KEY_PREFIX, AccountStore, hash_key, new_id
from runapi.storage.database import SchemaMismatch, check_schema, create_engine, is_sqlite, upgrade
from runapi.storage.epoch import bump_epoch, read_epoch
from runapi.storage.ledger import Ledger, Settlement
from runapi.storage.records import Account, ApiKey, Generation, KeyLimits, LedgerEntry
from runapi.storage.settlement_sink import SettlementSink, SqliteSettlementSink, create_settlement_sink

__all__ = [
    "KEY_PREFIX",
    "Account",
    "AccountStore",
    "ApiKey",
    "Generation",
    "KeyLimits",
    "Ledger",
    "LedgerEntry",
    "SchemaMismatch",
    "Settlement",
    "SettlementSink",
    "SqliteSettlementSink",
    "bump_epoch",
    "check_schema",
    "create_engine",
    "create_settlement_sink",
    "hash_key",
    "is_sqlite",
    "new_id",
    "read_epoch",
    "upgrade",
]
