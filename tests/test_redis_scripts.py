"""Batched Lua calls (`storage.redis_client.run_scripts`) take one round trip: no `SCRIPT EXISTS`
before each pipeline, as redis-py's own script objects send. When Redis has lost its script cache
(a restart, here `SCRIPT FLUSH`), the scripts are loaded and the batch runs once, not twice.
Against the real Redis on 127.0.0.1:6379, counting commands with `INFO commandstats`. Commands are
packed by hiredis, byte for byte as redis-py packs them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from runapi.storage.redis_client import (
    HiredisPackingConnection,
    redis_client,
    run_scripts,
)

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture()
async def client() -> AsyncIterator[aioredis.Redis]:
    redis = redis_client("redis://127.0.0.1:6379/0")
    try:
        yield redis
    finally:
        await redis.aclose()


async def calls_of(redis: aioredis.Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_batch_of_script_calls_is_one_pipeline_without_script_exists(client: aioredis.Redis) -> None:
    key = f"runapi:test:scripts:{secrets.token_hex(4)}"
    script = client.register_script(INCR_BY)
    await client.script_load(INCR_BY)
    exists_before = await calls_of(client, "script|exists")
    evalsha_before = await calls_of(client, "evalsha")
    try:
        assert await run_scripts(client, [(script, [key], [n]) for n in (1, 2, 3)]) == [1, 3, 6]
        assert await calls_of(client, "script|exists") == exists_before
        assert await calls_of(client, "evalsha") == evalsha_before + 3
        async with client.pipeline(transaction=False) as pipe:  # redis-py's way, for contrast
            await script(keys=[key], args=[4], client=pipe)
            assert await pipe.execute() == [10]
        assert await calls_of(client, "script|exists") == exists_before + 1
    finally:
        await client.delete(key)


async def test_scripts_redis_forgot_are_loaded_and_the_batch_runs_once(client: aioredis.Redis) -> None:
    key = f"runapi:test:scripts:{secrets.token_hex(4)}"
    script = client.register_script(INCR_BY)
    await client.script_flush()  # as after a restart
    try:
        assert await run_scripts(client, [(script, [key], [5]), (script, [key], [5])]) == [5, 10]
        assert int(await client.get(key)) == 10  # the refused first attempt changed nothing
        assert await client.script_exists(script.sha) == [True]
    finally:
        await client.delete(key)


@pytest.mark.parametrize("args", [
    ("EVALSHA", "0123abcd", 3, "runapi:k:1", "runapi:k:2", "runapi:k:3", 5, -3, 0, 1764500000123, "x y"),
    ("CLIENT SETINFO", "LIB-NAME", "redis-py"),
    (b"SET", b"key", 1.5),
    ("SET", "key", 0.1),
    ("SET", "clé", "ünïcode"),
])
def test_hiredis_packing_sends_the_bytes_redis_py_would(args: tuple[Any, ...]) -> None:
    ours = b"".join(HiredisPackingConnection().pack_command(*args))
    theirs = b"".join(Connection().pack_command(*args))
    assert ours == theirs


def test_hiredis_packing_refuses_what_redis_py_refuses() -> None:
    for bad in (True, None, object()):
        with pytest.raises(DataError):
            HiredisPackingConnection().pack_command("SET", "key", bad)
        with pytest.raises(DataError):
            Connection().pack_command("SET", "key", bad)
