"""The process's Redis connection pool, tuned to fail fast (a call must not hang on a dead server), and
batched Lua script calls in one round trip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError


def redis_client(url: str) -> aioredis.Redis:
    """A client for `url`. One retry covers a pooled connection that died with a restarted server;
    after that, commands raise `redis.exceptions.ConnectionError` within about a second."""
    return aioredis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0,
                                   retry=Retry(NoBackoff(), 1), health_check_interval=30)


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
