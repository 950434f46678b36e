"""`Idempotency-Key`: a retry with the same key and body gets the first response, and is charged once.

Keys are scoped to the account. The first request inserts the key as `pending`; its 2xx
response is stored and replayed (with `Idempotent-Replayed: true`) to every retry until the key
expires (`[tasks] idempotency_ttl`). A retry with another body (or endpoint) is `409`, as is a
retry while the first request is still running. An error response is not kept: the key is
released, so retrying after a failure runs the request again (failed calls are never charged).
A key left `pending` by a crashed process is taken over after `STALE_AFTER_S`; the request
then runs again under the key's own generation ID, so if the crashed attempt had been charged
(its answer lost), the new one is not charged again.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.errors import Conflict, InvalidRequest
from runapi.storage import as_utc, idempotency_keys, utcnow
from runapi.tasks.store import first_open_generation

HEADER = b"idempotency-key"
MAX_KEY_LENGTH = 255
STALE_AFTER_S = 600.0
REPLAYED = (b"idempotent-replayed", b"true")


class Claimed(msgspec.Struct, frozen=True):
    """The key is this request's to run; its generations are `{stem}-1`, `{stem}-2`, …"""

    stem: str


class Reply(msgspec.Struct):
    """A response to send, and to keep for replays."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = []


def fingerprint(endpoint: str, raw: Any) -> str:
    """SHA-256 of the endpoint and the body with its keys sorted (so key order does not matter)."""
    return hashlib.sha256(endpoint.encode() + b"\n" + msgspec.json.encode(raw, order="sorted")).hexdigest()


def idempotency_key(headers: dict[bytes, bytes]) -> str | None:
    """The request's `Idempotency-Key`, validated, or None."""
    value = headers.get(HEADER)
    if value is None:
        return None
    key = value.decode("latin-1").strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.",
                             param="Idempotency-Key", code="invalid_idempotency_key")
    return key


def _conflict_if_other_body(row: Any, fp: str, key: str) -> None:
    if row.fingerprint != fp:
        raise Conflict(f"Idempotency-Key {key!r} was already used with a different request. "
                       "Use a new key for a new request.", param="Idempotency-Key", code="idempotency_key_reused")


class IdempotencyStore:
    def __init__(self, engine: AsyncEngine, ttl: float) -> None:
        self.engine = engine
        self.ttl = ttl

    def row(self, account_id: str, key: str, fp: str, *, status: str = "pending",
            resource_id: str | None = None) -> dict[str, Any]:
        """A new key row; `resource_id` is what the key made (a task), by default a generation ID stem."""
        now = utcnow()
        return {"account_id": account_id, "key": key, "fingerprint": fp, "status": status,
                "resource_id": resource_id or "gen-" + secrets.token_hex(12), "created_at": now,
                "expires_at": now + timedelta(seconds=self.ttl)}

    def _where(self, account_id: str, key: str) -> sa.ColumnElement[bool]:
        return sa.and_(idempotency_keys.c.account_id == account_id, idempotency_keys.c.key == key)

    async def find(self, account_id: str, key: str) -> Any:
        """The live (unexpired) row for a key, or None."""
        query = sa.select(idempotency_keys).where(self._where(account_id, key),
                                                  idempotency_keys.c.expires_at >= utcnow())
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first()

    async def existing_resource(self, account_id: str, key: str, fp: str) -> str:
        """The resource a used key created (after an `IntegrityError` on insert); 409 for another body."""
        row = await self.find(account_id, key)
        if row is None or row.resource_id is None:
            raise Conflict(f"A request with Idempotency-Key {key!r} is in progress; retry shortly.",
                           param="Idempotency-Key", code="idempotency_key_in_use")
        _conflict_if_other_body(row, fp, key)
        return str(row.resource_id)

    async def begin(self, account_id: str, key: str, fp: str) -> Reply | Claimed:
        """Claim the key for this request, or the stored reply to replay."""
        row_values = self.row(account_id, key, fp)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(idempotency_keys.delete().where(self._where(account_id, key),
                                                                   idempotency_keys.c.expires_at < utcnow()))
                await conn.execute(idempotency_keys.insert().values(**row_values))
            return Claimed(row_values["resource_id"])
        except IntegrityError:
            pass
        row = await self.find(account_id, key)
        if row is None:  # expired and purged in between
            return await self.begin(account_id, key, fp)
        _conflict_if_other_body(row, fp, key)
        if row.status == "done" and row.response_status is not None:
            headers = [(n.encode("latin-1"), v.encode("latin-1"))
                       for n, v in msgspec.json.decode(row.response_headers or "[]", type=list[tuple[str, str]])]
            return Reply(row.response_status, bytes(row.response_body or b""), [*headers, REPLAYED])
        created = as_utc(row.created_at)
        if created is not None and (utcnow() - created).total_seconds() > STALE_AFTER_S:
            async with self.engine.begin() as conn:  # left pending by a crash: take it over
                taken = await conn.execute(idempotency_keys.update().where(
                    self._where(account_id, key), idempotency_keys.c.created_at == row.created_at,
                    idempotency_keys.c.status == "pending").values(created_at=utcnow()))
            if taken.rowcount == 1:
                return Claimed(str(row.resource_id))
        raise Conflict(f"A request with Idempotency-Key {key!r} is still in progress; retry when it has finished.",
                       param="Idempotency-Key", code="idempotency_key_in_use")

    async def complete(self, account_id: str, key: str, reply: Reply) -> None:
        headers = msgspec.json.encode([(n.decode("latin-1"), v.decode("latin-1")) for n, v in reply.headers]).decode()
        async with self.engine.begin() as conn:
            await conn.execute(idempotency_keys.update().where(self._where(account_id, key)).values(
                status="done", response_status=reply.status, response_headers=headers, response_body=reply.body))

    async def release(self, account_id: str, key: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(idempotency_keys.delete().where(self._where(account_id, key),
                                                               idempotency_keys.c.status == "pending"))


async def run_idempotent(engine: AsyncEngine, ttl: float, account_id: str, headers: dict[bytes, bytes],
                         endpoint: str, raw: Any, call: Callable[[str | None], Awaitable[Reply]]) -> Reply:
    """Run `call(generation_id)` once per `Idempotency-Key` (if the request has one: else with None);
    replay its reply to retries."""
    key = idempotency_key(headers)
    if key is None:
        return await call(None)
    store = IdempotencyStore(engine, ttl)
    claim = await store.begin(account_id, key, fingerprint(endpoint, raw))
    if isinstance(claim, Reply):
        return claim
    found = await first_open_generation(engine, [f"{claim.stem}-{n}" for n in range(1, 6)])
    try:
        reply = await call(found[0] if found else None)
    except BaseException:
        await asyncio.shield(store.release(account_id, key))
        raise
    if 200 <= reply.status < 300:
        await store.complete(account_id, key, reply)
    else:
        await store.release(account_id, key)
    return reply
