"""Auto-pipelining of Lua script calls: the calls made in one event-loop turn go to Redis as one
pipeline (one connection checkout, one socket write, the replies read in one go), as ioredis's
`enableAutoPipelining` does. At c=16 several admissions reach Redis together; each paid the write
syscall (on loopback it runs Redis's receive path) and redis-py's per-command layers on its own."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Call:
    __slots__ = ("command", "future", "script")

    def __init__(self, script: AsyncScript, command: bytes, future: asyncio.Future[Any]) -> None:
        self.script = script
        self.command = command
        self.future = future


class AutoPipeline:
    """Runs `(script, keys, args)` as EVALSHA, batching the calls of one loop turn.

    A call waits at most one loop turn before it is sent; each batch checks out its own pooled
    connection, so batches in flight do not wait for each other. Per call: its reply, or its own
    error (a script error goes only to its caller); a call that failed with NOSCRIPT (Redis's script
    cache was emptied: a restart, SCRIPT FLUSH) is sent again after loading its script, and only
    that call: the others of its batch ran, and a script that takes a credit hold must not run twice.
    Faults of the connection are the pool's client's: one retry (of the calls not yet answered),
    then every caller of the batch gets the `ConnectionError`, as fast as a single command fails.
    A caller cancelled before its batch is sent is left out of it; one cancelled later does not
    disturb the others (its script has run, as with a single command cancelled mid-read)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client  # the pipeline's callers share it; whoever built the pipeline closes it
        self._pool = client.connection_pool
        self._queue: list[_Call] = []
        self._senders: set[asyncio.Task[None]] = set()

    async def drain(self) -> None:
        """Wait until no batch is in flight (before the client is closed: a batch still sending would
        otherwise keep its connection, and its socket, past the client's close)."""
        while self._senders:
            await asyncio.gather(*self._senders, return_exceptions=True)

    async def run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[int | str]) -> Any:
        """The script's reply; raises its error (`ResponseError`), or the connection's."""
        return await self._enqueue(script, keys, args)

    async def run_many(self, calls: Sequence[tuple[AsyncScript, Sequence[str], Sequence[int | str]]]
                       ) -> list[Any]:
        """`run` for each call, in the same batch: per call, its reply or the exception it raised."""
        futures = [self._enqueue(script, keys, args) for script, keys, args in calls]
        return await asyncio.gather(*futures, return_exceptions=True)

    def _enqueue(self, script: AsyncScript, keys: Sequence[str], args: Sequence[int | str]) -> asyncio.Future[Any]:
        try:
            command = hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))  # type: ignore[arg-type]
        except TypeError as exc:
            raise DataError(f"Invalid input of type {type(exc).__name__}: {exc}") from None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Call(script, command, future))
        if len(self._queue) == 1:  # the first of this turn: the sender runs once the turn's callers are in
            sender = loop.create_task(self._send())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return future

    async def _send(self) -> None:
        batch = collections.deque(call for call in self._queue if not call.future.done())
        self._queue = []
        if not batch:
            return
        try:
            connection: AbstractConnection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await self._exchange(connection, batch)
            except BaseException:
                await connection.disconnect(nowait=True)  # replies may be left unread: not reusable as is
                raise
            finally:
                await self._pool.release(connection)
        except BaseException as exc:  # the callers still waiting get it; nobody awaits this task
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise

    async def _exchange(self, connection: AbstractConnection, pending: collections.deque[_Call]) -> None:
        """Send `pending` until each call is answered (it then leaves `pending`), loading the scripts Redis
        did not know, and sending the calls not yet answered once more after a connection fault."""
        load: list[AsyncScript] = []
        retried = False
        while pending:
            noscript: list[_Call] = []
            try:
                await self._round_trip(connection, pending, load, noscript)
            except (RedisConnectionError, RedisTimeoutError):
                pending.extendleft(reversed(noscript))
                if retried:
                    raise
                retried = True
                await connection.disconnect()
                continue
            except BaseException:
                pending.extendleft(reversed(noscript))
                raise
            load = list({call.script.sha: call.script for call in noscript}.values())
            pending.extend(noscript)

    async def _round_trip(self, connection: AbstractConnection, pending: collections.deque[_Call],
                          load: list[AsyncScript], noscript: list[_Call]) -> None:
        """`load` (SCRIPT LOAD) and `pending` in one write, then the replies. Each call leaves `pending`
        as its reply is read: answered, or into `noscript` when Redis did not know its script (and it
        was not just loaded)."""
        packed = [hiredis.pack_command(("SCRIPT", "LOAD", script.script)) for script in load]  # type: ignore[arg-type]
        packed += [call.command for call in pending]
        await connection.send_packed_command(b"".join(packed))
        load_errors: dict[str, ResponseError] = {}
        for script in load:
            try:
                await connection.read_response()
            except ResponseError as exc:  # a script that does not compile: its callers get why
                load_errors[script.sha] = exc
        while pending:
            call = pending[0]
            try:
                reply = await connection.read_response()
            except NoScriptError as exc:
                pending.popleft()
                if call.script.sha in load_errors:
                    _set(call, load_errors[call.script.sha])
                elif load:  # loaded on this connection a moment ago, and flushed again: give up
                    _set(call, exc)
                else:
                    noscript.append(call)
                continue
            except ResponseError as exc:
                pending.popleft()
                _set(call, exc)
                continue
            pending.popleft()
            if not call.future.done():
                call.future.set_result(reply)


def _set(call: _Call, error: BaseException) -> None:
    if not call.future.done():
        call.future.set_exception(error)


def _fail(calls: Sequence[_Call] | collections.deque[_Call], error: BaseException) -> None:
    for call in calls:
        if isinstance(error, asyncio.CancelledError):
            call.future.cancel()
        else:
            _set(call, error)
