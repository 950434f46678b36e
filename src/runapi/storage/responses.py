"""Stored responses of `/v1/responses`: written in the background, read by their own account only.

`submit` never waits: the row joins a bounded queue that one task writes in batches after the answer
reached the client. A full queue or a failed write is logged and the response is simply not stored
(the call itself was answered and settled already). `flush` waits until what was submitted is written,
so a read right after an answer finds it (in this process; other instances see it once written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.clock import as_utc
from runapi.storage.background import stop_task
from runapi.storage.schema import responses

log = logging.getLogger("runapi.responses")

QUEUE_SIZE = 1000
BATCH = 100
MAX_CHAIN = 1000  # `previous_response_id` hops followed; a longer chain is refused, never walked forever

_encode = msgspec.json.Encoder(decimal_format="number").encode
_decode = msgspec.json.Decoder().decode
_decode_exact = msgspec.json.Decoder(float_hook=Decimal).decode  # usage's `cost`, exact


class StoredResponse(msgspec.Struct, frozen=True):
    """One stored response. Item lists, usage and params are the JSON the client saw."""

    id: str
    account_id: str
    generation_id: str
    model: str
    status: str
    previous_response_id: str | None
    instructions: str | None
    input_items: list[dict[str, Any]]
    output_items: list[dict[str, Any]]
    usage: dict[str, Any] | None
    params: dict[str, Any]
    created_at: datetime


def _row(stored: StoredResponse) -> dict[str, Any]:
    return {"id": stored.id, "account_id": stored.account_id, "generation_id": stored.generation_id,
            "model": stored.model, "status": stored.status, "previous_response_id": stored.previous_response_id,
            "instructions": stored.instructions, "input_items": _encode(stored.input_items).decode(),
            "output_items": _encode(stored.output_items).decode(),
            "usage": None if stored.usage is None else _encode(stored.usage).decode(),
            "params": _encode(stored.params).decode(), "created_at": stored.created_at}


def _stored(row: Any) -> StoredResponse:
    return StoredResponse(
        id=row.id, account_id=row.account_id, generation_id=row.generation_id, model=row.model, status=row.status,
        previous_response_id=row.previous_response_id, instructions=row.instructions,
        input_items=_decode(row.input_items), output_items=_decode(row.output_items),
        usage=None if row.usage is None else _decode_exact(row.usage),
        params=_decode(row.params), created_at=as_utc(row.created_at) or row.created_at)


def timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class ResponseStore:
    def __init__(self, engine: AsyncEngine, queue_size: int = QUEUE_SIZE) -> None:
        self.engine = engine
        self._queue: asyncio.Queue[StoredResponse] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._write_loop(), name="response-store")

    async def close(self) -> None:
        """Write what is queued (bounded by the queue), then stop."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._queue.join()
        await stop_task(self._task)

    def submit(self, stored: StoredResponse) -> None:
        """Queue a response for writing; never waits (a full queue drops it, with a warning)."""
        try:
            self._queue.put_nowait(stored)
        except asyncio.QueueFull:
            log.warning("response store queue full: %s not stored", stored.id,
                        extra={"fields": {"response_id": stored.id, "event": "response_not_stored"}})

    async def flush(self) -> None:
        """Wait until every submitted response is written (or its write failed)."""
        if self._task is not None and not self._task.done():
            await self._queue.join()

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(responses.insert(), [_row(stored) for stored in batch])
            except Exception:  # the calls were answered and settled: log, never fail them
                log.exception("could not store %d response(s): %s", len(batch), ", ".join(s.id for s in batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def get(self, account_id: str, response_id: str) -> StoredResponse | None:
        """The account's response, or None (another account's is None too)."""
        query = sa.select(responses).where(responses.c.id == response_id, responses.c.account_id == account_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else _stored(row)

    async def chain(self, account_id: str, response_id: str) -> list[StoredResponse] | None:
        """The response and the ones it follows, oldest first; None if it is not the account's. A link
        that is gone (deleted) ends the chain there."""
        chain: list[StoredResponse] = []
        current: str | None = response_id
        while current is not None and len(chain) < MAX_CHAIN:
            stored = await self.get(account_id, current)
            if stored is None:
                if not chain:
                    return None
                break
            chain.append(stored)
            current = stored.previous_response_id
        chain.reverse()
        return chain

    async def delete(self, account_id: str, response_id: str) -> bool:
        """Delete the account's response; False if it has none with that ID."""
        async with self.engine.begin() as conn:
            result = await conn.execute(responses.delete().where(responses.c.id == response_id,
                                                                 responses.c.account_id == account_id))
        return bool(result.rowcount)
