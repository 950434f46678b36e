"""Accounts and their API keys. Keys are random, shown once, stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.clock import as_utc, utcnow
from runapi.errors import Conflict, NotFound
from runapi.storage.epoch import bump_epoch
from runapi.storage.records import Account, ApiKey, KeyLimits
from runapi.storage.schema import accounts, api_keys

KEY_PREFIX = "rk-"
KEY_SECRET_BYTES = 30
KEY_LENGTH = len(KEY_PREFIX) + 40  # token_urlsafe(30): 30 bytes in 40 base64url characters


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def hash_key(secret: str) -> str:
    """SHA-256 of the key. Keys carry 240 random bits, so a fast hash is the right one."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _account(row: Any) -> Account:
    return Account(id=row.id, name=row.name, tier=row.tier, created_at=as_utc(row.created_at),  # type: ignore[arg-type]
                   tier_pinned=bool(row.tier_pinned))


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id, account_id=row.account_id, name=row.name, prefix=row.prefix,
        created_at=as_utc(row.created_at), expires_at=as_utc(row.expires_at),  # type: ignore[arg-type]
        revoked_at=as_utc(row.revoked_at), limits=key_limits_of(row),
    )


def key_limits_of(row: Any) -> KeyLimits:
    allowed = row.allowed_models
    return KeyLimits(
        requests_per_minute=row.rpm_limit, tokens_per_minute=row.tpm_limit, concurrent_requests=row.concurrency_limit,
        spend_cap_nanos=row.spend_cap_nanos, monthly_spend_cap_nanos=row.monthly_spend_cap_nanos,
        allowed_models=None if allowed is None else tuple(json.loads(allowed)),
    )


def key_limit_columns(limits: KeyLimits) -> dict[str, Any]:
    allowed = limits.allowed_models
    return {
        "rpm_limit": limits.requests_per_minute, "tpm_limit": limits.tokens_per_minute,
        "concurrency_limit": limits.concurrent_requests, "spend_cap_nanos": limits.spend_cap_nanos,
        "monthly_spend_cap_nanos": limits.monthly_spend_cap_nanos,
        "allowed_models": None if allowed is None else json.dumps(list(allowed)),
    }


class AccountStore:
    """Accounts and keys in the relational database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_account(self, name: str, tier: str = "free") -> Account:
        record = Account(id=new_id("acct"), name=name, tier=tier, created_at=utcnow())
        try:
            async with self.engine.begin() as conn:
                await conn.execute(accounts.insert().values(**{f: getattr(record, f) for f in record.__struct_fields__}))
        except IntegrityError as exc:
            raise Conflict(f"an account named {name!r} already exists") from exc
        return record

    async def get_account(self, account_id: str) -> Account:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(accounts).where(accounts.c.id == account_id))).first()
        if row is None:
            raise NotFound(f"no account {account_id!r}")
        return _account(row)

    async def find_account(self, id_or_name: str) -> Account:
        """An account by ID or by name."""
        query = sa.select(accounts).where(sa.or_(accounts.c.id == id_or_name, accounts.c.name == id_or_name))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"no account with ID or name {id_or_name!r}")
        return _account(row)

    async def list_accounts(self, offset: int = 0, limit: int | None = None, *,
                            newest_first: bool = False) -> list[Account]:
        """Accounts, oldest (or newest) first; a page of them with `offset` and `limit`."""
        order = (accounts.c.created_at.desc(), accounts.c.id.desc()) if newest_first else (accounts.c.created_at,
                                                                                          accounts.c.id)
        query = sa.select(accounts).order_by(*order).offset(offset).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_account(r) for r in rows]

    async def count_accounts(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(accounts))).scalar_one())

    async def set_tier(self, account_id: str, tier: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(accounts.update().where(accounts.c.id == account_id).values(tier=tier))
            await bump_epoch(conn)

    async def set_key_limits(self, key_id: str, limits: KeyLimits, expires_at: datetime | None) -> ApiKey:
        """Replace a key's own limits and expiry; every instance picks them up through the cache epoch."""
        async with self.engine.begin() as conn:
            result = await conn.execute(api_keys.update().where(api_keys.c.id == key_id)
                                        .values(expires_at=expires_at, **key_limit_columns(limits)))
            if result.rowcount == 0:
                raise NotFound(f"no key {key_id!r}")
            await bump_epoch(conn)
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
        return _key(row)

    async def get_key(self, key_id: str) -> ApiKey:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is None:
            raise NotFound(f"no key {key_id!r}")
        return _key(row)

    async def create_key(self, account_id: str, name: str = "", expires_at: datetime | None = None) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the secret, which is never stored or shown again."""
        await self.get_account(account_id)
        secret = KEY_PREFIX + secrets.token_urlsafe(KEY_SECRET_BYTES)
        record = ApiKey(id=new_id("key"), account_id=account_id, name=name, prefix=secret[:10],
                        created_at=utcnow(), expires_at=expires_at)
        async with self.engine.begin() as conn:
            await conn.execute(api_keys.insert().values(
                id=record.id, account_id=account_id, name=name, prefix=record.prefix,
                key_hash=hash_key(secret), created_at=record.created_at, expires_at=expires_at,
            ))
        return record, secret

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == key_hash))).first()
        return None if row is None else _key(row)

    async def list_keys(self, account_id: str | None = None) -> list[ApiKey]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at)
        if account_id:
            query = query.where(api_keys.c.account_id == account_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_key(r) for r in rows]

    async def revoke_key(self, key_id: str, account_id: str | None = None) -> ApiKey:
        """Revoke a key (idempotent) and bump the cache epoch so every instance forgets it."""
        query = sa.select(api_keys).where(api_keys.c.id == key_id)
        if account_id:
            query = query.where(api_keys.c.account_id == account_id)
        async with self.engine.begin() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                raise NotFound(f"no key {key_id!r}")
            if row.revoked_at is None:
                await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(revoked_at=utcnow()))
                await bump_epoch(conn)
            row = (await conn.execute(query)).first()
        return _key(row)


