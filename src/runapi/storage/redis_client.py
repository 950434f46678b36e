"""The process's Redis connection pools, tuned to fail fast (a call must not hang on a dead server) but
to wait, not fail, when every connection is busy; batched Lua script calls in one round trip; and the
`Rider`, a script that rides in another script's round trip."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, Connection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, MaxConnectionsError, NoScriptError

# Connections per pool (each process has one pool per Redis client). Redis runs commands one at a time,
# so more connections add no throughput: callers beyond this wait for one (see `WaitingConnectionPool`).
MAX_CONNECTIONS = 100
# The longest a command waits for a free connection. A busy connection is free again within one command
# (at most `socket_timeout`, 2 s, and one retry when Redis is away), so a wait this long means Redis is
# not answering: the caller then gets a ConnectionError, the outage it is.
POOL_WAIT_S = 5.0


class HiredisPackingConnection(Connection):
    """redis-py's asyncio connection, packing commands with hiredis (C) instead of Python: the same
    bytes (a test compares them), at a fraction of the CPU for the many-argument EVALSHA calls.
    redis-py's synchronous client does the same when hiredis is installed; its asyncio one does not."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):  # a command name of several words ("CLIENT SETINFO") goes as several
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(f"Invalid input of type {type(exc).__name__}: {exc}") from None


class PoolWaitTimeout(RedisConnectionError):
    """No connection of the pool came free within its wait: Redis is not answering commands."""


class WaitingConnectionPool(ConnectionPool):
    """redis-py's pool, whose callers wait for a busy connection instead of failing when all
    `max_connections` are in use (redis-py raises `MaxConnectionsError`, a `ConnectionError`, which
    the gateway would answer as a Redis outage: issue 20.2).

    Unlike redis-py's `BlockingConnectionPool` (a condition and a timeout scope around every
    checkout, +15-20 % CPU per command measured), a checkout costs nothing extra until the pool is
    exhausted; only then does the caller queue, first come first served, and each release wakes the
    first in line (one wake-up per release). A caller still waiting after `wait_s` gets `PoolWaitTimeout`."""

    def __init__(self, *, wait_s: float = POOL_WAIT_S, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wait_s = wait_s
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> AbstractConnection:
        if not self._waiters:  # nobody queued: take one if there is one (no barging past a queue)
            try:
                return await self._checkout()
            except MaxConnectionsError:
                pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        turns = 0
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            if turns:  # lost a turn to a caller that did not queue: keep the place at the front
                self._waiters.appendleft(waiter)
            else:
                self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_next()  # woken, but leaving: pass the turn on
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                if loop.time() >= deadline:
                    raise PoolWaitTimeout(f"no Redis connection came free in {self.wait_s:g} s") from None
                raise
            turns += 1
            try:
                return await self._checkout()
            except MaxConnectionsError:
                continue  # taken, between the release and this turn, by a caller that found no queue

    async def _checkout(self) -> AbstractConnection:
        connection: AbstractConnection = await super().get_connection()  # type: ignore[no-untyped-call]
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        await super().release(connection)
        self._wake_next()

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def redis_client(url: str, *, max_connections: int = MAX_CONNECTIONS, wait_s: float = POOL_WAIT_S) -> aioredis.Redis:
    """A client for `url`. One retry covers a pooled connection that died with a restarted server;
    after that, commands raise `redis.exceptions.ConnectionError` within about a second. When all
    `max_connections` are busy, a command waits for one for up to `wait_s` seconds."""
    pool = WaitingConnectionPool.from_url(url, max_connections=max_connections, wait_s=wait_s,
                                          socket_connect_timeout=1.0, socket_timeout=2.0,
                                          retry=Retry(NoBackoff(), 1), health_check_interval=30,
                                          connection_class=HiredisPackingConnection)
    return aioredis.Redis.from_pool(pool)


T = TypeVar("T")

PER_SCRIPT_CALL = 100  # queued items (hold closings, rate-limit releases) one script call handles at most


def per_group(items: Iterable[T], group_of: Callable[[T], str], size: int = PER_SCRIPT_CALL
              ) -> list[tuple[str, list[T]]]:
    """`items` by group, in runs of at most `size`, in their order: one script call per run (one group's
    keys share a hash tag, and a call stays short)."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(group_of(item), []).append(item)
    return [(group, members[i:i + size]) for group, members in groups.items() for i in range(0, len(members), size)]


async def run_scripts(client: aioredis.Redis, calls: Sequence[tuple[AsyncScript, Sequence[Any], Sequence[Any]]]
                      ) -> list[Any]:
    """Run `(script, keys, args)` calls in one pipeline (one round trip), as EVALSHA.

    redis-py's own way (`script(keys, args, client=pipe)`) first asks Redis which scripts it knows
    (`SCRIPT EXISTS`): a second round trip for every pipeline. Here a script Redis does not know
    (its cache is emptied by a restart) fails the batch with `NOSCRIPT`; the scripts are then loaded
    and the whole batch is sent once more, so only scripts that are safe to re-run may be batched."""
    for attempt in (1, 2):
        async with client.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                return await pipe.execute()
            except NoScriptError:
                if attempt == 2:
                    raise
        for script in {script.sha: script for script, _, _ in calls}.values():
            await client.script_load(script.script)
    raise AssertionError("unreachable")


class Rider:
    """A Lua script that rides along with an admission: the Redis limiter runs it in the same script
    call, only if the call is admitted, and stores its result in `reply` (the credit hold rides this
    way, so a call costs one Redis round trip before the upstream instead of two). Its `keys` must
    carry the admission's hash tag (`{group}`). A backend that cannot carry it leaves `reply` None."""

    __slots__ = ("source", "keys", "args", "reply")

    def __init__(self, source: str, keys: list[str], args: list[int | str]) -> None:
        self.source = source
        self.keys = keys
        self.args = args
        self.reply: list[Any] | None = None
