"""The `runapi dev` demo key: one key kept across runs.

The key is stored hashed like any other; its secret lives only in a local dev file beside the dev
database, readable by its owner alone (mode 0600). A run reuses the key on file while it still
works; `rotate` revokes it and mints a new one. Other keys named "runapi dev" on the demo account
(left by versions that minted one per run) are revoked, so exactly one dev key is active.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from runapi.cli.common import Stores
from runapi.errors import NotFound
from runapi.storage import hash_key, utcnow

DEMO_ACCOUNT = "demo"
DEMO_TIER = "tier-1"
DEV_KEY_NAME = "runapi dev"
DEMO_CREDIT_NANOS = 10_000_000_000  # $10
LOW_CREDIT_NANOS = 1_000_000_000  # topped up to $10 again below $1


class DevKey(msgspec.Struct, frozen=True):
    secret: str
    key_id: str
    minted: bool  # a new key (first run, rotation, or the one on file no longer worked)
    revoked: list[str] = []  # IDs of the dev keys revoked by this run


def key_file_for(database: Path) -> Path:
    """Where the dev key's secret is kept: beside the database, `runapi-dev.db` → `runapi-dev.key`."""
    return database.with_name(database.stem + ".key")


def read_secret(path: Path) -> str | None:
    try:
        secret = path.read_text("utf-8").strip()
    except FileNotFoundError:
        return None
    return secret or None


def write_secret(path: Path, secret: str) -> None:
    """Write the secret readable by its owner only (0600), replacing any earlier file atomically."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # even if a stale temporary file had wider permissions
        os.write(descriptor, secret.encode() + b"\n")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)


async def ensure_dev_key(stores: Stores, secret_on_file: str | None, *, rotate: bool) -> DevKey:
    """The demo account (created once, topped up to $10 when below $1) and its one dev key."""
    try:
        account = await stores.accounts.find_account(DEMO_ACCOUNT)
    except NotFound:
        account = await stores.accounts.create_account(DEMO_ACCOUNT, DEMO_TIER)
    balance, _ = await stores.ledger.balance(account.id)
    if balance < LOW_CREDIT_NANOS:
        await stores.ledger.add_entry(account.id, "topup", DEMO_CREDIT_NANOS - balance, "runapi dev demo credit")

    on_file = await stores.accounts.key_by_hash(hash_key(secret_on_file)) if secret_on_file else None
    if (on_file is not None and secret_on_file is not None and on_file.account_id == account.id
            and on_file.usable(utcnow()) and not rotate):
        key_id, secret, minted = on_file.id, secret_on_file, False
    else:
        key, secret = await stores.accounts.create_key(account.id, DEV_KEY_NAME)
        key_id, minted = key.id, True
    retired = {on_file.id} if on_file is not None and on_file.account_id == account.id else set()
    revoked = []
    for other in await stores.accounts.list_keys(account.id):
        if other.id != key_id and other.revoked_at is None and (other.name == DEV_KEY_NAME or other.id in retired):
            await stores.accounts.revoke_key(other.id)
            revoked.append(other.id)
    return DevKey(secret, key_id, minted, revoked)
