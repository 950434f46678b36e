"""The process's Redis connection pool, tuned to fail fast (a call must not hang on a dead server), and
batched Lua script calls in one round trip."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import DataError, NoScriptError


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


def redis_client(url: str) -> aioredis.Redis:
    """A client for `url`. One retry covers a pooled connection that died with a restarted server;
    after that, commands raise `redis.exceptions.ConnectionError` within about a second."""
    return aioredis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0,
                                   retry=Retry(NoBackoff(), 1), health_check_interval=30,
                                   connection_class=HiredisPackingConnection)


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
